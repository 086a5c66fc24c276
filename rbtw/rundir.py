"""A run directory: the files a training run keeps, and its metrics log.

    config.json       the full TrainConfig (written at the start, and again on resume)
    metrics.jsonl     one JSON object per line: {"event": "train"|"epoch"|"test"|..., "time": ...}
    checkpoint.npz    parameters, BN statistics, optimiser state, RNG state and position
    best.npz          the checkpoint of the epoch end with the lowest validation loss so far (the
                      model a validation-selected report uses: the official code reports the test
                      error at its best validation point)
    train.log         progress lines of a run trained by a sweep worker
    schedule-end.npz  a study's copy of the checkpoint where its planned schedule ended, kept when
                      the run is extended until it converges (rbtw.sweep)
    conventions.json  a study's test metrics under each evaluation convention, per checkpoint

Every reader and writer of these files goes through :class:`RunDir`; :func:`find_runs` and
:func:`run_rows` list the runs under a directory (``rbtw runs``).  The log is appended one
line at a time; a process killed in the middle of a line leaves a torn last line, which
readers skip and the next append cuts off (or completes, when only its newline is missing).
A damaged line elsewhere is reported (UserError naming the line), never guessed at.
"""

import json
import os
import time
from pathlib import Path

from rbtw.errors import INT64_MAX, UserError, is_real, is_whole, os_error_message, quoted
from rbtw.fileio import atomic_open, is_temporary
from rbtw.runlock import LOCK_NAME

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.npz"
BEST = "best.npz"                      # the checkpoint of the best validation loss at an epoch end
TRAIN_LOG = "train.log"
SCHEDULE_END = "schedule-end.npz"      # a copy of the checkpoint at the end of the planned schedule
CONVENTIONS = "conventions.json"       # test metrics under each evaluation convention, by checkpoint


class RunDir:
    """The files of the run in ``path`` (nothing is read or created until asked)."""

    def __init__(self, path, metrics_name=METRICS):
        self.path = Path(path)
        self._metrics = metrics_name

    @classmethod
    def of_log(cls, path):
        """The run whose metrics log is ``path``: a run directory, or a log file itself."""
        path = Path(path)
        return cls(path) if path.is_dir() else cls(path.parent, path.name)

    def __repr__(self):
        return f"RunDir({str(self.path)!r})"

    @property
    def config_path(self):
        return self.path / CONFIG

    @property
    def metrics_path(self):
        return self.path / self._metrics

    @property
    def checkpoint_path(self):
        return self.path / CHECKPOINT

    @property
    def best_path(self):
        return self.path / BEST

    @property
    def train_log_path(self):
        return self.path / TRAIN_LOG

    @property
    def schedule_end_path(self):
        return self.path / SCHEDULE_END

    @property
    def conventions_path(self):
        return self.path / CONVENTIONS

    def has_checkpoint(self):
        return self.checkpoint_path.exists()

    def own_files(self):
        """The paths of the files this module names (the run's own; the lock file aside)."""
        return [self.config_path, self.metrics_path, self.checkpoint_path, self.best_path,
                self.train_log_path, self.schedule_end_path, self.conventions_path]

    def foreign(self):
        """Entries of the directory that are neither the run's files nor what rbtw makes from a
        run (exports, calibrated checkpoints, curves, logs): a run must not be trained into a
        directory of other files, not even with --force, where they would be mixed or lost."""
        if not self.path.is_dir():
            return []
        ours = {p.name for p in self.own_files()} | {LOCK_NAME}
        made = (".rbtw", ".npz", ".png", ".pdf", ".svg", ".log")
        return sorted(p.name for p in self.path.iterdir()
                      if p.name not in ours and not (p.is_file() and p.suffix in made)
                      and not is_temporary(p.name))

    def forget_history(self):
        """Remove what an earlier run in this directory left beside its log and checkpoint (its
        best checkpoint, a study's schedule-end copy and measured conventions): a fresh run's
        files must never be mistaken for them."""
        for path in (self.best_path, self.schedule_end_path, self.conventions_path):
            path.unlink(missing_ok=True)

    def write_config(self, config_dict):
        with atomic_open(self.config_path, "w") as f:
            json.dump(config_dict, f, indent=2)

    # -- the metrics log -------------------------------------------------------------------------

    def append(self, **event):
        """Append one event (with the current time) as a line.  A last line without its newline
        is completed when it holds a whole event (as readers take it) and cut off otherwise."""
        event["time"] = round(time.time(), 3)
        line = (json.dumps(event) + "\n").encode("utf-8")
        with open(self.metrics_path, "ab+") as f:
            end = f.seek(0, os.SEEK_END)
            if end:
                start = _after_last_newline(f, end)
                f.seek(start)
                tail = f.read()
                if tail and _is_event(tail):
                    f.write(b"\n")
                elif tail:
                    f.truncate(start)
            f.write(line)

    def events(self):
        """Every event of the log in order ([] when there is none); a torn last line is skipped."""
        try:
            lines = self.metrics_path.read_bytes().split(b"\n")
        except FileNotFoundError:
            return []
        torn = lines.pop()              # b"" when the file ends with a newline
        events = []
        for k, line in enumerate(lines, 1):
            if line.strip():
                events.append(_parse(line, self.metrics_path, k))
        if torn.strip():
            try:
                events.append(_parse(torn, self.metrics_path, len(lines) + 1))
            except UserError:
                pass                    # cut short by a killed process
        return events

    def of_kind(self, kind):
        return [e for e in self.events() if e.get("event") == kind]

    def epochs(self):
        """The "epoch" events, in order."""
        return self.of_kind("epoch")

    def final_test(self):
        """The last "test" event (a finished run), or None."""
        tests = self.of_kind("test")
        return tests[-1] if tests else None

    def keep_events(self, keep):
        """Rewrite the log (atomically) with the events for which ``keep(event)`` is true."""
        if not self.metrics_path.exists():
            return
        self.write_events([e for e in self.events() if keep(e)])

    def write_events(self, events):
        """Replace the log (atomically) by ``events``, as they are (times kept)."""
        with atomic_open(self.metrics_path, "w") as f:
            f.writelines(json.dumps(e) + "\n" for e in events)

    def clear_events(self):
        self.metrics_path.unlink(missing_ok=True)


