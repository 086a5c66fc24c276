"""A sweep's results, read from its run directories alone: per run, per group, per claim.

For the test metric x_s of each finished run (s = 1..n seeds) of a group (variant, axis values,
arm):

    mean  x̄ = Σ x_s / n,   sd = sqrt(Σ (x_s − x̄)² / (n − 1)),
    95 % interval  x̄ ± t_{0.975, n−1} · sd / √n      (Student t; none when n < 2)

and the paired differences d_s = x_s(variant) − x_s(reference) over the seeds where both
finished (same axis values and arm), with the same three figures.

A study (``[summary] conventions = true``) also reports the test metric of every run under
each evaluation convention (docs/design.md §2), from the same checkpoint:

    population   population BN statistics, deterministic weights (what hardware runs)
    official     the test batch's own statistics, freshly sampled weights (the official code)
    expected     population statistics, E[W^q] = clip(W, −α, α) (a float reference)

(full precision has no weight sampling: its official convention differs in the statistics
only), and a fourth, the deterministic model after post-training calibration (rbtw.calibrate):

    calibrated   population statistics re-estimated under the deterministic weights and, for
                 ternary, the threshold τ = θ·α, both chosen on the validation split; then as
                 population.  Full precision with BN has its statistics re-estimated (its
                 running averages trail weights that moved); a model with nothing to calibrate
                 (no BN and no ternary threshold) scores its population value.

Measured once per checkpoint and kept in the run's conventions.json (the calibration's report,
threshold and validation figures, beside them): the final checkpoint, for runs extended until
they converged the schedule's end (schedule-end.npz), and the best validation point (best.npz;
measured once when it is one of the others).  Every figure is measured on the test split as
the run evaluates it (its ``eval_max_batches``; the paper's presets have no cap), so that
``population`` is the run's own test figure; the calibration chooses on the whole validation
split.  An entry made by another calibration rule (rbtw.calibrate.RULE) has its calibrated value
measured again (unless the rules agree for this run: rbtw.calibrate.SAME_UNCAPPED); the others
are kept.  Each entry carries a sha256 over its key and contents: a changed figure is measured
again, never reported (an entry without a seal, as older versions wrote them, too).
"""

import json
import math
from pathlib import Path

from rbtw.errors import UserError
from rbtw.errors import is_real
from rbtw.evaluate import CONVENTIONS            # name -> (weights, batch statistics), as trained
from rbtw.rundir import RunDir

CALIBRATED = "calibrated"
STUDY_CONVENTIONS = (*CONVENTIONS, CALIBRATED)        # the columns of a study's tables
BEST = "conventions_at_best"                          # a record's conventions at its best validation point
RULE_KEY = "calibration_rule"                         # a cache entry's rbtw.calibrate.RULE
NOT_DONE = ("failed", "damaged", "foreign")   # statuses a group counts as failed runs
SEAL = "sha256"                                       # a cache entry's checksum over its key and contents


# ---------------------------------------------------------------------------------------------
# conventions


def _cache(run_dir):
    """The run's cache of measured conventions: {checkpoint@step: entry}.  A damaged cache is an
    empty one, and an entry whose seal does not match its key and contents, or that has none,
    is left out (what they held is measured again)."""
    path = RunDir(run_dir).conventions_path
    try:
        cache = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        return {}
    if not isinstance(cache, dict):
        return {}
    return {key: entry for key, entry in cache.items() if isinstance(entry, dict) and _sealed(key, entry)}


def _sealed(key, entry):
    """Whether a cache entry's seal matches its key and contents.  An entry without a seal is
    measured again: one written before entries were sealed cannot be told from one whose seal's
    name was damaged."""
    return SEAL in entry and entry[SEAL] == _seal(key, entry)


