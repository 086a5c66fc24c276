"""The sweep file: what a sweep (or a study) trains, checked before anything runs.

A sweep file (TOML or JSON; see rbtw.sweep for the format) becomes a :class:`Sweep`, and a
Sweep, given its directory, lists its runs (:meth:`Sweep.runs`).  Every run's configuration is
validated here, so a mistake anywhere in the file is one line before any training starts.

What is refused here, not later:

- a name that becomes a directory (an arm's DIR/ARM, a run's DIR/NAME or DIR/ARM/NAME, and so
  a variant's name, which leads its runs' names) must be one plain directory name of the sweep
  directory: letters, digits and _ . + - only, at most 255 characters, not starting with "."
  (so never "." or "..", nor the directory's hidden files .lock and .stop-*), not ending in
  ".log", and none of the directory's own entries (sweep.json, summary.json, summary.md,
  prefix), in any case; no two runs' directories may differ only in case.
- an arm with fewer epochs than its prefix trains (a branch continues its prefix).
- ``until.max_epochs`` below the epochs of a run it applies to (an arm, or a plain run):
  the cap counts every epoch of the run, its schedule's included, so a lower cap could not
  hold.  A cap equal to a run's epochs is accepted: the criterion then adds no epoch to it.
- two values of one axis that are the same setting in another spelling (quant "fp" and
  "none"; 0 and None for a limit), which would train the same runs twice.

A sweep directory may be extended (:meth:`Sweep.extends`) by a file that only adds seeds,
variants, axis values or arms; values are compared in canonical spelling (rbtw.config.normalise:
quant "fp" is "none"), but a sweep without arms never becomes one with arms, or back, since
that moves every run (DIR/NAME against DIR/prefix/NAME and DIR/ARM/NAME).
"""

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from rbtw.errors import UserError
from rbtw.fileio import is_temporary
from rbtw.runlock import LOCK_NAME

SPEC_KEYS = ("task", "preset", "options", "grid", "seeds", "reference", "arms", "until", "summary")
SPEC_NAME = "sweep.json"
PREFIX_DIR = "prefix"
UNTIL_KEYS = {"min_gain": (int, float), "max_epochs": (int,)}
SUMMARY_KEYS = {"conventions": (bool,)}
_NAME = re.compile(r"[A-Za-z0-9_.+-]+")
# the sweep directory's own entries, which no arm or run directory may take (compared in lower
# case, for file systems that ignore case); hidden entries (.lock, .stop-*) and *.log are refused
# by their shape (dir_name)
SUMMARY_JSON, SUMMARY_MD = "summary.json", "summary.md"
STOP_PREFIX = ".stop-"        # a sweep process's stop file (rbtw.sweep.runner.stop_file_for)
RESERVED = (SPEC_NAME, SUMMARY_JSON, SUMMARY_MD, PREFIX_DIR)
MAX_NAME = 255      # bytes in one path component (NAME_MAX on Linux and macOS)


@dataclass
class SweepRun:
    """One training run of a sweep: where it lives and its full configuration.

    stage        "run" (a plain run), "prefix" (shared by arms) or "arm" (a branch of its prefix)
    arm          the arm's name (None unless stage is "arm"); prefix: the prefix run (arms only)
    changes      what the arm changes in its prefix's configuration (rbtw.train.branch)
    until        the convergence criterion its task applies after the schedule (or None)
    conventions  whether its task measures the test metric under every evaluation convention
    """

    name: str
    variant: str
    axes: dict
    seed: int
    config: dict      # TrainConfig.to_dict()
    out: Path
    stage: str = "run"
    arm: str | None = None
    prefix: "SweepRun | None" = None
    changes: dict = field(default_factory=dict)
    until: dict | None = None
    conventions: bool = False

    @property
    def key(self):
        """A name unique in the sweep: NAME, prefix/NAME or ARM/NAME."""
        return self.name if self.stage == "run" else f"{self.arm or PREFIX_DIR}/{self.name}"