def _parse(line, path, k):
    """The event on line ``k`` (bytes) of the log at ``path``."""
    try:
        event = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path}:{k} is not a metrics log line (not UTF-8 text)") from None
    except ValueError:
        raise UserError(f"{path}:{k} is not a metrics log line (not a JSON line)") from None
    if not isinstance(event, dict):
        raise UserError(f"{path}:{k} is not a metrics log line (not a JSON object)")
    why = bad_field(event)
    if why:
        raise UserError(f"{path}:{k} is not a metrics log line ({why})")
    return event


# What the readers of a log rely on: the fields they read from each kind of event without a
# default (the plot's steps, losses and epochs, the convergence test's validation metric, a
# sweep's wall time), and the type of each field wherever it appears.  A line that breaks them
# is damaged, like a line that is not JSON.
REQUIRED = {"train": ("step", "loss"), "epoch": ("epoch",), "sweep": ("seconds",)}
METRIC_OF = {"epoch": "valid_", "test": "test_"}    # the task's metric: valid_bpc, test_accuracy, ...
_WHOLE = ("epoch", "batch", "step", "pid")
_TEXT = ("event", "status", "host", "machine", "error", "eval_weights", "eval_stats")
_NUMBER = ("loss", "lr", "seconds", "time", "time_started")
_METRIC_PREFIXES = ("valid_", "test_", "train_")


def bad_field(event):
    """Why ``event`` (a dict) is not an event as the project writes it, or "" when it could be:
    a required field missing (an epoch or test event without its metric too), a whole number
    (epoch, batch, step, pid) that is not one ≥ 0, a text field that is not text, ``resumed``
    not true/false, or a number (loss, lr, seconds, times, valid_*/test_*/train_* metrics;
    train_loss may be null: an epoch without a minibatch) that is not a number."""
    kind = event.get("event")
    if not isinstance(kind, (str, type(None))):
        return f"event is {quoted(kind)}"
    for key in REQUIRED.get(kind, ()):
        if key not in event:
            return f"no {key}"
    if kind in METRIC_OF:
        prefix = METRIC_OF[kind]
        if not any(k.startswith(prefix) and k != prefix + "loss" for k in event):
            return f"no {prefix}metric"
    for key, value in event.items():
        if key in _WHOLE:
            ok = is_whole(value) and value <= INT64_MAX
        elif key in _TEXT:
            ok = isinstance(value, str)
        elif key == "resumed":
            ok = isinstance(value, bool)
        elif key in _NUMBER or key.startswith(_METRIC_PREFIXES):
            ok = is_real(value) or (value is None and key == "train_loss")
        else:
            ok = True
        if not ok:
            return f"{key} is {quoted(value)}"
    return ""


def _is_event(raw):
    try:
        return isinstance(json.loads(raw.decode("utf-8")), dict)
    except ValueError:          # UnicodeDecodeError is one too
        return False