def _seal(key, entry):
    """sha256 of an entry with its key, as canonical JSON (without the seal itself)."""
    import hashlib
    body = {k: v for k, v in entry.items() if k != SEAL}
    try:
        text = json.dumps([key, body], sort_keys=True, allow_nan=True)
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _capped(run_dir):
    """Whether the run's configuration caps its evaluations (eval_max_batches); a configuration
    that cannot be read counts as capped."""
    try:
        config = json.loads(RunDir(run_dir).config_path.read_text(encoding="utf-8"))
        return config.get("eval_max_batches") not in (None, 0)
    except (OSError, ValueError, AttributeError):
        return True


def _checkpoint_key(run_dir, name):
    from rbtw.checkpoint import load_meta
    return f"{name}@{load_meta(Path(run_dir) / name)['step']}"


def _current(entry, capped):
    """A cache entry without what another calibration rule measured, for a run whose
    evaluations are ``capped`` (eval_max_batches) or not."""
    from rbtw.calibrate import RULE, SAME_UNCAPPED
    entry = dict(entry)
    same = entry.get(RULE_KEY) == RULE or (not capped and entry.get(RULE_KEY) in SAME_UNCAPPED)
    if not same:
        for field in (CALIBRATED, "calibration", RULE_KEY):
            entry.pop(field, None)
    return entry


def _entry(run_dir, name):
    """The cache entry of checkpoint ``name`` as the current rule stands, or None."""
    try:
        entry = _cache(run_dir).get(_checkpoint_key(run_dir, name))
    except (OSError, UserError):
        return None
    if not isinstance(entry, dict):
        return None
    entry = _current(entry, _capped(run_dir))
    for c in STUDY_CONVENTIONS:         # a figure that is not a number was not measured
        if c in entry and not is_real(entry[c]):
            del entry[c]
    if not isinstance(entry.get("calibration", {}), dict):
        del entry["calibration"]
    return entry


def has_conventions(run_dir, name):
    entry = _entry(run_dir, name) or {}
    return all(c in entry for c in STUDY_CONVENTIONS)


def conventions_complete(run_dir):
    """Whether every checkpoint a study reports of the run (runner.checkpoints_to_measure) has
    all its conventions in the cache: until then the run's sweep is not done with it."""
    from rbtw.sweep.runner import checkpoints_to_measure
    return all(has_conventions(run_dir, name) for name in checkpoints_to_measure(run_dir))


def conventions_of(run_dir, name):
    """The cached {convention: test metric} of checkpoint ``name`` of the run, or None."""
    entry = _entry(run_dir, name)
    return None if entry is None else {c: entry[c] for c in STUDY_CONVENTIONS if c in entry}


def calibration_of(run_dir, name):
    """The cached calibration report of checkpoint ``name`` (rbtw.calibrate), or None."""
    return (_entry(run_dir, name) or {}).get("calibration")


def measure_conventions(run_dir, name, data_dir=None):
    """Measure (or read) {convention: test metric} of checkpoint ``name`` on the test split as
    the run evaluates it (module docstring); only the conventions not yet in the cache are
    measured."""
    from rbtw.checkpoint import read_checkpoint
    from rbtw.config import TrainConfig, metric_name
    from rbtw.evaluate import evaluate
    from rbtw.tasks import load_task_data
    key = _checkpoint_key(run_dir, name)
    capped = _capped(run_dir)
    known = {k: _current(v, capped) for k, v in _cache(run_dir).items()}
    out = dict(known.get(key) or {})
    step = key.rpartition("@")[2]
    for other, measured in known.items():     # the same state under another name (best.npz = the final)
        if other.rpartition("@")[2] == step and len(measured) > len(out):
            out = dict(measured)
    if all(c in out for c in STUDY_CONVENTIONS):
        if known.get(key) != out:      # new here, or this name's entry is stale and the other's not
            _store(run_dir, key, out)
        return conventions_of(run_dir, name)
    ckpt, spec = read_checkpoint(Path(run_dir) / name)
    config = TrainConfig.from_dict(ckpt.meta["config"])
    data = load_task_data(config, data_dir)
    metric = metric_name(config.kind)
    for convention, (weights, batch_stats) in CONVENTIONS.items():
        if convention in out:
            continue
        if config.quant == "none":
            weights = "deterministic"
        out[convention] = evaluate(ckpt.params, ckpt.stats, spec, data, "test", config, weights=weights,
                                   batch_stats=batch_stats, max_batches=None)[metric]
    if CALIBRATED not in out:
        from rbtw.calibrate import RULE
        out[CALIBRATED], out["calibration"] = _calibrated(ckpt, spec, data, config, metric, out["population"])
        out[RULE_KEY] = RULE
    _store(run_dir, key, out)
    return conventions_of(run_dir, name)


