"""Exact resume as a property: interrupt a tiny run anywhere, resume, get the same run.

A subprocess trains a tiny model on the embedded corpus and is interrupted by a real signal at
a chosen point: SIGINT (or SIGTERM) between the gradients and the weight update (inside a minibatch), in
the middle of an evaluation, in the middle of a checkpoint write, or SIGKILL right after (or
during) a checkpoint write.  The run is then resumed here, and its final weights, BN
statistics, test metric and metrics log must equal those of an uninterrupted run, bit for bit.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rbtw.config import TrainConfig
from rbtw import train
from rbtw.checkpoint import load_checkpoint
from rbtw.runlock import RunBusy, RunLock

ROOT = Path(__file__).resolve().parents[1]
CONFIG = dict(task="default", hidden=12, seq_len=20, batch=8, epochs=2, max_batches=4, eval_max_batches=2,
              quant="ternary", stochastic=True, log_every=1, checkpoint_every=3, lr=5e-3)

# Counts of each interruption point in one run of CONFIG: weight updates (2 epochs × 4),
# evaluation batches (2 valid × 2 + 2 test), checkpoint writes (start, batch 3 and end of each
# epoch, and best.npz before the end of each epoch: validation improves in both).
POINTS = {"step": 8, "eval": 6, "save": 7, "kill": 7, "kill-in-write": 7}

DRIVER = r"""
import os, signal, sys
import numpy as np
import rbtw.evaluate as evaluation
from rbtw import optim, train
from rbtw.config import TrainConfig
from rbtw.runlock import RunLock

phase, k, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
config = TrainConfig(**__CONFIG__)
count = [0]

def hit():
    count[0] += 1
    return count[0] == k

def wrap(owner, name, before=None, after=None):
    original = getattr(owner, name)
    def wrapped(*args, **kwargs):
        if before is not None and hit():
            os.kill(os.getpid(), before)
        result = original(*args, **kwargs)
        if after is not None and hit():
            os.kill(os.getpid(), after)
        return result
    setattr(owner, name, wrapped)

if phase == "step":            # gradients computed (RNG drawn), weights not yet updated
    wrap(optim.Adam, "step", before=signal.SIGINT)
elif phase == "term":          # the same point, SIGTERM (kill, a batch scheduler)
    wrap(optim.Adam, "step", before=signal.SIGTERM)
elif phase == "eval":          # one evaluation batch scored, the next not yet
    wrap(evaluation, "score", after=signal.SIGINT)
elif phase == "save":          # the archive written to its temporary name, not yet renamed
    wrap(np, "savez", after=signal.SIGINT)
elif phase == "kill-in-write":
    wrap(np, "savez", after=signal.SIGKILL)
elif phase == "kill":          # a checkpoint completed, then the process dies
    wrap(train, "save_checkpoint", after=signal.SIGKILL)
with RunLock(out):
    run = train.Run(config, out, log=lambda line: None)
    try:
        run.run()
    except KeyboardInterrupt:
        sys.exit(130)