@dataclass
class Sweep:
    task: str
    preset: str
    options: dict
    variants: dict    # name -> {field: value}
    axes: dict        # field -> [values]
    seeds: list
    reference: str | None = None
    arms: dict = field(default_factory=dict)      # name -> {branchable field: value}
    until: dict | None = None                      # {"min_gain": g, "max_epochs": n}
    summary: dict = field(default_factory=dict)    # {"conventions": bool}

    def to_dict(self):
        grid = dict(self.variants)
        grid.update(self.axes)
        out = {"task": self.task, "preset": self.preset, "options": self.options, "grid": grid,
               "seeds": self.seeds, "reference": self.reference}
        if self.arms:
            out["arms"] = self.arms
        if self.until is not None:
            out["until"] = self.until
        if self.summary:
            out["summary"] = self.summary
        return out

    def _combos(self):
        combos = [{}]
        for name, values in self.axes.items():
            combos = [dict(c, **{name: v}) for c in combos for v in values]
        return combos

    def runs(self, out_dir):
        """Every run: variants × axis values × seeds (× arms, each after its prefix), validated;
        every directory it names a plain directory name of ``out_dir`` (:func:`dir_name`)."""
        out_dir = Path(out_dir)
        _distinct((dir_name(arm, "the arm") for arm in self.arms), "two arms")
        runs, names = [], {}
        for variant, overrides in self.variants.items():
            for combo in self._combos():
                for seed in self.seeds:
                    name = "-".join([variant] + [_safe(f"{k}{v}") for k, v in combo.items()] + [f"seed{seed}"])
                    dir_name(name, "the run name", f" (of variant {variant!r})")
                    if name.lower() in names:
                        raise UserError(f"two runs of the sweep would share the directory name {name!r}"
                                        + ("" if names[name.lower()] == name else
                                           f" (as {names[name.lower()]!r}, where case is ignored)"))
                    names[name.lower()] = name
                    config = make_config(self.task, self.preset, self.options, overrides, combo, {"seed": seed})
                    runs += self._stages(name, variant, combo, seed, config, out_dir)
        return runs

    def _stages(self, name, variant, combo, seed, config, out_dir):
        last = dict(until=self.until, conventions=bool(self.summary.get("conventions")))
        if not self.arms:
            _check_cap(self.until, config, name)
            return [SweepRun(name, variant, combo, seed, config, out_dir / name, **last)]
        prefix = SweepRun(name, variant, combo, seed, config, out_dir / PREFIX_DIR / name, stage="prefix")
        stages = [prefix]
        for arm, changes in self.arms.items():
            branched = arm_config(config, changes, arm)
            if branched["epochs"] < config["epochs"]:
                from rbtw.summary import count
                raise UserError(f"arm {arm!r} trains {count(branched['epochs'], 'epoch')}, fewer than the "
                                f"{config['epochs']} its prefix {name!r} trains; an arm continues its prefix, "
                                f"so give it epochs ≥ {config['epochs']}")
            _check_rates(config, branched, arm, name)
            _check_cap(self.until, branched, f"{arm}/{name}")
            stages.append(SweepRun(name, variant, combo, seed, branched,
                                   out_dir / arm / name, stage="arm", arm=arm, prefix=prefix, changes=changes,
                                   **last))
        return stages

    def select(self, runs, names):
        """The runs of ``runs`` that ``names`` (variant and arm names, at least one) pick: a run
        is picked when its variant is named (or no variant is) and its arm is named (or no arm
        is); an arm's prefix goes with it."""
        names = set(names)
        if not names:       # `--only ""` or `--only ,,`: naming nothing is not naming everything
            raise UserError(f"--only names no variant or arm; give one or more, comma-separated "
                            f"(variants: {', '.join(self.variants)}; arms: {', '.join(self.arms) or 'none'})")
        unknown = names - set(self.variants) - set(self.arms)
        if unknown:
            raise UserError(f"--only names no variant or arm of the sweep: {', '.join(sorted(unknown))} "
                            f"(variants: {', '.join(self.variants)}; arms: {', '.join(self.arms) or 'none'})")
        variants = names & set(self.variants) or set(self.variants)
        arms = names & set(self.arms) or set(self.arms)
        picked = [r for r in runs if r.variant in variants and (r.stage != "arm" or r.arm in arms)]
        if self.arms:      # a prefix only where one of its arms is picked
            keep = {r.prefix.key for r in picked if r.stage == "arm"}
            picked = [r for r in picked if r.stage != "prefix" or r.key in keep]
        return picked

    def extends(self, other):
        """Why this sweep is not ``other`` with more seeds, variants, axis values or arms (None
        when it is: then the runs ``other`` has are runs of this one, unchanged).  Tables of
        fields are compared in canonical spelling (quant "fp" is "none"); an axis value must
        also keep the name it gives its runs' directories (``lr1`` is not ``lr1.0``)."""
        if bool(self.arms) != bool(other.arms):
            return ("it has arms and the directory's sweep has none: arms move every run to "
                    "prefix/NAME and ARM/NAME, so its runs would train again" if self.arms else
                    "the directory's sweep has arms and it has none: its runs live in prefix/NAME "
                    "and ARM/NAME, not NAME")
        if (self.task, self.preset, _canonical(self.options), self.reference, self.until) != \
                (other.task, other.preset, _canonical(other.options), other.reference, other.until):
            return "its task, preset, options, reference or until differ"
        for label, mine, theirs in (("variant", self.variants, other.variants), ("arm", self.arms, other.arms)):
            for key, value in theirs.items():
                if key not in mine or _canonical(mine[key]) != _canonical(value):
                    return f"the {label} {key!r} is missing or defined otherwise"
        if set(other.axes) != set(self.axes) or any(not _axis_values(k, v) <= _axis_values(k, self.axes[k])
                                                    for k, v in other.axes.items()):
            return "its axes differ"
        if not set(other.seeds) <= set(self.seeds):
            return "seeds it had are missing"
        return None