def _store(run_dir, key, value):
    from rbtw.fileio import atomic_open
    with atomic_open(RunDir(run_dir).conventions_path, "w") as f:
        json.dump(dict(_cache(run_dir), **{key: dict(value, **{SEAL: _seal(key, value)})}), f, indent=1)


def _calibrated(ckpt, spec, data, config, metric, population):
    """(test metric of the calibrated deterministic model, the calibration's report or None)."""
    from rbtw.calibrate import calibratable, calibrate
    from rbtw.evaluate import evaluate
    from rbtw.models import ModelSpec
    if not calibratable(spec):
        return population, None                  # nothing to calibrate: the population value
    meta, params, stats, report = calibrate(ckpt, data, config)
    value = evaluate(params, stats, ModelSpec.from_dict(meta["spec"]), data, "test", config,
                     weights="deterministic", batch_stats=False, max_batches=None)[metric]
    return value, report


# ---------------------------------------------------------------------------------------------
# records


def _attempt_spans(events):
    """The log cut into attempts: each span runs from an "attempt" event to the next one (or the
    log's end), so it holds the attempt's "sweep" event when the attempt ended by itself and
    none when its worker died.  Events before the first attempt (a run started by hand) belong
    to none."""
    starts = [k for k, e in enumerate(events) if e.get("event") == "attempt"]
    return [events[k:end] for k, end in zip(starts, starts[1:] + [len(events)])]


def _ending(span):
    """An attempt's closing "sweep" event, or None when its worker died."""
    closed = [e for e in span if e.get("event") == "sweep"]
    return closed[-1] if closed else None


def attempt_seconds(events):
    """(wall seconds over every attempt, attempts): an attempt runs from its "attempt" event to its
    "sweep" event, or, when its worker died, to the last event it logged.  Runs trained outside a
    sweep (no attempt events) count the seconds of their epochs."""
    spans = _attempt_spans(events)
    if not spans:
        return round(sum(e.get("seconds", 0) for e in events if e.get("event") == "epoch"), 3), 0
    total = 0.0
    for span in spans:
        end = _ending(span)
        begun = span[0].get("time_started", span[0].get("time", 0))
        total += end["seconds"] if end else max(span[-1].get("time", 0) - begun, 0)
    return round(total, 3), len(spans)


def resumed_from_log(events):
    """Whether a stage of the run was resumed: some attempt began after one that did not end
    done (its worker died, or the sweep was interrupted).  An arm's log begins with its
    prefix's attempt, which ended done, so branching from a prefix is not a resume; neither is
    an until extension after its stage ended done."""
    return any((_ending(span) or {}).get("status") != "done" for span in _attempt_spans(events)[:-1])


def _after(events, a, b):
    """Whether event ``a`` comes after event ``b`` in ``events`` (both taken from it)."""
    index = {id(e): k for k, e in enumerate(events)}
    return index[id(a)] > index[id(b)]


def machines_of(events):
    """The machines that trained a run (rbtw.machine.describe, as its attempts recorded them),
    in the order they first did; empty for logs written before attempts recorded it."""
    return list(dict.fromkeys(e["machine"] for e in events if e.get("event") == "attempt" and e.get("machine")))