def _after_last_newline(f, end):
    """The offset just after the last b"\\n" of the open file f (0 when it has none)."""
    pos = end
    while pos > 0:
        step = min(4096, pos)
        f.seek(pos - step)
        chunk = f.read(step)
        i = chunk.rfind(b"\n")
        if i >= 0:
            return pos - step + i + 1
        pos -= step
    return 0


# ---------------------------------------------------------------------------------------------
# listing runs (rbtw runs)

# events that say where a run stands, the last one deciding: finished, failed or unfinished
_STANDING = {"test": "finished", "failed": "failed", "epoch": "unfinished", "interrupted": "unfinished",
             "train": "unfinished"}


def find_runs(root):
    """The run directories under ``root`` (holding config.json or checkpoint.npz), sorted."""
    root = Path(root)
    found = set()
    for name in (CONFIG, CHECKPOINT):
        found.update(p.parent for p in root.rglob(name) if p.is_file())
    return sorted(found)


def standing(events):
    """"finished", "failed" or "unfinished": what the last event that says decides."""
    status = "unfinished"
    for e in events:
        kind = e.get("event")
        if kind == "sweep" and e.get("status") == "failed":
            status = "failed"
        elif kind in _STANDING:
            status = _STANDING[kind]
    return status


def variant(config):
    """"lstm ternary stoch", "gru fp no-bn": cell, weights, training rule, batch norm."""
    quant = {"none": "fp"}.get(config.get("quant"), config.get("quant"))
    parts = [config.get("cell"), quant]
    if config.get("quant") not in (None, "none"):
        parts.append("stoch" if config.get("stochastic") else "det")
    if config.get("bn") is False:
        parts.append("no-bn")
    return " ".join(str(p) for p in parts)


def run_row(run_dir, root="."):
    """One row of ``rbtw runs``: run (path under ``root``), task, variant, status, epochs, metric."""
    from rbtw.runlock import is_held
    rd = RunDir(run_dir)
    name = str(Path(run_dir).relative_to(root)) if Path(run_dir).is_relative_to(root) else str(run_dir)
    row = {"run": name, "task": "?", "variant": "?", "status": "?", "epochs": "?", "metric": ""}
    try:
        config = json.loads(rd.config_path.read_text(encoding="utf-8"))
        events = rd.events()
    except (OSError, ValueError, UserError) as e:
        row["status"] = f"unreadable ({unreadable_reason(e, rd.path)})"
        return row
    if not isinstance(config, dict):
        row["status"] = "unreadable (config.json is not a JSON object)"
        return row
    task = config.get("task")
    if task == "text" and isinstance(config.get("text_file"), str):
        task = f"text:{Path(config['text_file']).name}"
    epochs = [e for e in events if e.get("event") == "epoch"]
    row.update(task=task, variant=variant(config), status="training" if is_held(run_dir) else standing(events),
               epochs=f"{len(epochs)}/{config.get('epochs', '?')}", metric=_last_metric(events, epochs))
    return row


REASON_WIDTH = 60          # characters of a damaged run's reason in a listing


def unreadable_reason(error, run_dir, width=REASON_WIDTH):
    """Why the files of the run in ``run_dir`` could not be read, from the ``error`` reading them
    raised, in one short line: file names relative to the run directory, cut at ``width``
    characters ("no config.json", "metrics.jsonl:3 is not a metrics log line (not a JSON line)")."""
    if isinstance(error, FileNotFoundError) and error.filename is not None:
        reason = f"no {_within(error.filename, run_dir)}"
    elif isinstance(error, OSError):
        reason = os_error_message(error)
    elif isinstance(error, UnicodeDecodeError):
        reason = f"{CONFIG} is not UTF-8 text"
    elif isinstance(error, json.JSONDecodeError):
        reason = f"{CONFIG} is not JSON (line {error.lineno}, column {error.colno})"
    else:
        reason = str(error) or type(error).__name__
    reason = " ".join(reason.replace(str(run_dir) + os.sep, "").split())
    return reason if len(reason) <= width else reason[:width - 1] + "…"


def _within(path, run_dir):
    try:
        return str(Path(path).relative_to(run_dir))
    except ValueError:
        return str(path)


def _last_metric(events, epochs):
    tests = [e for e in events if e.get("event") == "test"]
    for prefix, last in (("test_", tests[-1] if tests else None), ("valid_", epochs[-1] if epochs else None)):
        if last is not None:
            for k, v in last.items():
                if k.startswith(prefix) and k != prefix + "loss" and isinstance(v, (int, float)):
                    return f"{k.replace('_', ' ')} {v:.4f}"
    return ""


def run_rows(run_dirs, root="."):
    return [run_row(d, root) for d in run_dirs]