def _safe(text):
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", text)


def dir_name(name, what, note=""):
    """``name`` if it is a plain directory name that a sweep may give one of its directories
    (see the module's docstring), else a one-line UserError: "WHAT 'NAME' WHY NOTE"."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        why = "may hold only letters, digits and _ . + -"
    elif name in (".", ".."):
        why = "is a path (this or the parent directory), not a directory name"
    elif name.startswith("."):
        why = "starts with \".\", as the sweep directory's hidden files (.lock, .stop-*) do"
    elif name.lower() in RESERVED:
        why = f"is taken by the sweep directory's own entries ({', '.join(RESERVED)}; case ignored)"
    elif name.lower().endswith(".log"):
        why = "ends in .log, as the sweep directory's logs do"
    elif len(name) > MAX_NAME:
        why = f"is longer than a directory name may be ({len(name)} > {MAX_NAME} characters)"
    else:
        return name
    shown = name if not isinstance(name, str) or len(name) <= 40 else name[:37] + "..."
    raise UserError(f"{what} {shown!r} {why}{note}")


def _distinct(names, what):
    """Refuse two of ``names`` that differ only in case (one directory where case is ignored)."""
    seen = {}
    for name in names:
        if name.lower() in seen:
            raise UserError(f"{what} differ only in case ({seen[name.lower()]!r}, {name!r}), which would "
                            f"share a directory where case is ignored")
        seen[name.lower()] = name


def _check_cap(until, config, key):
    """Refuse an ``until`` cap below the epochs of the run ``key`` (its schedule's)."""
    if until is not None and until["max_epochs"] < config["epochs"]:
        raise UserError(f"until: max_epochs = {until['max_epochs']} is below the {config['epochs']} epochs "
                        f"{key} trains; the cap counts every epoch of a run, so give max_epochs ≥ "
                        f"{config['epochs']}")


RATE_POINTS = 100     # points an epoch at which an arm's rates are compared with its prefix's


def _check_rates(prefix, branched, arm, name):
    """Refuse an arm whose schedule changes the rate of a minibatch its prefix trains, which
    rbtw.train.branch would refuse only once the prefix has trained.  The minibatches an epoch
    has are not known here: the rates are compared at RATE_POINTS points an epoch (a change at
    an epoch's start is always seen; branch stays the exact check)."""
    from rbtw.config import TrainConfig
    from rbtw.optim import first_rate_change
    n = RATE_POINTS
    step = first_rate_change(TrainConfig.from_dict(prefix), TrainConfig.from_dict(branched), n, prefix["epochs"] * n)
    if step is not None:
        raise UserError(f"arm {arm!r} changes the rate in epoch {step // n + 1} of the {prefix['epochs']} its "
                        f"prefix {name!r} trains (a branch only changes what lies ahead): start its warm-down "
                        f"later, or keep the epochs where the rate depends on them (lr_end)")


def _axis_values(key, values):
    """An axis's values as (the part of the run names each gives, its canonical value in JSON)."""
    return {(_safe(f"{key}{v}"), json.dumps(_canonical({key: v})[key])) for v in values}


def _canonical(fields):
    """A table of TrainConfig fields in canonical form (rbtw.config.check_field), for comparison."""
    from rbtw.config import check_field
    return {key: check_field(key, value) for key, value in fields.items()}


def make_config(task, preset, *layers):
    """A validated TrainConfig dict: defaults, then the preset for ``task``, then each layer."""
    from rbtw.config import build_config
    return build_config(task, preset, *layers).to_dict()


def arm_config(config, changes, arm):
    """The configuration of an arm: its prefix's with the arm's (branchable) changes."""
    from rbtw.config import BRANCHABLE, TrainConfig
    bad = sorted(set(changes) - set(BRANCHABLE))
    if bad:
        raise UserError(f"arm {arm!r} may change only {', '.join(BRANCHABLE)}, not {', '.join(bad)}")
    return TrainConfig.from_dict(dict(config, **changes)).validate().to_dict()


# ---------------------------------------------------------------------------------------------
# reading and parsing


def read_spec(path):
    """Parse a sweep file (.toml or .json) into a raw dict; one-line UserError on failure."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read the sweep file {path}: {e.strerror or e}") from None
    try:
        if path.suffix.lower() == ".toml":
            import tomllib
            return tomllib.loads(raw.decode("utf-8"))      # TOML itself refuses duplicate keys
        if path.suffix.lower() == ".json":
            data = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
            if not isinstance(data, dict):
                raise UserError(f"{path}: a sweep file holds one object/table")
            return data
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (byte {e.start})") from None
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    except ValueError as e:  # tomllib.TOMLDecodeError and json.JSONDecodeError are ValueErrors
        raise UserError(f"{path} is not valid {path.suffix[1:].upper()}: {str(e).splitlines()[0]}") from None
    raise UserError(f"{path}: a sweep file ends in .toml or .json")


def _unique_keys(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise UserError(f"the key {key!r} appears twice in one object")
        seen[key] = value
    return seen


def parse_spec(d, where="the sweep file"):
    """A :class:`Sweep` from a raw dict, every run's configuration checked."""
    from rbtw.config import PRESETS, TASKS
    if not isinstance(d, dict):
        raise UserError(f"{where}: a sweep file holds one table (TOML) or object (JSON), not {type(d).__name__}")
    unknown = sorted(set(d) - set(SPEC_KEYS))
    if unknown:
        raise UserError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; expected {', '.join(SPEC_KEYS)}")
    task = d.get("task")
    if not isinstance(task, str) or task not in TASKS:
        raise UserError(f"{where}: task must be one of {', '.join(TASKS)} (got {task!r})")
    preset = d.get("preset", "quick")
    if not isinstance(preset, str) or preset not in PRESETS:
        raise UserError(f"{where}: preset must be one of {', '.join(PRESETS)} (got {preset!r})")
    options = _table(d.get("options", {}), f"{where}: options", "a table of TrainConfig fields")
    _check_fields(options, f"{where}: options")
    variants, axes = _grid(d.get("grid"), where)
    seeds = d.get("seeds")
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise UserError(f"{where}: seeds must be a non-empty array of integers")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"{where}: seeds repeat")
    reference = d.get("reference")
    if reference is not None and (not isinstance(reference, str) or reference not in variants):
        raise UserError(f"{where}: the reference {reference!r} is not a variant of the grid")
    sweep = Sweep(task, preset, options, variants, axes, seeds, reference, _arms(d.get("arms"), where),
                  _until(d.get("until"), where), _summary(d.get("summary"), where))
    try:
        sweep.runs(".")
    except UserError as e:
        raise UserError(f"{where}: {e}") from None
    return sweep


