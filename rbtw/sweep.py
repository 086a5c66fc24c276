"""Sweeps: many training runs (variants × axes × seeds) on Dask, with seeds aggregated.

A sweep file (TOML or JSON) names the task, a preset, options shared by every run, a grid of
named variants (each a table of TrainConfig overrides) and axes to cross with them (arrays of
values of one TrainConfig field), the seeds, and optionally a reference variant:

    task = "ptb_char"
    preset = "quick"
    seeds = [0, 1, 2]
    reference = "fp"
    [options]
    epochs = 2
    checkpoint_every = 50
    [grid]
    fp = { quant = "none" }
    ternary = { quant = "ternary", stochastic = true }
    hidden = [128, 256]

Runs: variant × (values of every axis) × seed, each in DIR/NAME with NAME such as
``ternary-hidden128-seed0``, trained exactly as ``rbtw train`` would (config.json,
metrics.jsonl, checkpoint.npz).  A run's configuration is: dataclass defaults, the preset's
values for the task, ``options``, the variant, the axis values, the seed.  DIR/sweep.json
keeps the sweep; a DIR that holds another sweep is refused.

Execution: one Dask task per run (:func:`train_one`), on a LocalCluster of single-threaded
worker processes or on an existing scheduler.  A task holds the run directory's lock
(:class:`rbtw.runlock.RunLock`) while it trains, so no run is trained twice at once; it skips
a finished run and resumes an unfinished one from its checkpoint.  When a worker dies, Dask
runs the task again elsewhere and it resumes.  A task that finds the lock held by another
live process returns "busy" and is tried again a few seconds later, until the holder has
finished (then the run is skipped) or died (then it is resumed).

Aggregation over seeds, per variant and axis values, of the test metric x_s of each finished
run (s = 1..n):

    mean  x̄ = Σ x_s / n,   sd = sqrt(Σ (x_s − x̄)² / (n − 1)),
    95 % interval  x̄ ± t_{0.975, n−1} · sd / √n      (Student t; none when n < 2)

and the paired differences d_s = x_s(variant) − x_s(reference) over the seeds where both
finished, with the same three figures.
"""

import json
import math
import os
import re
import socket
import time
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path

from rbtw.errors import UserError

INSTALL_HINT = "rbtw sweep needs Dask: pip install 'rbtw[dist]' (or pip install 'dask[distributed]')"
SPEC_KEYS = ("task", "preset", "options", "grid", "seeds", "reference")
SPEC_NAME = "sweep.json"
# Each worker computes with one thread; set before the worker process starts (and imports numpy).
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "NUMBA_NUM_THREADS": "1"}
BUSY_RETRY_SECONDS = 5.0
CONNECT_TIMEOUT = "10s"


# ---------------------------------------------------------------------------------------------
# the sweep file


@dataclass
class SweepRun:
    """One training run of a sweep: where it lives and its full configuration."""

    name: str
    variant: str
    axes: dict
    seed: int
    config: dict      # TrainConfig.to_dict()
    out: Path


@dataclass
class Sweep:
    task: str
    preset: str
    options: dict
    variants: dict    # name -> {field: value}
    axes: dict        # field -> [values]
    seeds: list
    reference: str | None = None

    def to_dict(self):
        grid = dict(self.variants)
        grid.update(self.axes)
        return {"task": self.task, "preset": self.preset, "options": self.options, "grid": grid,
                "seeds": self.seeds, "reference": self.reference}

    def runs(self, out_dir):
        """Every run: variants × axis values × seeds, with its validated configuration."""
        out_dir = Path(out_dir)
        combos = [{}]
        for field, values in self.axes.items():
            combos = [dict(c, **{field: v}) for c in combos for v in values]
        runs, names = [], set()
        for variant, overrides in self.variants.items():
            for combo in combos:
                for seed in self.seeds:
                    name = "-".join([variant] + [_safe(f"{k}{v}") for k, v in combo.items()] + [f"seed{seed}"])
                    if name in names:
                        raise UserError(f"two runs of the sweep would share the directory name {name!r}")
                    names.add(name)
                    config = make_config(self.task, self.preset, self.options, overrides, combo, {"seed": seed})
                    runs.append(SweepRun(name, variant, combo, seed, config, out_dir / name))
        return runs


def _safe(text):
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", text)