"""


def run_interrupted(phase, k, out):
    script = DRIVER.replace("__CONFIG__", repr(CONFIG))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", script, phase, str(k), str(out)], env=env,
                          capture_output=True, text=True, timeout=120)


def events(out):
    """The metrics log without wall-clock fields and interruption markers."""
    lines = (Path(out) / "metrics.jsonl").read_text().splitlines()
    drop = ("time", "seconds")
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in lines
            if json.loads(line)["event"] != "interrupted"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    test = train.Run(TrainConfig(**CONFIG), out, log=lambda line: None).run()
    return out, test


def assert_same_run(reference, out, test):
    ref_out, ref_test = reference
    assert test == ref_test
    for name in ("checkpoint.npz", "best.npz"):
        a, b = load_checkpoint(ref_out / name), load_checkpoint(out / name)
        assert a.meta["step"] == b.meta["step"], name
        for part in ("params", "stats", "optimizer"):
            pa, pb = getattr(a, part), getattr(b, part)
            assert pa.keys() == pb.keys()
            for key in pa:
                np.testing.assert_array_equal(pa[key], pb[key], err_msg=f"{name} {part} {key}")
    assert events(out) == events(ref_out)


@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(point=st.sampled_from(sorted(POINTS)).flatmap(
    lambda p: st.tuples(st.just(p), st.integers(2 if p in ("save", "kill-in-write") else 1, POINTS[p]))))
def test_resume_after_an_interruption_anywhere_is_exact(reference, tmp_path_factory, point):
    phase, k = point
    out = tmp_path_factory.mktemp(f"{phase}{k}")
    proc = run_interrupted(phase, k, out)
    expected = -signal.SIGKILL if phase.startswith("kill") else 130
    assert proc.returncode == expected, proc.stderr
    assert not proc.stderr.strip(), proc.stderr  # no traceback, no warning
    test = train.Run(None, out, resume=True, log=lambda line: None).run()
    assert_same_run(reference, out, test)


@pytest.mark.parametrize("phase,k", [("step", 5), ("term", 6), ("eval", 3), ("kill-in-write", 4)])
def test_resume_exact_at_each_kind_of_point(reference, tmp_path, phase, k):
    """The property's phases, each at least once whatever hypothesis draws."""
    proc = run_interrupted(phase, k, tmp_path)
    assert proc.returncode in (130, -signal.SIGKILL), proc.stderr
    test = train.Run(None, tmp_path, resume=True, log=lambda line: None).run()
    assert_same_run(reference, tmp_path, test)
    assert not list(tmp_path.glob(".*.tmp"))   # a temporary file of a killed write is cleared


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_at_a_random_time_through_the_cli(reference, tmp_path, signum):
    """A real Ctrl-C (or SIGTERM, as ``kill`` or a batch scheduler sends) from outside at a
    random moment of a CLI run; then ``--resume``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    args = ["--hidden", "12", "--seq-len", "20", "--batch", "8", "--epochs", "2", "--max-batches", "4",
            "--eval-max-batches", "2", "--quant", "ternary", "--stochastic", "--lr", "5e-3"]
    cli = [sys.executable, "-m", "rbtw.cli", "train", "default", *args]
    proc = subprocess.Popen([*cli, "--out", str(tmp_path / "parts")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (tmp_path / "parts" / "checkpoint.npz").exists() and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(float(np.random.default_rng().uniform(0, 0.3)))
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
    finished = any(e["event"] == "test" for e in events(tmp_path / "parts"))
    if proc.returncode == 128 + signum and "checkpoint saved" in err:   # stopped at a boundary
        assert not finished
        resumed = subprocess.run([*cli[:5], "--resume", "--out", str(tmp_path / "parts")], env=env,
                                 capture_output=True, text=True)
        assert resumed.returncode == 0, resumed.stderr
    elif proc.returncode in (128 + signum, -signum):
        # the signal came after training had finished, while the command printed its result:
        # the process ends as that signal ends a program, and the run is complete
        assert finished, err
    else:
        assert proc.returncode == 0, err  # the signal came after the process had ended
    # the same run as the reference (which differs only in how often it logs and checkpoints)
    a = load_checkpoint(reference[0] / "checkpoint.npz")
    b = load_checkpoint(tmp_path / "parts" / "checkpoint.npz")
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name], err_msg=name)
    assert [e for e in events(tmp_path / "parts") if e["event"] != "train"] == \
        [e for e in events(reference[0]) if e["event"] != "train"]


def test_a_locked_run_directory_refuses_a_second_trainer(tmp_path):
    with RunLock(tmp_path):
        proc = subprocess.run([sys.executable, "-m", "rbtw.cli", "train", "default", "--hidden", "8",
                               "--max-batches", "1", "--epochs", "1", "--out", str(tmp_path)],
                              env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "in use by pid" in proc.stderr, proc.stderr
    assert not (tmp_path / "checkpoint.npz").exists() and not (tmp_path / "config.json").exists()
    with pytest.raises(RunBusy):
        with RunLock(tmp_path):
            RunLock(tmp_path).acquire()