def _table(value, where, what):
    if not isinstance(value, dict):
        raise UserError(f"{where} must be {what}")
    return value


def _grid(grid, where):
    example = 'e.g. fp = { quant = "none" }'
    if grid is None:
        raise UserError(f"{where}: the grid is missing; give a [grid] table with at least one variant, {example}")
    if not isinstance(grid, dict):
        raise UserError(f"{where}: the grid must be a table of variants (tables) and axes (arrays), "
                        f"not {_kind(grid)}; {example}")
    if not grid:
        raise UserError(f"{where}: the grid is empty; give at least one variant, {example}")
    variants, axes = {}, {}
    for key, value in grid.items():
        if isinstance(value, dict):
            dir_name(key, f"{where}: the variant name", "; it leads its runs' directory names")
            _check_fields(value, f"{where}: variant {key!r}")
            variants[key] = value
        elif isinstance(value, list):
            if not value:
                raise UserError(f"{where}: axis {key!r} has no values")
            seen = []         # (as written, canonical)
            for v in value:
                _check_fields({key: v}, f"{where}: axis {key!r}")
                canonical = _canonical({key: v})[key]
                for written, other in seen:
                    if other == canonical and isinstance(other, bool) == isinstance(canonical, bool):
                        raise UserError(f"{where}: axis {key!r} gives one setting twice ({written!r} and "
                                        f"{v!r}), which would train the same runs twice")
                seen.append((v, canonical))
            axes[key] = value
        else:
            raise UserError(f"{where}: grid entry {key!r} must be a table (a variant) or an array (an axis)")
    if not variants:
        raise UserError(f"{where}: the grid has no variant (a table of TrainConfig overrides)")
    return variants, axes