def make_config(task, preset, *layers):
    """A validated TrainConfig dict: defaults, then the preset for ``task``, then each layer."""
    from rbtw.config import build_config
    return build_config(task, preset, *layers).to_dict()


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
            return tomllib.loads(raw.decode("utf-8"))
        if path.suffix.lower() == ".json":
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict):
                raise UserError(f"{path}: a sweep file holds one object/table")
            return data
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (byte {e.start})") from None
    except ValueError as e:  # tomllib.TOMLDecodeError and json.JSONDecodeError are ValueErrors
        raise UserError(f"{path} is not valid {path.suffix[1:].upper()}: {str(e).splitlines()[0]}") from None
    raise UserError(f"{path}: a sweep file ends in .toml or .json")


def parse_spec(d, where="the sweep file"):
    """A :class:`Sweep` from a raw dict, every run's configuration checked."""
    from rbtw.config import PRESETS, TASKS
    unknown = sorted(set(d) - set(SPEC_KEYS))
    if unknown:
        raise UserError(f"{where}: unknown field(s) {', '.join(unknown)}; expected {', '.join(SPEC_KEYS)}")
    task = d.get("task")
    if task not in TASKS:
        raise UserError(f"{where}: task must be one of {', '.join(TASKS)} (got {task!r})")
    preset = d.get("preset", "quick")
    if preset not in PRESETS:
        raise UserError(f"{where}: preset must be one of {', '.join(PRESETS)} (got {preset!r})")
    options = d.get("options", {})
    if not isinstance(options, dict):
        raise UserError(f"{where}: options must be a table of TrainConfig fields")
    _check_fields(options, f"{where}: options")
    grid = d.get("grid")
    if not isinstance(grid, dict) or not grid:
        raise UserError(f"{where}: the grid is empty; give at least one variant, e.g. fp = {{ quant = \"none\" }}")
    variants, axes = {}, {}
    for key, value in grid.items():
        if isinstance(value, dict):
            if not re.fullmatch(r"[A-Za-z0-9_.+-]+", key):
                raise UserError(f"{where}: variant name {key!r} may hold only letters, digits and _ . + -")
            _check_fields(value, f"{where}: variant {key!r}")
            variants[key] = value
        elif isinstance(value, list):
            if not value:
                raise UserError(f"{where}: axis {key!r} has no values")
            for v in value:
                _check_fields({key: v}, f"{where}: axis {key!r}")
            axes[key] = value
        else:
            raise UserError(f"{where}: grid entry {key!r} must be a table (a variant) or an array (an axis)")
    if not variants:
        raise UserError(f"{where}: the grid has no variant (a table of TrainConfig overrides)")
    seeds = d.get("seeds")
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise UserError(f"{where}: seeds must be a non-empty array of integers")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"{where}: seeds repeat")
    reference = d.get("reference")
    if reference is not None and reference not in variants:
        raise UserError(f"{where}: the reference {reference!r} is not a variant of the grid")
    sweep = Sweep(task, preset, options, variants, axes, seeds, reference)
    try:
        sweep.runs(".")
    except UserError as e:
        raise UserError(f"{where}: {e}") from None
    return sweep


def load_sweep(path):
    return parse_spec(read_spec(path), str(path))


def _field_types():
    from rbtw.config import TrainConfig
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in fields(TrainConfig)}


def _check_fields(d, where):
    """Every key a TrainConfig field (task and seed excepted), every value of the field's type."""
    types_ = _field_types()
    for key, value in d.items():
        if key in ("task", "seed"):
            raise UserError(f"{where}: {key} is set by the sweep itself (task = ..., seeds = [...])")
        if key not in types_:
            raise UserError(f"{where}: unknown field {key!r} (TrainConfig fields: see rbtw train --help)")
        if not _is_type(value, types_[key]):
            raise UserError(f"{where}: {key} = {value!r} is not of type {_type_name(types_[key])}")


def _is_type(value, tp):
    allowed = typing.get_args(tp) if isinstance(tp, types.UnionType) else (tp,)
    for a in allowed:
        if a is type(None) and value is None:
            return True
        if a is bool and isinstance(value, bool):
            return True
        if a is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if a is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if a is str and isinstance(value, str):
            return True
    return False


def _type_name(tp):
    allowed = typing.get_args(tp) if isinstance(tp, types.UnionType) else (tp,)
    return " or ".join("null" if a is type(None) else a.__name__ for a in allowed)


