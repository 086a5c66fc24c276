"""The README's main job: a ternary and a full-precision BN-LSTM side by side on the embedded corpus.

Two ``rbtw train`` processes run in parallel (one BLAS thread each) in OUT/ternary and
OUT/full-precision; their test BPC is reported side by side.  Run again, the demo keeps what
it has: finished runs of the same settings are reported as they are, unfinished ones resume
from their checkpoints; runs of other settings are replaced only with ``force``.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

from rbtw.errors import UserError
from rbtw.rundir import RunDir

VARIANTS = [("ternary", ["--quant", "ternary", "--stochastic"]), ("full precision", ["--quant", "fp"])]
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _settings(hidden, epochs):
    return ["default", "--hidden", str(hidden), "--epochs", str(epochs)]


def _state(run_dir, hidden, epochs):
    """"new", "same-finished", "same-unfinished" or "other" (a run of other settings, or one
    whose checkpoint cannot be read: replaced only with --force)."""
    from rbtw.checkpoint import load_meta
    rd = RunDir(run_dir)
    if not rd.has_checkpoint():
        return "new"
    try:
        config = load_meta(rd.checkpoint_path)["config"]    # verified, unlike config.json beside it
    except UserError:
        return "other"
    if config.get("task") != "default" or config.get("hidden") != hidden or config.get("epochs") != epochs:
        return "other"
    return "same-finished" if rd.final_test() is not None else "same-unfinished"


def _command(name, args, run_dir, hidden, epochs, state):
    base = [sys.executable, "-m", "rbtw.cli", "train"]
    if state == "same-unfinished":
        return base + ["default", "--resume", "--out", str(run_dir)]
    return base + _settings(hidden, epochs) + ["--out", str(run_dir), "--force", *args]


def run_demo(hidden=128, epochs=30, out="runs/demo", force=False, echo=print, on_progress=None):
    """Train (or resume, or reuse) both runs; returns [(name, test event)] and the seconds taken.

    ``on_progress(done, total)`` is called with the epochs done by both runs while they train.
    """
    out = Path(out)
    runs = [(name, args, out / name.replace(" ", "-")) for name, args in VARIANTS]
    states = {name: _state(run_dir, hidden, epochs) for name, _, run_dir in runs}
    others = [str(run_dir) for name, _, run_dir in runs if states[name] == "other"]
    if others and not force:
        raise UserError(f"{', '.join(others)} hold runs of other settings: pass --force to replace them, "
                        "or choose another --out")
    start = time.time()
    todo = [(n, a, d) for n, a, d in runs if states[n] != "same-finished" or force]
    if todo:
        verb = {"same-unfinished": "resuming", "same-finished": "retraining"}
        what = ", ".join(f"{n} ({verb.get(states[n], 'training')})" for n, _, _ in todo)
        from rbtw.summary import count
        echo(f"{what}: H={hidden}, {count(epochs, 'epoch')} on the embedded corpus; logs in {out}/")
        _train_all(todo, hidden, epochs, states, out, force, on_progress)
    else:
        echo(f"both runs in {out}/ have finished with these settings (--force trains them again)")
    results = []
    for name, _, run_dir in runs:
        test = RunDir(run_dir).final_test()
        if test is None:
            raise UserError(f"{run_dir} has no test result")
        results.append((name, test))
    return results, time.time() - start


def _train_all(todo, hidden, epochs, states, out, force, on_progress):
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, **ONE_THREAD)
    procs = []
    for name, args, run_dir in todo:
        state = "new" if force else states[name]
        log = open(out / f"{run_dir.name}.log", "a")
        cmd = _command(name, args, run_dir, hidden, epochs, state)
        procs.append((name, run_dir, subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    try:
        _wait(procs, epochs, on_progress)
    finally:
        for _, _, proc, log in procs:
            if proc.poll() is None:          # interrupted: let the runs save their checkpoints
                proc.send_signal(2)
                proc.wait()
            log.close()
    for name, run_dir, proc, _ in procs:
        if proc.returncode != 0:
            raise UserError(f"the {name} run failed (exit {proc.returncode}); see {out}/{run_dir.name}.log")


def _epochs_done(run_dir):
    try:
        return len(RunDir(run_dir).epochs())
    except (OSError, UserError):
        return 0


def _wait(procs, epochs, on_progress):
    total = epochs * len(procs)
    while True:
        running = any(proc.poll() is None for _, _, proc, _ in procs)
        if on_progress is not None:
            on_progress(min(sum(_epochs_done(run_dir) for _, run_dir, _, _ in procs), total), total)
        if not running:
            return
        time.sleep(0.5)
