"""Running a sweep's runs as Dask tasks: each task one run (or one arm, then its extensions).

A task holds its run directory's lock (rbtw.runlock) while it trains, so no run is trained
twice at once; it skips a finished run and resumes an unfinished one from its checkpoint.  When
a worker dies, Dask runs the task again elsewhere and it resumes.  A task that finds the lock
held by another live process returns "busy" and is submitted again a few seconds later.

An arm waits for its prefix: the runner submits a task only when what it depends on has
finished on disk, and submits the dependants as tasks complete (a re-submission loop over Dask
futures, not a scheduler of its own).  An arm's task branches its prefix (rbtw.train.branch),
trains the arm's schedule, then, with ``until``, trains one more epoch at a time at the
schedule's end rate until the last epoch's validation gain is below ``min_gain`` (or
``max_epochs`` is reached), keeping the schedule's last checkpoint as schedule-end.npz; with
``conventions`` it finally measures the test metric under each evaluation convention.

Every attempt is logged in the run's metrics log ("attempt" when it starts, "sweep" when it
ends), so the runner can say when a run was resumed after a lost worker and the summary can
add up every attempt's time.  Ctrl-C stops the runs at their next minibatch boundary (each
saves a checkpoint and logs "interrupted") through the sweep's own stop file in the sweep
directory (stop_file_for).
"""

import os
import secrets
import shutil
import socket
import threading
import time
from pathlib import Path

from rbtw.errors import UserError, is_whole, os_error_message
from rbtw.rundir import RunDir
from rbtw.sweep.spec import STOP_PREFIX

INSTALL_HINT = "rbtw sweep needs Dask: pip install 'rbtw[dist]' (or pip install 'dask[distributed]')"
# Each worker computes with one thread; set before the worker process starts (and imports numpy).
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "NUMBA_NUM_THREADS": "1"}
BUSY_RETRY_SECONDS = 5.0
NOTICE_SECONDS = 5.0       # how often the runner looks for resumed attempts and lost workers
STOP_GRACE_SECONDS = 600   # how long Ctrl-C waits for runs to reach a minibatch boundary


def stop_file_for(out_dir):
    """The stop file of one sweep process in ``out_dir``: created on Ctrl-C, watched by that
    sweep's tasks only.  Its name is the sweep's own (host, pid, a random token), so that two
    sweeps on one directory (``--only`` splitting a study between them) never stop each other,
    and one starting never cancels another's stop.  It lives in the sweep directory because
    workers on other hosts see that directory."""
    return Path(out_dir) / f"{STOP_PREFIX}{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


def _import_dask():
    try:
        import dask
        import distributed
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return dask, distributed


# ---------------------------------------------------------------------------------------------
# is a stage finished?


def metric_of(config):
    from rbtw.config import task_metric
    return task_metric(config["task"])


def until_state(run_dir, config, until):
    """"converged", "cap" or "extend" for a finished run under the ``until`` criterion."""
    metric = metric_of(config)
    rd = RunDir(run_dir)
    valid = [e.get(f"valid_{metric}") for e in rd.epochs()]
    if None in valid:
        raise UserError(f"{rd.metrics_path}: an epoch event has no valid_{metric}, which the "
                        f"convergence test reads (a damaged or foreign log)")
    if len(valid) >= 2:
        from rbtw.config import improvement
        if improvement(metric, valid[-2], valid[-1]) < until["min_gain"]:
            return "converged"
    return "cap" if len(valid) >= until["max_epochs"] else "extend"


def checkpoints_to_measure(run_dir):
    """The checkpoints whose test metric a study reports: the final one, the schedule's last when
    the run was extended past its schedule, and the best validation point (best.npz; the
    official code reports the test error there)."""
    rd = RunDir(run_dir)
    return [p.name for p in (rd.checkpoint_path, rd.schedule_end_path, rd.best_path) if p.exists()]