def record(run, metric):
    """One run's record, from its run directory alone."""
    from rbtw.runlock import is_held
    from rbtw.sweep.runner import foreign_config, until_state
    rd = RunDir(run.out)
    rec = {"name": run.name, "key": run.key, "variant": run.variant, "axes": run.axes, "seed": run.seed,
           "arm": run.arm, "stage": run.stage, f"test_{metric}": None, "eval_weights": None, "eval_stats": None}
    try:
        events = rd.events()
    except UserError as e:
        return dict(rec, status="damaged", error=str(e), wall_seconds=0.0, attempts=0, resumed=False)
    wall, attempts = attempt_seconds(events)
    rec.update(status="not started" if not run.out.exists() else "unfinished", wall_seconds=wall,
               attempts=attempts, resumed=resumed_from_log(events), machines=machines_of(events))
    foreign = foreign_config(run)
    if foreign:                        # another run's directory in this one's place: not counted
        return dict(rec, status="foreign", error=foreign)
    epochs = [e for e in events if e.get("event") == "epoch"]
    rec["valid"] = [e.get(f"valid_{metric}") for e in epochs]
    rec["schedule_epochs"] = run.config.get("epochs")      # before any the until criterion adds
    tests = [e for e in events if e.get("event") == "test"]
    ends = [e for e in events if e.get("event") == "sweep"]
    if tests:
        rec.update(status="done", **{f"test_{metric}": tests[-1].get(f"test_{metric}")},
                   eval_weights=tests[-1].get("eval_weights"), eval_stats=tests[-1].get("eval_stats"))
        if ends and ends[-1].get("status") == "failed" and _after(events, ends[-1], tests[-1]):
            # it failed after its test (measuring its conventions: a damaged checkpoint, say)
            rec.update(status="failed", error=ends[-1].get("error"))
    elif is_held(run.out):             # a live process trains it now (as rbtw runs says)
        rec["status"] = "training"
    elif ends and ends[-1].get("status") in ("failed", "interrupted"):
        rec.update(status=ends[-1]["status"], error=ends[-1].get("error"))
    if tests and run.until is not None:
        try:
            state = until_state(run.out, run.config, run.until)
        except UserError as e:
            return dict(rec, status="damaged", error=str(e))
        rec.update(converged=state == "converged", until=state,
                   last_epoch_gain=_gain(rec["valid"], metric))
        if state == "extend" and rec["status"] == "done":
            rec["status"] = "training" if is_held(run.out) else "unfinished"
    if run.conventions and rec["status"] == "done" and not conventions_complete(run.out):
        # tested, but stopped while its conventions were measured: the next pass measures them
        rec["status"] = "training" if is_held(run.out) else "unfinished"
    if run.conventions:
        rec["conventions"] = conventions_of(run.out, rd.checkpoint_path.name) if tests else None
        rec["calibration"] = calibration_of(run.out, rd.checkpoint_path.name) if tests else None
        if rd.schedule_end_path.exists():
            rec["conventions_at_schedule_end"] = conventions_of(run.out, rd.schedule_end_path.name)
        if tests and rd.best_path.exists():
            rec[BEST] = conventions_of(run.out, rd.best_path.name)
            rec["best_epoch"] = _epoch_of(run.out, rd.best_path.name)
    return rec


def _epoch_of(run_dir, name):
    from rbtw.checkpoint import load_meta
    try:
        return load_meta(Path(run_dir) / name)["epoch"]
    except (OSError, UserError):
        return None


def _gain(valid, metric):
    if len(valid) < 2:
        return None
    from rbtw.config import improvement
    return round(improvement(metric, valid[-2], valid[-1]), 6)


def collect(sweep, out_dir):
    """(metric, one record per run of the sweep), read from the run directories alone."""
    from rbtw.config import task_metric
    metric = task_metric(sweep.task)
    runs = sweep.runs(out_dir)
    records = [record(r, metric) for r in runs]
    status = {rec["key"]: rec["status"] for rec in records}
    for run, rec in zip(runs, records):     # as the runner says (rbtw.sweep.cluster._Loop.submit_ready)
        if run.prefix is not None and rec["status"] == "not started" and status[run.prefix.key] in NOT_DONE:
            rec.update(status="failed", error=f"its prefix {run.prefix.key} did not finish")
    return metric, records


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