def _kind(value):
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}.get(
        type(value), type(value).__name__)


def _arms(arms, where):
    if arms is None:
        return {}
    _table(arms, f"{where}: arms", "a table of arms, each a table of branchable fields")
    if not arms:
        raise UserError(f"{where}: arms is empty; leave it out for a sweep without arms")
    for name, changes in arms.items():
        dir_name(name, f"{where}: the arm name", "; its runs live in DIR/ARM/NAME")
        _table(changes, f"{where}: arm {name!r}", "a table of branchable fields")
        _check_fields(changes, f"{where}: arm {name!r}")
    return arms


def _until(until, where):
    if until is None:
        return None
    _table(until, f"{where}: until", "a table with min_gain and max_epochs")
    for key in until:
        if key not in UNTIL_KEYS:
            raise UserError(f"{where}: until: unknown field {key!r}; expected min_gain and max_epochs")
    for key, kinds in UNTIL_KEYS.items():
        value = until.get(key)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise UserError(f"{where}: until needs {key} (a number)")
    if not 0 <= until["min_gain"] < math.inf or until["max_epochs"] < 1:
        raise UserError(f"{where}: until: min_gain must be a finite number ≥ 0 and max_epochs ≥ 1")
    return dict(until)


def _summary(summary, where):
    if summary is None:
        return {}
    _table(summary, f"{where}: summary", "a table, e.g. conventions = true")
    for key, value in summary.items():
        if key not in SUMMARY_KEYS or not isinstance(value, SUMMARY_KEYS[key]):
            raise UserError(f"{where}: summary: unknown field or value {key!r} = {value!r}; "
                            "expected conventions = true or false")
    return dict(summary)