def foreign_config(run):
    """Why the configuration in ``run``'s directory is not the sweep's for it, or None (no
    directory yet, or nothing readable in it: training reports that).  The configuration is
    config.json's or, when that is torn or gone, the checkpoint's (what a resume would train).
    A run directory in the sweep's layout is taken over only when it is this run: every field
    equal, except checkpoint_every (rbtw.config.RESUME_MAY_CHANGE) and, for a run with an until
    criterion, the extension it makes: more epochs, up to its cap, with the warm-down's span
    pinned to the planned epochs as a resume pins it (rbtw.config.resume_config)."""
    import json
    from rbtw.config import RESUME_MAY_CHANGE
    rd = RunDir(run.out)
    path = rd.config_path
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = None
    if not isinstance(saved, dict):     # what a resume would train: the checkpoint's own configuration
        from rbtw.checkpoint import load_meta
        try:                            # (a readable meta's config is an object: rbtw.checkpoint)
            path, saved = rd.checkpoint_path, load_meta(rd.checkpoint_path)["config"]
        except UserError:
            return None
    wanted = run.config
    got_epochs = saved.get("epochs")
    if (run.until is not None and is_whole(got_epochs)
            and wanted["epochs"] < got_epochs <= run.until["max_epochs"]):
        # extended by the until criterion: what rbtw.config.resume_config makes of it
        from rbtw.config import TrainConfig, resume_config
        wanted = resume_config(TrainConfig.from_dict(wanted),
                               TrainConfig.from_dict(dict(wanted, epochs=got_epochs))).to_dict()
    wanted = json.loads(json.dumps(wanted))           # as JSON holds it (tuples as lists)
    for name, value in wanted.items():
        got = saved.get(name)
        if name in RESUME_MAY_CHANGE and name != "epochs":
            continue
        if got != value:
            return (f"{path} is another run's: its {name} is {got!r}, this sweep's {value!r} "
                    f"(move the directory away, or give the sweep another --out)")
    return None


def stage_done(run):
    """Whether ``run`` (a SweepRun) has nothing left to do; UserError when its directory cannot
    be judged (a damaged log, another run's configuration)."""
    from rbtw.sweep.summary import conventions_complete
    problem = foreign_config(run)
    if problem:
        raise UserError(problem)
    rd = RunDir(run.out)
    if rd.final_test() is None:
        return False
    if run.until is not None and until_state(run.out, run.config, run.until) == "extend":
        return False
    return not run.conventions or conventions_complete(run.out)


# ---------------------------------------------------------------------------------------------
# one task


def _watch_stop_file(stop_file, run, done):
    """Until ``done`` is set, ask ``run`` to stop (at its next boundary) once ``stop_file`` exists."""
    def watch():
        while not done.wait(0.5):
            if os.path.exists(stop_file):
                run.request_stop()
                return
    threading.Thread(target=watch, daemon=True).start()


def _train(config, out, data_dir, stop_file, log, resume, started):
    """Train the run in ``out`` to its configured end (``config`` a TrainConfig or None to resume);
    ``started()`` once the run directory is set up (a fresh run starts a new log)."""
    from rbtw.train import Run
    run = Run(config, out, data_dir=data_dir, resume=resume, log=log)
    started()
    done = threading.Event()
    if stop_file:
        _watch_stop_file(stop_file, run, done)
    try:
        run.run()
    finally:
        done.set()


def stage_task(spec, data_dir=None, stop_file=None):
    """Bring one stage to its end (a Dask task; also callable directly).

    ``spec``: {"config", "out", "stage", "prefix_out", "changes", "until", "conventions"} as made
    by :func:`task_spec`.  Holds the run's lock throughout.  Returns {"status": "done" | "failed" |
    "busy" | "interrupted", ...}: done with "skipped" when nothing was left to do, "resumed" when
    it continued a checkpoint; failed with the run's own error; busy when another live process
    holds the lock; interrupted when the sweep was asked to stop.
    """
    from rbtw.runlock import RunBusy, RunLock
    from rbtw.sweep.spec import SweepRun
    run = SweepRun(None, None, {}, 0, spec["config"], Path(spec["out"]), until=spec.get("until"),
                   conventions=spec.get("conventions", False))
    if stop_file and os.path.exists(stop_file):     # queued when the sweep was stopped: not begun
        return {"status": "interrupted", "resumed": False}
    try:
        lock = RunLock(run.out).acquire()
    except RunBusy as e:
        return {"status": "busy", "error": str(e)}
    except OSError as e:            # e.g. a read-only sweep directory: this run fails, not the sweep
        return {"status": "failed", "error": os_error_message(e)}
    try:
        try:
            if stage_done(run):
                return {"status": "done", "skipped": True}
        except UserError as e:      # a damaged log: the run cannot be judged, so it fails
            return {"status": "failed", "error": str(e)}
        return _attempt(run, spec, data_dir, stop_file)
    finally:
        lock.release()