def prepare_out(sweep, out_dir):
    """Claim ``out_dir`` for the sweep: store the sweep there, or check that it holds this one."""
    from rbtw.fileio import atomic_open
    out = Path(out_dir)
    stored = out / SPEC_NAME
    want = json.loads(json.dumps(sweep.to_dict()))
    if stored.exists():
        try:
            have = json.loads(stored.read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"{stored} is unreadable: {e}") from None
        if have != want:
            raise UserError(f"{out} holds a different sweep (see {stored}); choose another --out")
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and does not hold a sweep; choose another --out")
    with atomic_open(stored, "w") as f:
        json.dump(want, f, indent=2)


def stored_sweep(out_dir):
    path = Path(out_dir) / SPEC_NAME
    if not path.exists():
        raise UserError(f"{out_dir} holds no sweep ({SPEC_NAME} is missing)")
    try:
        return parse_spec(json.loads(path.read_text()), str(path))
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON: {e}") from None


# ---------------------------------------------------------------------------------------------
# one run (a Dask task)


def finished_test(run_dir):
    """The test event of a finished run, or None."""
    from rbtw.rundir import RunDir
    return RunDir(run_dir).final_test()


def _append_event(run_dir, **event):
    from rbtw.rundir import RunDir
    RunDir(run_dir).append(**event)


def train_one(config, out_dir, data_dir=None):
    """Train the run in ``out_dir`` to its end (a Dask task; also callable directly).

    Holds the run's lock throughout.  Returns {"status": "done" | "failed" | "busy", ...}:
    done with "skipped" when it had finished before, "resumed" when it continued a checkpoint;
    failed with the run's own error (NaN loss, bad option, missing data); busy when another
    live process holds the lock.
    """
    from rbtw.config import TrainConfig
    from rbtw.rundir import RunDir
    from rbtw.runlock import RunBusy, RunLock
    from rbtw.train import Run
    out = Path(out_dir)
    try:
        lock = RunLock(out).acquire()
    except RunBusy as e:
        return {"status": "busy", "error": str(e)}
    try:
        if finished_test(out) is not None:
            return {"status": "done", "skipped": True}
        resume = RunDir(out).has_checkpoint()
        start = time.time()
        where = dict(host=socket.gethostname(), pid=os.getpid(), resumed=resume)
        try:
            with open(RunDir(out).train_log_path, "a") as log:
                def echo(line):
                    log.write(line + "\n")
                    log.flush()
                run = Run(TrainConfig.from_dict(config), out, data_dir=data_dir, resume=resume, log=echo)
                run.run()
        except Exception as e:  # the run's own failure: recorded, the sweep goes on
            message = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
            message = message.splitlines()[0] if message else type(e).__name__
            _append_event(out, event="sweep", status="failed", error=message,
                          seconds=round(time.time() - start, 3), **where)
            return {"status": "failed", "error": message, "resumed": resume}
        seconds = round(time.time() - start, 3)
        _append_event(out, event="sweep", status="done", seconds=seconds, **where)
        return {"status": "done", "seconds": seconds, "resumed": resume}
    finally:
        lock.release()


# ---------------------------------------------------------------------------------------------
# the runner


def local_cluster(workers=None, **kwargs):
    """A LocalCluster of ``workers`` single-threaded processes (default: one per core).

    BLAS, OpenMP and Numba are pinned to one thread in the workers' environment before they
    start; no memory limit (a run takes what it needs, as ``rbtw train`` would); the workers'
    statistical profiler is off (sampling every 10 ms, it costs about 2 % of a core).
    """
    dask, distributed = _import_dask()
    n = workers or os.cpu_count() or 1
    with dask.config.set({"distributed.nanny.pre-spawn-environ":
                          dict(dask.config.get("distributed.nanny.pre-spawn-environ"), **ONE_THREAD),
                          "distributed.worker.profile.enabled": False}):
        saved = {k: os.environ.pop(k) for k in ONE_THREAD if k in os.environ}  # the config must win
        try:
            return distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                            memory_limit=0, **kwargs)
        finally:
            os.environ.update(saved)


def _import_dask():
    try:
        import dask
        import distributed
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return dask, distributed