def load_sweep(path):
    """The Sweep of a sweep file, or of a sweep directory (its stored sweep.json)."""
    path = Path(path)
    if path.is_dir():
        return stored_sweep(path)
    return parse_spec(read_spec(path), str(path))


def _check_fields(d, where):
    """Every key a TrainConfig field (task and seed excepted), every value of its type and in
    its domain (rbtw.config.check_field: the rule every surface applies)."""
    from rbtw.config import TrainConfig, check_field
    names = set(TrainConfig.field_names())
    for key, value in d.items():
        if key in ("task", "seed"):
            raise UserError(f"{where}: {key} is set by the sweep itself (task = ..., seeds = [...])")
        if key not in names:
            raise UserError(f"{where}: unknown field {key!r} (TrainConfig fields: see rbtw train --help)")
        try:
            check_field(key, value)
        except UserError as e:
            raise UserError(f"{where}: {e}") from None


# ---------------------------------------------------------------------------------------------
# the sweep directory


def prepare_out(sweep, out_dir, check_only=False):
    """Claim ``out_dir`` for the sweep: store the sweep there, or check that it holds this one —
    or one that this sweep extends (more seeds, variants, axis values or arms), then store this.
    ``check_only``: refuse as a claim would (a one-line UserError), but write nothing."""
    from rbtw.fileio import atomic_open
    out = Path(out_dir)
    stored = out / SPEC_NAME
    want = json.loads(json.dumps(sweep.to_dict()))
    if stored.exists():
        try:
            have = json.loads(stored.read_text())
            old = parse_spec(have, str(stored))
        except (OSError, ValueError) as e:
            raise UserError(f"{stored} is unreadable: {e}; {RECOVER}") from None
        if have == want:
            return
        why = sweep.extends(old)
        if why is not None:
            raise UserError(f"{out} holds a different sweep (see {stored}): {why}; choose another --out")
    elif out.exists() and (not out.is_dir() or _foreign(sweep, out)):
        raise UserError(f"{out} exists and does not hold a sweep; choose another --out")
    if check_only:
        return
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(stored, "w") as f:
        json.dump(want, f, indent=2)


def _foreign(sweep, out):
    """Entries of ``out`` that are not this sweep's (its run directories may exist already, e.g.
    runs started by hand in the sweep's layout, which the sweep then takes over)."""
    ours = {r.out.relative_to(out).parts[0] for r in sweep.runs(out)}
    return [p for p in out.iterdir() if p.name not in ours and not own_entry(p.name)]


def own_entry(name):
    """Whether ``name`` is one of a sweep directory's own entries besides its run directories:
    sweep.json, the summaries, the lock, a sweep process's stop file (rbtw.sweep.runner.stop_file_for,
    left behind when that process was killed), a log, or a write cut off by a killed process."""
    return (name in (SPEC_NAME, SUMMARY_JSON, SUMMARY_MD, LOCK_NAME) or name.startswith(STOP_PREFIX)
            or name.endswith(".log") or is_temporary(name))


# how to recover a sweep directory whose sweep.json is damaged: its runs are kept, since each is
# taken over only where its own configuration is the file's (rbtw.sweep.runner.foreign_config)
RECOVER = ("move it away and run the sweep file again with this --out (its runs are kept where "
           "their configuration is the file's)")


def stored_sweep(out_dir):
    path = Path(out_dir) / SPEC_NAME
    if Path(out_dir).is_file():
        raise UserError(f"{out_dir} is a file: give the sweep directory (the --out of the sweep that made it)")
    if not path.exists():
        raise UserError(f"{out_dir} holds no sweep ({SPEC_NAME} is missing)")
    try:
        return parse_spec(json.loads(path.read_text()), str(path))
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON: {e}; {RECOVER}") from None