def train_one(config, out_dir, data_dir=None, stop_file=None):
    """Train one plain run to its end (see :func:`stage_task`)."""
    return stage_task({"config": config, "out": str(out_dir), "stage": "run"}, data_dir, stop_file)


def _attempt(run, spec, data_dir, stop_file):
    from rbtw.config import TrainConfig
    rd = RunDir(run.out)
    resume = rd.has_checkpoint()
    start = time.time()
    from rbtw.machine import describe
    where = dict(host=socket.gethostname(), machine=describe(), pid=os.getpid(), resumed=resume)
    rd.path.mkdir(parents=True, exist_ok=True)
    logged = []

    def started():              # the attempt's first event, once its log is the run's own
        if not logged:
            rd.append(event="attempt", time_started=round(start, 3), **where)
            logged.append(True)
    if resume:
        started()
    try:
        with open(rd.train_log_path, "a") as log:
            def echo(line):
                log.write(line + "\n")
                log.flush()
            if spec.get("stage") == "arm" and not resume:
                from rbtw.train import branch
                branch(spec["prefix_out"], run.out, **spec["changes"])
                resume = True
                started()
            if rd.final_test() is None:
                config = None if resume else TrainConfig.from_dict(run.config)
                _train(config, run.out, data_dir, stop_file, echo, resume, started)
            started()
            if run.until is not None:
                _extend_until(run, data_dir, stop_file, echo)
            if run.conventions:
                from rbtw.sweep.summary import measure_conventions
                for name in checkpoints_to_measure(run.out):
                    measure_conventions(run.out, name, data_dir)
    except KeyboardInterrupt:          # the sweep was stopped: the run saved its checkpoint
        started()
        rd.append(event="sweep", status="interrupted", seconds=round(time.time() - start, 3), **where)
        return {"status": "interrupted", "resumed": where["resumed"]}
    except Exception as e:  # the run's own failure: recorded, the sweep goes on
        started()
        message = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
        message = message.splitlines()[0] if message else type(e).__name__
        rd.append(event="sweep", status="failed", error=message, seconds=round(time.time() - start, 3), **where)
        return {"status": "failed", "error": message, "resumed": where["resumed"]}
    seconds = round(time.time() - start, 3)
    rd.append(event="sweep", status="done", seconds=seconds, **where)
    return {"status": "done", "seconds": seconds, "resumed": where["resumed"]}


def _extend_until(run, data_dir, stop_file, log):
    """One more epoch at a time at the schedule's end rate until the criterion holds."""
    from rbtw.checkpoint import load_checkpoint
    from rbtw.config import TrainConfig
    from rbtw.fileio import atomic_path
    rd = RunDir(run.out)
    while until_state(run.out, run.config, run.until) == "extend":
        if not rd.schedule_end_path.exists():          # the schedule's last checkpoint, kept
            with atomic_path(rd.schedule_end_path) as tmp:
                shutil.copyfile(rd.checkpoint_path, tmp)
        meta = load_checkpoint(rd.checkpoint_path).meta
        saved = TrainConfig.from_dict(meta["config"])
        more = TrainConfig.from_dict(dict(saved.to_dict(), epochs=meta["epoch"] + 1))
        log(f"until: epoch {meta['epoch'] + 1} at the schedule's end rate")
        _train(more, run.out, data_dir, stop_file, log, True, lambda: None)


def task_spec(run):
    """What a task needs to know of a SweepRun (plain data, sent to the worker)."""
    spec = {"config": run.config, "out": str(Path(run.out).resolve()), "stage": run.stage,
            "until": run.until, "conventions": run.conventions}
    if run.prefix is not None:
        spec.update(prefix_out=str(Path(run.prefix.out).resolve()), changes=run.changes)
    return spec