def _group_key(rec):
    return rec["variant"], json.dumps(rec["axes"], sort_keys=True), rec["arm"]


def _stat(values):
    n, mean, sd, ci = t_interval(values)
    return {"n": n, "mean": mean, "sd": sd, "ci95": list(ci) if ci else None}


def _values(recs, field, convention=None, at="conventions"):
    """{seed: value} of the finished runs of a group, for the test metric or a convention (of
    the final checkpoint, or with ``at="conventions_at_best"`` of the best validation point)."""
    out = {}
    for r in recs:
        if r["status"] != "done":
            continue
        v = (r.get(at) or {}).get(convention) if convention else r.get(field)
        if v is not None:
            out[r["seed"]] = v
    return out


def summarize(sweep, metric, records):
    """Per group (variant, axes, arm): n, mean, sd, 95 % interval, and the same per evaluation
    convention of a study; paired differences against the reference (same axes, arm and seed)."""
    key = f"test_{metric}"
    groups, order = {}, []
    for rec in records:
        if rec["stage"] == "prefix":
            continue
        g = _group_key(rec)
        if g not in groups:
            groups[g] = []
            order.append(g)
        groups[g].append(rec)
    conventions = list(STUDY_CONVENTIONS) if sweep.summary.get("conventions") else []
    rows, diffs = [], []
    for g in order:
        variant, axes, arm = g
        recs = groups[g]
        row = {"variant": variant, "axes": json.loads(axes), "arm": arm, "runs": len(recs),
               "failed": sum(r["status"] in NOT_DONE for r in recs), **_stat(list(_values(recs, key).values()))}
        if sweep.until is not None:
            row["converged"] = sum(bool(r.get("converged")) for r in recs)
        row["conventions"] = {c: _stat(list(_values(recs, key, c).values())) for c in conventions}
        row["conventions_at_best"] = {c: _stat(list(_values(recs, key, c, BEST).values())) for c in conventions}
        rows.append(row)
        if sweep.reference is None or variant == sweep.reference:
            continue
        ref = groups.get((sweep.reference, axes, arm), [])
        diff = {"variant": variant, "reference": sweep.reference, "axes": json.loads(axes), "arm": arm}
        diff.update(_paired(_values(recs, key), _values(ref, key)))
        diff["conventions"] = {c: _paired(_values(recs, key, c), _values(ref, key, c)) for c in conventions}
        diff["conventions_at_best"] = {c: _paired(_values(recs, key, c, BEST), _values(ref, key, c, BEST))
                                       for c in conventions}
        diffs.append(diff)
    return {"task": sweep.task, "metric": f"test {metric}", "reference": sweep.reference,
            "interval": "95 % Student t over seeds", "conventions": conventions, "groups": rows,
            "differences": diffs, "runs": records}


def _paired(mine, ref):
    seeds = sorted(s for s in mine if s in ref)
    return dict(_stat([mine[s] - ref[s] for s in seeds]), seeds=seeds)


def write_summary(sweep, out_dir):
    """Write DIR/summary.json and DIR/summary.md from the run directories; returns the summary."""
    from rbtw.fileio import atomic_open
    from rbtw.sweep.report import markdown
    from rbtw.sweep.spec import SUMMARY_JSON, SUMMARY_MD
    metric, records = collect(sweep, out_dir)
    summary = summarize(sweep, metric, records)
    with atomic_open(Path(out_dir) / SUMMARY_JSON, "w") as f:
        json.dump(summary, f, indent=2)
    with atomic_open(Path(out_dir) / SUMMARY_MD, "w") as f:
        f.write(markdown(summary) + "\n")
    return summary