def connect(scheduler=None, workers=None):
    """(client, cluster): a client of ``scheduler``, or of a new LocalCluster (cluster not None)."""
    import logging
    _, distributed = _import_dask()
    if scheduler:
        try:
            return distributed.Client(scheduler, timeout=CONNECT_TIMEOUT), None
        except (OSError, TimeoutError, ValueError) as e:
            raise UserError(f"cannot connect to the Dask scheduler at {scheduler}: "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    cluster = local_cluster(workers, silence_logs=logging.ERROR)
    return distributed.Client(cluster), cluster


def dashboard(client, local=False):
    """The dashboard address, or None when the scheduler serves none.

    A local scheduler without bokeh serves no dashboard pages; its address is not offered.
    """
    import importlib.util
    if local and importlib.util.find_spec("bokeh") is None:
        return None
    try:
        if "dashboard" in client.scheduler_info().get("services", {}):
            return client.dashboard_link
    except Exception:  # informational only
        return None
    return None


def run_all(runs, client, data_dir=None, echo=None, progress=None, retry_seconds=BUSY_RETRY_SECONDS):
    """Run every unfinished run as a Dask task on ``client``; returns {name: result}.

    Finished runs are skipped without a task.  ``progress(result)`` is called once per run
    when it ends (skipped, done or failed).  A run whose lock is busy is tried again after
    ``retry_seconds``.  Failures of single runs are results, not exceptions.
    """
    from distributed import as_completed
    echo = echo or (lambda line: None)
    data_dir = str(Path(data_dir).resolve()) if data_dir else None
    results, futures = {}, {}
    for r in runs:
        if finished_test(r.out) is not None:
            results[r.name] = {"status": "done", "skipped": True}
            if progress:
                progress(results[r.name])

    def submit(run, delay=0.0):
        f = client.submit(_delayed_train, delay, run.config, str(Path(run.out).resolve()), data_dir,
                          key=f"rbtw-train-{run.name}-{time.time_ns()}", pure=False)
        futures[f] = run
        return f

    todo = [r for r in runs if r.name not in results]
    if not todo:
        return results
    pending = as_completed([submit(r) for r in todo])
    busy_said = set()
    for future in pending:
        run = futures.pop(future)
        try:
            result = future.result()
        except Exception as e:  # the task itself was lost, e.g. its workers died too often
            text = str(e).splitlines()[0] if str(e) else ""
            result = {"status": "failed", "error": f"{type(e).__name__}: {text}"}
        if result["status"] == "busy":
            if run.name not in busy_said:
                echo(f"{run.name}: {result['error']}; trying again every {retry_seconds:g} s")
                busy_said.add(run.name)
            pending.add(submit(run, retry_seconds))
            continue
        results[run.name] = result
        if result["status"] == "failed":
            echo(f"{run.name}: FAILED: {result['error']}")
        if progress:
            progress(result)
    return results


def _delayed_train(delay, config, out_dir, data_dir):
    if delay:
        time.sleep(delay)
    return train_one(config, out_dir, data_dir)


# ---------------------------------------------------------------------------------------------
# aggregation


def t_interval(values, level=0.95):
    """(n, mean, sd, (low, high)) of ``values``; sd and the interval are None when n < 2."""
    import numpy as np
    from scipy import stats
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return 0, None, None, None
    mean = float(x.mean())
    if n < 2:
        return n, mean, None, None
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return n, mean, sd, (mean - half, mean + half)


def collect(sweep, out_dir):
    """One record per run of the sweep, read from its run directory alone."""
    from rbtw.config import TASKS, metric_name
    from rbtw.rundir import RunDir
    metric = metric_name(TASKS[sweep.task])
    records = []
    for r in sweep.runs(out_dir):
        events = RunDir(r.out).events()
        tests = [e for e in events if e.get("event") == "test"]
        attempts = [e for e in events if e.get("event") == "sweep"]
        record = {"name": r.name, "variant": r.variant, "axes": r.axes, "seed": r.seed,
                  "status": "not started" if not r.out.exists() else "unfinished",
                  f"test_{metric}": None, "eval_weights": None, "eval_stats": None,
                  "wall_seconds": round(sum(e.get("seconds", 0) for e in attempts), 3),
                  "attempts": len(attempts)}
        if tests:
            record.update(status="done", **{f"test_{metric}": tests[-1].get(f"test_{metric}")},
                          eval_weights=tests[-1].get("eval_weights"), eval_stats=tests[-1].get("eval_stats"))
        elif attempts and attempts[-1].get("status") == "failed":
            record.update(status="failed", error=attempts[-1].get("error"))
        records.append(record)
    return metric, records


def summarize(sweep, metric, records):
    """Per (variant, axes): n, mean, sd, 95 % interval; paired differences against the reference."""
    key = f"test_{metric}"
    groups, order = {}, []
    for rec in records:
        g = (rec["variant"], json.dumps(rec["axes"], sort_keys=True))
        if g not in groups:
            groups[g] = []
            order.append(g)
        groups[g].append(rec)
    rows, diffs = [], []
    for variant, axes in order:
        recs = groups[(variant, axes)]
        done = {r["seed"]: r[key] for r in recs if r["status"] == "done" and r[key] is not None}
        n, mean, sd, ci = t_interval(list(done.values()))
        rows.append({"variant": variant, "axes": json.loads(axes), "n": n, "runs": len(recs), "mean": mean,
                     "sd": sd, "ci95": list(ci) if ci else None,
                     "failed": sum(r["status"] == "failed" for r in recs)})
        if sweep.reference is None or variant == sweep.reference:
            continue
        ref = {r["seed"]: r[key] for r in groups.get((sweep.reference, axes), [])
               if r["status"] == "done" and r[key] is not None}
        seeds = [s for s in done if s in ref]
        n, mean, sd, ci = t_interval([done[s] - ref[s] for s in seeds])
        diffs.append({"variant": variant, "reference": sweep.reference, "axes": json.loads(axes), "n": n,
                      "seeds": seeds, "mean": mean, "sd": sd, "ci95": list(ci) if ci else None})
    return {"task": sweep.task, "metric": f"test {metric}", "reference": sweep.reference,
            "interval": "95 % Student t over seeds", "groups": rows, "differences": diffs, "runs": records}


def write_summary(sweep, out_dir):
    """Write DIR/summary.json and DIR/summary.md from the run directories; returns the summary."""
    from rbtw.fileio import atomic_open
    metric, records = collect(sweep, out_dir)
    summary = summarize(sweep, metric, records)
    with atomic_open(Path(out_dir) / "summary.json", "w") as f:
        json.dump(summary, f, indent=2)
    with atomic_open(Path(out_dir) / "summary.md", "w") as f:
        f.write(markdown(summary) + "\n")
    return summary


def _num(x):
    return "—" if x is None else f"{x:.4f}"


def _ci(ci):
    return "—" if not ci else f"[{ci[0]:.4f}, {ci[1]:.4f}]"


def _axes(axes):
    return ", ".join(f"{k}={v}" for k, v in axes.items()) or "—"


def markdown(summary):
    metric = summary["metric"]
    conventions = {(r["eval_weights"], r["eval_stats"]) for r in summary["runs"] if r["status"] == "done"}
    conv = "; ".join(f"{w} weights, {s} statistics" for w, s in sorted(conventions)) or "—"
    lines = [f"# Sweep: {summary['task']}, {metric}", "",
             f"Evaluation: {conv}. Intervals: {summary['interval']}.", "",
             f"| variant | axes | seeds done | mean {metric} | sd | 95 % interval | failed |",
             "|---|---|---|---|---|---|---|"]
    for g in summary["groups"]:
        lines.append(f"| {g['variant']} | {_axes(g['axes'])} | {g['n']}/{g['runs']} | {_num(g['mean'])} | "
                     f"{_num(g['sd'])} | {_ci(g['ci95'])} | {g['failed']} |")
    if summary["reference"]:
        lines += ["", f"Paired differences, variant − {summary['reference']}, same seed:", "",
                  "| variant | axes | pairs | mean Δ | sd | 95 % interval |", "|---|---|---|---|---|---|"]
        for d in summary["differences"]:
            lines.append(f"| {d['variant']} | {_axes(d['axes'])} | {d['n']} | {_num(d['mean'])} | "
                         f"{_num(d['sd'])} | {_ci(d['ci95'])} |")
    key = "test_" + metric.split()[-1]
    lines += ["", f"| run | status | {metric} | wall time |", "|---|---|---|---|"]
    for r in summary["runs"]:
        status = r["status"] + (f": {r['error']}" if r.get("error") else "")
        lines.append(f"| {r['name']} | {status} | {_num(r[key])} | {r['wall_seconds']:.1f} s |")
    return "\n".join(lines)
