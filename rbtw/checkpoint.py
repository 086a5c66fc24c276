"""Checkpoint files: one .npz archive, written atomically.

Entries:

    meta            uint8 array holding UTF-8 JSON: format version, configuration, model spec,
                    vocabulary, position (epoch, minibatch, step), RNG state, schedule state
    param/<name>    parameters (flat names as in rbtw.models, e.g. "rnn0.W_x")
    stat/<name>     BN population statistics
    opt/<name>      optimiser state ("opt/t", "opt/m/<param>", "opt/v/<param>")
    extra/<name>    anything else (e.g. the word LM's carried state)

Loading reads every entry whole and verified (rbtw.archive) and checks the format version; a
file that is not such an archive, or is damaged anywhere, raises a one-line UserError.
"""

import json
from dataclasses import dataclass

import numpy as np

from rbtw.archive import DamagedArchive, read_arrays, write_arrays
from rbtw.errors import INT64_MAX, UserError, is_whole

FORMAT = "rbtw-checkpoint"
VERSION = 1
SECTIONS = ("param", "stat", "opt", "extra")


@dataclass
class Checkpoint:
    meta: dict
    params: dict
    stats: dict
    optimizer: dict
    extra: dict


def save_checkpoint(path, meta, params, stats, optimizer, extra=None):
    """Write all parts to ``path`` atomically (temporary file, then rename)."""
    meta = dict(meta, format=FORMAT, version=VERSION)
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)}
    for section, part in zip(SECTIONS, (params, stats, optimizer, extra or {})):
        for name, value in part.items():
            arrays[f"{section}/{name}"] = np.asarray(value)
    write_arrays(path, arrays)


MODEL_FILE = "checkpoint or packed export"     # what a reader that takes either calls the file


def load_checkpoint(path, *, what="checkpoint"):
    """Read a checkpoint; any damage or a foreign file gives a one-line UserError naming the
    file as ``what`` (a reader that takes an export too says so: MODEL_FILE)."""
    meta, arrays = _read(path, everything=True, what=what)
    parts = {s: {} for s in SECTIONS}
    for key, value in arrays.items():
        section, _, name = key.partition("/")
        if section not in parts:
            raise UserError(f"{path} has an unexpected entry {key!r}")
        parts[section][name] = value
    return Checkpoint(meta, parts["param"], parts["stat"], parts["opt"], parts["extra"])


def read_checkpoint(path, *, what="checkpoint"):
    """(Checkpoint, ModelSpec) of a checkpoint file whose parameters and population statistics
    fit its model spec (names, shapes, types: rbtw.models.check_model_arrays), or a one-line
    UserError (``what``: as load_checkpoint).  Every reader that runs the model opens it this
    way: the file's checksums prove it unchanged, not that its writer was right."""
    from rbtw.models import ModelSpec, check_model_arrays
    ckpt = load_checkpoint(path, what=what)
    try:
        spec = ModelSpec.from_dict(ckpt.meta["spec"])
        check_model_arrays(ckpt.params, spec, ckpt.stats)
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path} does not describe a consistent model: {e}") from None
    return ckpt, spec


def model_files(path, config):
    """The files that a command reading the model in ``path`` (a checkpoint or an export) must
    never write over, whatever ``force`` says: the model file itself, the text file a "text" run
    trained on (``config``: the run's TrainConfig), and, when ``path`` lies in a run directory
    (as named, or once its symbolic links are followed), that run's own files (configuration,
    log, checkpoints, caches: rbtw.rundir)."""
    from pathlib import Path
    from rbtw.rundir import RunDir
    path = Path(path)
    files = [path]
    if config.task == "text" and config.text_file:
        files.append(Path(config.text_file))
    for folder in dict.fromkeys((path.parent, path.resolve().parent)):
        run = RunDir(folder)
        if run.config_path.is_file():
            files += run.own_files()
    return files


def check_model_output(out, model, force, *, what, force_hint, config=None):
    """rbtw.fileio.check_output for a file written from the model file ``model`` (a checkpoint
    or an export): never over one of its model_files, over an existing file only with
    ``force``.  ``config``: the model's TrainConfig when it is loaded already; None reads it from
    the checkpoint's meta alone, so that a refusal costs no array read.  Returns ``out`` as a
    Path."""
    from rbtw.config import TrainConfig
    from rbtw.fileio import check_output
    if config is None:
        config = TrainConfig.from_dict(load_meta(model)["config"])
    return check_output(out, model_files(model, config), force, what=what, force_hint=force_hint)


def load_meta(path):
    """A checkpoint's meta alone (position, configuration), without reading its arrays."""
    return _read(path, everything=False)[0]


def _read(path, everything, what="checkpoint"):
    """(meta, {entry: array} — empty unless ``everything``), checked as load_checkpoint says."""
    try:
        arrays = read_arrays(path, None if everything else ["meta"])
        meta = json.loads(arrays.pop("meta").tobytes().decode("utf-8")) if "meta" in arrays else None
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what}") from None
    except (DamagedArchive, OSError, ValueError) as e:   # ValueError: the meta entry is not UTF-8 JSON
        raise UserError(f"{path} is not a readable rbtw {what} ({_reason(e)})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{path} is not an rbtw {what}")
    if meta.get("version") != VERSION:
        raise UserError(f"{path} has checkpoint format version {meta.get('version')}, this rbtw reads {VERSION}")
    problem = _meta_problem(meta)
    if problem:
        raise UserError(f"{path} is not a consistent rbtw checkpoint: {problem}")
    return meta, arrays


def _meta_problem(meta):
    """What is wrong with the parts of a meta every reader takes without a default (None:
    nothing): the configuration and model spec as objects (rbtw.config and rbtw.models check
    their fields) and the position as whole numbers."""
    for name in ("config", "spec"):
        if not isinstance(meta.get(name), dict):
            return f"its {name} is missing or not an object"
    if not isinstance(meta["config"].get("task"), str):
        return "its configuration names no task"
    for name in ("epoch", "batch_index", "step"):
        if not (is_whole(meta.get(name)) and meta[name] <= INT64_MAX):
            return f"its position's {name} is {meta.get(name)!r}, not a whole number >= 0"
    return None


def _reason(e):
    """Why a file could not be read, in a few words."""
    if isinstance(e, DamagedArchive):
        return str(e)
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return type(e).__name__
