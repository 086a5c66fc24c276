"""Sweeps on Dask: the sweep file, the runner (faults, restarts, locks), the seed statistics."""

import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from rbtw.errors import UserError
from click.testing import CliRunner

from rbtw import sweep as sw
from rbtw.checkpoint import load_checkpoint
from rbtw.cli import main
from rbtw.rundir import RunDir
from rbtw.runlock import RunLock
from rbtw.config import TrainConfig
from rbtw.train import Run

distributed = pytest.importorskip("distributed")
scipy_stats = pytest.importorskip("scipy.stats")

ROOT = Path(__file__).resolve().parents[1]
# Tiny runs without BN take the NumPy path: no Numba kernels to load in a fresh worker process.
TINY = dict(hidden=8, seq_len=10, batch=4, epochs=1, max_batches=5, eval_max_batches=2, log_every=1000, bn=False)
SPEC = """\
task = "default"
seeds = [0, 1]
reference = "fp"
[options]
hidden = 8
seq_len = 10
batch = 4
epochs = 1
max_batches = 5
eval_max_batches = 2
log_every = 1000
bn = false
[grid]
fp = { quant = "none" }
ternary = { quant = "ternary", stochastic = true }
"""


def tiny_sweep(variants, seeds=(0,), **options):
    return sw.parse_spec({"task": "default", "options": dict(TINY, **options), "grid": variants,
                          "seeds": list(seeds)})


def events(run_dir, kind):
    return [e for e in RunDir(run_dir).events() if e.get("event") == kind]


def snapshot(out):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(Path(out).rglob("*"))
            if p.is_file() and p.name != ".lock"}


# ---------------------------------------------------------------------------------------------
# the command, end to end on its own local cluster


def test_sweep_command_runs_summarises_and_reruns_nothing(tmp_path):
    spec = tmp_path / "sweep.toml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(out), "--workers", "2"])
    assert result.exit_code == 0, result.output + result.stderr
    assert "4 of 4 runs to train on a local cluster of 2 workers" in result.stderr
    names = ["fp-seed0", "fp-seed1", "ternary-seed0", "ternary-seed1"]
    for name in names:
        config = json.loads((out / name / "config.json").read_text())
        assert config["hidden"] == 8 and config["seed"] == int(name[-1])
        assert config["quant"] == ("none" if name.startswith("fp") else "ternary")
        assert len(events(out / name, "test")) == 1
    # the summary's figures are scipy's, computed directly from the runs' own logs
    summary = json.loads((out / "summary.json").read_text())
    bpc = {n: events(out / n, "test")[0]["test_bpc"] for n in names}
    for group in summary["groups"]:
        x = [bpc[f"{group['variant']}-seed{s}"] for s in (0, 1)]
        ci = scipy_stats.ttest_1samp(x, 0.0).confidence_interval(0.95)
        assert group["n"] == 2 and group["mean"] == pytest.approx(statistics.mean(x), rel=1e-12)
        assert group["sd"] == pytest.approx(statistics.stdev(x), rel=1e-9)
        assert group["ci95"] == pytest.approx([ci.low, ci.high], rel=1e-9)
    (diff,) = summary["differences"]
    a, b = [bpc[f"ternary-seed{s}"] for s in (0, 1)], [bpc[f"fp-seed{s}"] for s in (0, 1)]
    ci = scipy_stats.ttest_rel(a, b).confidence_interval(0.95)
    assert diff["variant"] == "ternary" and diff["reference"] == "fp" and diff["seeds"] == [0, 1]
    assert diff["mean"] == pytest.approx(np.mean(np.subtract(a, b)), rel=1e-9)
    assert diff["ci95"] == pytest.approx([ci.low, ci.high], rel=1e-9)
    assert "| ternary | — | 2/2 |" in (out / "summary.md").read_text()
    # each run's row says how far it trained: epochs of those planned, and the last validation
    valid = events(out / "fp-seed0", "epoch")[-1]["valid_bpc"]
    assert f"| fp-seed0 | done | {bpc['fp-seed0']:.4f} | 1 of 1 | {valid:.4f} |" in (out / "summary.md").read_text()
    # the same command again trains nothing and starts no cluster
    before = snapshot(out)
    again = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(out)])
    assert again.exit_code == 0 and "nothing to train" in again.stderr
    assert snapshot(out) == before
    # the summary is rebuilt from the run directories alone
    (out / "summary.json").unlink()
    (out / "summary.md").unlink()
    rebuilt = CliRunner().invoke(main, ["sweep", str(out), "--summary"])
    assert rebuilt.exit_code == 0, rebuilt.stderr
    assert snapshot(out) == before


def test_a_finished_run_is_skipped_by_the_task_and_by_the_runner(tmp_path):
    sweep = tiny_sweep({"fp": {"quant": "none"}})
    (run,) = sweep.runs(tmp_path)
    assert sw.train_one(run.config, run.out)["status"] == "done"
    before = snapshot(run.out)
    again = sw.train_one(run.config, run.out)               # the task itself: nothing trained or logged
    assert again == {"status": "done", "skipped": True} and snapshot(run.out) == before
    # the runner submits no task for it at all: it needs no cluster (client None)
    assert sw.run_all([run], None) == {run.name: {"status": "done", "skipped": True}}
    assert snapshot(run.out) == before


# ---------------------------------------------------------------------------------------------
# the runner on a shared cluster


def test_workers_compute_with_one_thread(client):
    env = client.run(lambda: {k: os.environ.get(k) for k in sw.ONE_THREAD})
    assert len(env) == 2 and all(e == {k: "1" for k in sw.ONE_THREAD} for e in env.values())
    import dask
    profiling = client.run(lambda: dask.config.get("distributed.worker.profile.enabled"))
    assert set(profiling.values()) == {False}


def test_killed_worker_run_resumes_exactly_and_every_run_is_done_once(client, tmp_path, monkeypatch):
    """Two runs of one configuration and seed; the worker training the first is killed (SIGKILL)
    after its first mid-epoch checkpoint.  Both end with the same weights; the runner says that
    the run resumed, and its summary counts both attempts."""
    from rbtw.sweep import runner
    monkeypatch.setattr(runner, "NOTICE_SECONDS", 0.2)
    slow = dict(max_batches=400, checkpoint_every=25, bn=True)  # the fused BN-LSTM path, as trained for real
    same = {"quant": "ternary", "stochastic": True}
    runs = tiny_sweep({"killed": same, "whole": same}, seeds=(0,), **slow).runs(tmp_path)
    victim, whole = runs
    assert victim.config == whole.config
    killed = {}

    def kill_when_checkpointed():
        deadline = time.time() + 120
        while time.time() < deadline and not (victim.out / "checkpoint.npz").exists():
            time.sleep(0.01)
        holder = (victim.out / ".lock").read_text().split()
        killed["pid"] = int(holder[1])  # "pid N on HOST": the worker process training the run
        os.kill(killed["pid"], signal.SIGKILL)

    killer = threading.Thread(target=kill_when_checkpointed)
    killer.start()
    lines = []
    results = sw.run_all(runs, client, echo=lines.append)
    killer.join()
    assert any(line.startswith(f"{victim.name}: attempt 2 on ") and "resumed" in line for line in lines), lines
    assert not [line for line in lines if ": attempt 1 on " in line], lines   # a first attempt is no news
    wall, attempts = sw.summary.attempt_seconds(RunDir(victim.out).events())
    assert attempts == 2 and wall > RunDir(victim.out).of_kind("sweep")[-1]["seconds"]
    assert killed["pid"] not in client.run(os.getpid).values()  # that process is gone
    assert all(r["status"] == "done" for r in results.values()), results
    assert results[victim.name]["resumed"] is True and results[whole.name]["resumed"] is False
    for run in runs:  # every run trained to its end exactly once
        assert len(events(run.out, "test")) == 1
        assert [e["status"] for e in events(run.out, "sweep")] == ["done"]
    got = load_checkpoint(victim.out / "checkpoint.npz")
    want = load_checkpoint(whole.out / "checkpoint.npz")
    assert got.meta["step"] == want.meta["step"] == 400
    for name in want.params:
        np.testing.assert_array_equal(got.params[name], want.params[name], err_msg=name)
    for name in want.stats:
        np.testing.assert_array_equal(got.stats[name], want.stats[name], err_msg=name)




def _worker_pids(client):
    try:
        return list(client.run(os.getpid).values())
    except Exception:           # a worker between death and replacement
        return []

def test_a_local_cluster_leaves_this_process_its_thread_settings(monkeypatch):
    """The nannies (in this process) write the workers' one-thread settings into this process's
    environment before each worker starts, a replacement for a lost worker too.  This process
    must keep its own: with NUMBA_NUM_THREADS=1 left behind, Numba refuses every later compile
    once its threads have run with another count."""
    import distributed
    for k in sw.ONE_THREAD:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    mine = {k: os.environ.get(k) for k in sw.ONE_THREAD}
    cluster = sw.local_cluster(1, silence_logs=logging.ERROR, dashboard_address=":0")
    try:
        assert {k: os.environ.get(k) for k in sw.ONE_THREAD} == mine
        with distributed.Client(cluster) as c:
            (pid,) = c.run(os.getpid).values()
            os.kill(pid, signal.SIGKILL)                 # the nanny starts a new worker
            deadline = time.time() + 60
            while time.time() < deadline and _worker_pids(c) in ([], [pid]):
                time.sleep(0.1)
            env = list(c.run(lambda: {k: os.environ.get(k) for k in sw.ONE_THREAD}).values())
            assert env == [{k: "1" for k in sw.ONE_THREAD}]   # the new worker: one thread
    finally:
        cluster.close()
    assert {k: os.environ.get(k) for k in sw.ONE_THREAD} == mine

def test_rerun_after_interruption_finishes_only_what_was_missing(client, tmp_path):
    runs = tiny_sweep({"fp": {"quant": "none"}}, seeds=(0, 1, 2), max_batches=8).runs(tmp_path)
    finished, interrupted, untouched = runs
    assert sw.train_one(finished.config, finished.out)["status"] == "done"

    def stop(run, loss):
        if run.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # Ctrl-C: a checkpoint at minibatch 3
        Run(TrainConfig.from_dict(interrupted.config), interrupted.out, log=lambda line: None).run(progress=stop)
    before = snapshot(finished.out)
    results = sw.run_all(runs, client)
    assert results[finished.name] == {"status": "done", "skipped": True}
    assert snapshot(finished.out) == before
    assert results[interrupted.name]["resumed"] is True and results[untouched.name]["resumed"] is False
    train_events = [e for e in RunDir(interrupted.out).events() if e.get("event") == "epoch"]
    assert len(train_events) == 1 and train_events[0]["step"] == 8


def test_failed_run_is_reported_and_the_others_finish(client, tmp_path):
    sweep = tiny_sweep({"ok": {"quant": "none"}, "diverges": {"quant": "none", "lr": 1e30}}, seeds=(0,))
    runs = sweep.runs(tmp_path)
    results = sw.run_all(runs, client)
    assert results["ok-seed0"]["status"] == "done"
    assert results["diverges-seed0"]["status"] == "failed"
    assert "loss became" in results["diverges-seed0"]["error"]
    _, records = sw.collect(sweep, tmp_path)
    status = {r["name"]: r["status"] for r in records}
    assert status == {"ok-seed0": "done", "diverges-seed0": "failed"}


def test_a_run_with_a_damaged_log_fails_alone_and_the_others_train(client, tmp_path):
    sweep = tiny_sweep({"ok": {"quant": "none"}, "damaged": {"quant": "none"}}, seeds=(0,))
    runs = sweep.runs(tmp_path)
    damaged = RunDir(tmp_path / "damaged-seed0")
    damaged.path.mkdir()
    damaged.metrics_path.write_text('{"event": "epoch", "epoch": "one", "valid_bpc": 2.0}\n{}\n')
    results = sw.run_all(runs, client)
    assert results["ok-seed0"]["status"] == "done"
    assert results["damaged-seed0"]["status"] == "failed"
    assert "metrics.jsonl:1 is not a metrics log line (epoch is \"one\")" in results["damaged-seed0"]["error"]


def test_a_run_held_by_another_process_is_not_trained_twice(client, tmp_path):
    (run,) = tiny_sweep({"fp": {"quant": "none"}}).runs(tmp_path)
    lock = RunLock(run.out).acquire()  # "another sweep" trains it
    threading.Timer(1.0, lock.release).start()
    lines = []
    results = sw.run_all([run], client, echo=lines.append, retry_seconds=0.5)
    assert results[run.name]["status"] == "done" and len(events(run.out, "test")) == 1
    assert lines and "in use by pid" in lines[0]


# ---------------------------------------------------------------------------------------------
# an existing scheduler


def test_scheduler_option_uses_an_existing_cluster(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **sw.ONE_THREAD)
    file = tmp_path / "scheduler.json"
    common = ["--no-dashboard"]
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--scheduler-file", str(file), *common], env=env, stderr=subprocess.DEVNULL),
             subprocess.Popen([sys.executable, "-m", "dask", "worker", "--scheduler-file", str(file),
                               "--nthreads", "1", "--host", "127.0.0.1", *common], env=env, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.time() + 60
        while not file.exists() and time.time() < deadline:
            time.sleep(0.1)
        address = json.loads(file.read_text())["address"]
        with distributed.Client(address, timeout="30s") as c:
            c.wait_for_workers(1, timeout=60)
            worker_pids = set(c.run(os.getpid).values())
        spec = tmp_path / "sweep.json"
        spec.write_text(json.dumps({"task": "default", "options": TINY, "grid": {"fp": {"quant": "none"}},
                                    "seeds": [3]}))
        out = tmp_path / "out"
        result = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(out), "--scheduler", address])
        assert result.exit_code == 0, result.output + result.stderr
        assert f"runs to train on {address}" in result.stderr
        (done,) = events(out / "fp-seed3", "sweep")
        assert done["status"] == "done" and done["pid"] in worker_pids  # trained by the external worker
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=30)


def test_unreachable_scheduler_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(sw, "CONNECT_TIMEOUT", "1s")
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(tmp_path / "o"),
                                       "--scheduler", "tcp://127.0.0.1:9"])
    assert result.exit_code == 2 and result.stderr.startswith("error: cannot connect to the Dask scheduler")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()                 # nothing claimed: the fixed command may use it


# ---------------------------------------------------------------------------------------------
# bad input


BAD = {
    "unknown field": ("colour = 3\n" + SPEC, "unknown field(s) 'colour'"),
    "unknown option": (SPEC.replace("hidden = 8", "hiden = 8"), "unknown field 'hiden'"),
    "unknown variant key": (SPEC.replace('fp = { quant = "none" }', 'fp = { quantize = "none" }'),
                            "variant 'fp': unknown field 'quantize'"),
    "wrong type": (SPEC.replace("hidden = 8", 'hidden = "8"'), "hidden (--hidden) must be a whole number, not '8'"),
    "bad value": (SPEC.replace('quant = "none"', 'quant = "quaternary"'), "quant (--quant) must be one of"),
    "empty grid": (SPEC.split("[grid]")[0] + "[grid]\n", "the grid is empty"),
    "axes only": (SPEC.split("[grid]")[0] + "[grid]\nhidden = [8]\n", "the grid has no variant"),
    "no seeds": (SPEC.replace("seeds = [0, 1]", "seeds = []"), "seeds must be a non-empty array"),
    "boolean seed": (SPEC.replace("seeds = [0, 1]", "seeds = [true]"), "seeds must be a non-empty array of integers"),
    "bad reference": (SPEC.replace('reference = "fp"', 'reference = "bf"'), "the reference 'bf' is not a variant"),
    "seed in options": (SPEC.replace("hidden = 8", "seed = 8"), "seed is set by the sweep itself"),
    "bad toml": (SPEC.replace("hidden = 8", "hidden = "), "is not valid TOML"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_sweep_files_are_one_line_errors_and_write_nothing(tmp_path, case):
    text, message = BAD[case]
    spec = tmp_path / "s.toml"
    spec.write_text(text)
    result = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unreadable_files_and_other_sweeps_are_refused(tmp_path):
    out = tmp_path / "out"
    missing = CliRunner().invoke(main, ["sweep", str(tmp_path / "nope.toml"), "--out", str(out)])
    assert missing.exit_code == 2 and "cannot read the sweep file" in missing.stderr
    (tmp_path / "s.yaml").write_text("task: default\n")
    other = CliRunner().invoke(main, ["sweep", str(tmp_path / "s.yaml"), "--out", str(out)])
    assert other.exit_code == 2 and "ends in .toml or .json" in other.stderr
    assert not out.exists()
    # a directory that holds another sweep, or something else, is refused before anything runs
    first = sw.parse_spec({"task": "default", "options": TINY, "grid": {"fp": {}}, "seeds": [0]})
    sw.prepare_out(first, out)
    before = snapshot(out)
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(out)])
    assert result.exit_code == 2 and "holds a different sweep" in result.stderr
    assert snapshot(out) == before
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    result = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(tmp_path / "busy")])
    assert result.exit_code == 2 and "does not hold a sweep" in result.stderr
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["notes.txt"]
    result = CliRunner().invoke(main, ["sweep", str(tmp_path / "busy"), "--summary"])
    assert result.exit_code == 2 and "holds no sweep" in result.stderr


def test_without_dask_the_command_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and result.stderr == f"error: {sw.INSTALL_HINT}\n"
    assert not (tmp_path / "out").exists()


def test_grid_axes_cross_every_variant_and_name_the_runs(tmp_path):
    sweep = sw.parse_spec({"task": "default", "preset": "quick", "options": {"epochs": 2},
                           "grid": {"fp": {"quant": "fp"}, "bin": {"quant": "binary"}, "hidden": [8, 16]},
                           "seeds": [0, 5]})
    runs = sweep.runs(tmp_path)
    assert [r.name for r in runs[:4]] == ["fp-hidden8-seed0", "fp-hidden8-seed5", "fp-hidden16-seed0",
                                          "fp-hidden16-seed5"]
    assert len(runs) == 8 and runs[-1].out == tmp_path / "bin-hidden16-seed5"
    config = runs[-1].config
    assert (config["quant"], config["hidden"], config["seed"], config["epochs"]) == ("binary", 16, 5, 2)
    assert config["seq_len"] == 100  # the quick preset's value for the task


def test_runs_table_says_how_many_epochs_the_until_criterion_added():
    """An arm extended past its planned epochs reads "4 (2 planned + 2 added)", never "4 of 2"."""
    from rbtw.sweep.report import _runs_table

    def run(key, valid, planned, **more):
        return dict(key=key, status="done", test_bpc=1.5, valid=valid, schedule_epochs=planned, wall_seconds=3.0,
                    attempts=1, **more)

    summary = {"runs": [run("long", [2.0, 1.9, 1.8, 1.79], 2, until="converged", last_epoch_gain=0.01),
                        run("short", [2.0], 2, until="extend", last_epoch_gain=None),
                        run("plain", [2.0, 1.9], 2), run("unplanned", [2.0], None)]}
    text = "\n".join(_runs_table(summary, "test bpc"))
    assert "| long | done | 1.5000 | 4 (2 planned + 2 added) | 1.7900 |" in text
    assert "| short | done | 1.5000 | 1 of 2 |" in text and "| plain | done | 1.5000 | 2 of 2 |" in text
    assert "| unplanned | done | 1.5000 | 1 |" in text
    assert "4 of 2" not in text
    assert "Epochs planned + added" in text
    del summary["runs"][0]
    assert "Epochs planned + added" not in "\n".join(_runs_table(summary, "test bpc"))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, True, "10", 1e9])
def test_wait_workers_outside_its_domain_is_one_line_before_any_cluster(value):
    from rbtw import sweep
    with pytest.raises(UserError, match="wait-workers") as e:
        sweep.connect(None, 1, wait_workers=value)
    assert "\n" not in str(e.value)


def test_the_command_trains_the_others_when_one_runs_log_is_damaged(tmp_path):
    """The command's own look at what is left to do does not stop on a damaged log: that run
    fails (exit 2, named), the other trains."""
    spec = tmp_path / "sweep.toml"
    spec.write_text(SPEC.replace("seeds = [0, 1]", "seeds = [0]"))
    out = tmp_path / "out"
    damaged = RunDir(out / "ternary-seed0")
    damaged.path.mkdir(parents=True)
    damaged.metrics_path.write_text('{"event": "epoch", "epoch": "one", "valid_bpc": 2.0}\n{}\n')
    result = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 2, result.output + result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: 1 run(s) failed: ternary-seed0")
    assert "Traceback" not in result.stderr
    assert len(events(out / "fp-seed0", "test")) == 1


def test_a_run_directory_of_another_configuration_is_not_taken_over(client, tmp_path):
    """A finished run of another sweep, copied into this sweep's layout, is neither skipped as
    done nor counted: it fails as another run's (naming the field), and the others train."""
    import shutil
    other = tiny_sweep({"fp": {"quant": "none"}}, max_batches=3)
    assert sw.run_all(other.runs(tmp_path / "a"), client)["fp-seed0"]["status"] == "done"
    sweep = tiny_sweep({"fp": {"quant": "none"}, "slow": {"quant": "none", "lr": 1e-4}})
    shutil.copytree(tmp_path / "a" / "fp-seed0", tmp_path / "b" / "fp-seed0")
    before = snapshot(tmp_path / "b" / "fp-seed0")
    results = sw.run_all(sweep.runs(tmp_path / "b"), client)
    assert results["slow-seed0"]["status"] == "done"
    assert results["fp-seed0"]["status"] == "failed"
    assert "another run's: its max_batches is 3, this sweep's 5" in results["fp-seed0"]["error"]
    assert snapshot(tmp_path / "b" / "fp-seed0") == before
    _, records = sw.collect(sweep, tmp_path / "b")
    assert {r["name"]: r["status"] for r in records} == {"fp-seed0": "foreign", "slow-seed0": "done"}
    summary = sw.write_summary(sweep, tmp_path / "b")
    fp = next(g for g in summary["groups"] if g["variant"] == "fp")
    assert fp["n"] == 0 and fp["failed"] == 1


def test_only_until_extends_a_run_and_a_checkpoint_interval_may_change(tmp_path):
    """An until extension (more epochs up to its cap, the warm-down's span pinned as a resume
    pins it) is this run, and so is another checkpoint interval; more epochs without until, or
    beyond the cap, or a schedule planned longer from the start, are another run's."""
    import json as _json
    from rbtw.config import TrainConfig, resume_config
    plain = tiny_sweep({"fp": {"quant": "none"}}, lr_warmdown="cosine")
    (run,) = plain.runs(tmp_path / "plain")
    run.out.mkdir(parents=True)
    RunDir(run.out).config_path.write_text(_json.dumps(dict(run.config, checkpoint_every=7)))
    assert sw.foreign_config(run) is None
    RunDir(run.out).config_path.write_text(_json.dumps(dict(run.config, epochs=run.config["epochs"] + 3)))
    assert "its epochs is" in (sw.foreign_config(run) or "")
    until = sw.parse_spec({"task": "default", "options": dict(TINY, lr_warmdown="cosine"),
                           "grid": {"fp": {"quant": "none"}}, "seeds": [0],
                           "until": {"min_gain": 0.0, "max_epochs": 6}})
    (run,) = until.runs(tmp_path / "until")
    run.out.mkdir(parents=True)
    c = TrainConfig.from_dict(run.config)
    for epochs, foreign in ((c.epochs + 2, None), (6, None), (7, "its epochs is 7")):
        extended = resume_config(c, TrainConfig.from_dict(dict(run.config, epochs=epochs))).to_dict()
        RunDir(run.out).config_path.write_text(_json.dumps(dict(extended, checkpoint_every=7)))
        assert foreign is None and sw.foreign_config(run) is None or foreign in sw.foreign_config(run)
    RunDir(run.out).config_path.write_text(_json.dumps(dict(run.config, epochs=c.epochs + 2)))   # planned so
    assert "lr_warmdown_epochs" in (sw.foreign_config(run) or "")
    RunDir(run.out).config_path.write_text(_json.dumps(dict(run.config, epochs=0)))
    assert "its epochs is 0" in sw.foreign_config(run)


def test_another_runs_directory_without_a_readable_config_is_not_taken_over(tmp_path):
    """A run directory whose config.json is torn or gone is judged by its checkpoint's
    configuration, which a resume would train."""
    import shutil
    other = tiny_sweep({"fp": {"quant": "none"}}, max_batches=3)
    (o,) = other.runs(tmp_path / "a")
    assert sw.train_one(o.config, o.out)["status"] == "done"
    (run,) = tiny_sweep({"fp": {"quant": "none"}}).runs(tmp_path / "b")
    shutil.copytree(o.out, run.out)
    RunDir(run.out).config_path.write_text('{"task": "default", "lr": ')       # torn
    assert "max_batches is 3" in (sw.foreign_config(run) or "")
    RunDir(run.out).config_path.unlink()
    assert "max_batches is 3" in (sw.foreign_config(run) or "")
    (mine,) = tiny_sweep({"fp": {"quant": "none"}}).runs(tmp_path / "c")
    assert sw.train_one(mine.config, mine.out)["status"] == "done"
    RunDir(mine.out).config_path.unlink()
    assert sw.foreign_config(mine) is None


def test_a_run_that_failed_in_its_until_epochs_is_failed_in_the_summary(tmp_path):
    sweep = sw.parse_spec({"task": "default", "options": dict(TINY), "grid": {"fp": {"quant": "none"}},
                           "seeds": [0], "until": {"min_gain": 0.0, "max_epochs": 5}})
    (run,) = sweep.runs(tmp_path)
    rd = RunDir(run.out)
    rd.path.mkdir(parents=True)
    rd.write_config(run.config)
    rd.append(event="epoch", epoch=1, step=4, valid_bpc=3.0)
    rd.append(event="test", step=4, test_bpc=2.9)
    rd.append(event="sweep", status="failed", error="boom", seconds=1.0)
    _, (rec,) = sw.collect(sweep, tmp_path)
    assert rec["status"] == "failed"
    rd.append(event="sweep", status="interrupted", seconds=1.0)
    _, (rec,) = sw.collect(sweep, tmp_path)
    assert rec["status"] == "unfinished"


@pytest.mark.parametrize("value", ["nan", "inf", "1e9"])
def test_wait_workers_outside_its_domain_is_refused_before_the_directory_is_made(tmp_path, value):
    spec = tmp_path / "s.toml"
    spec.write_text('task = "default"\nseeds = [0]\n[grid]\nfp = { quant = "none" }\n')
    result = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(tmp_path / "d"), "--wait-workers", value])
    assert result.exit_code == 2 and "wait-workers" in result.output, result.output
    assert not (tmp_path / "d").exists()


def test_a_run_queued_when_the_sweep_was_stopped_does_not_start(tmp_path):
    sweep = tiny_sweep({"fp": {"quant": "none"}})
    (run,) = sweep.runs(tmp_path / "out")
    stop = tmp_path / ".stop-here"
    stop.touch()
    assert sw.stage_task(sw.runner.task_spec(run), None, str(stop))["status"] == "interrupted"
    assert not run.out.exists()


def test_a_run_that_failed_after_its_test_is_counted_failed_in_the_summary(tmp_path):
    """The runner's verdict and the summary agree: a run whose last attempt failed after its
    test event (e.g. a damaged checkpoint while its conventions were measured) is failed."""
    sweep = tiny_sweep({"fp": {"quant": "none"}})
    (run,) = sweep.runs(tmp_path)
    assert sw.train_one(run.config, run.out)["status"] == "done"
    RunDir(run.out).append(event="sweep", status="failed", error="not a readable rbtw checkpoint", seconds=0.1)
    _, (rec,) = sw.collect(sweep, tmp_path)
    assert rec["status"] == "failed" and "readable" in rec["error"]
    summary = sw.write_summary(sweep, tmp_path)
    assert summary["groups"][0]["failed"] == 1 and summary["groups"][0]["n"] == 0


def test_the_summary_prints_no_negative_zero():
    from rbtw.sweep import report
    assert report._num(-0.00001) == "0.0000" and report._num(-0.0) == "0.0000"
    assert report._num(-0.0001) == "-0.0001" and report._num(None) == "—"
    assert report._ci([-1e-5, 0.1]) == "[0.0000, 0.1000]"
    assert report._pm({"mean": -1e-5, "ci95": [-0.2, 0.2]}) == "0.0000 ± 0.2000"
    assert report._pm({"mean": -1e-5, "ci95": None}) == "0.0000"


def test_summary_of_a_sweep_file_says_to_give_the_directory(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(main, ["sweep", str(spec), "--summary"])
    assert result.exit_code == 2 and "is a file: give the sweep directory" in result.stderr


def test_workers_drop_only_the_heartbeat_failure_of_a_closing_cluster():
    import logging
    from rbtw.sweep import worker
    drop = worker.DropHeartbeatFailure()

    def record(message):
        return logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1, message, None, None)
    assert not drop.filter(record("Failed to communicate with scheduler during heartbeat."))
    assert drop.filter(record("Compute Failed")) and drop.filter(record("Worker stream died"))


def test_local_cluster_workers_carry_the_filter(client):
    def installed():
        import logging
        from rbtw.sweep.worker import DropHeartbeatFailure
        return any(isinstance(f, DropHeartbeatFailure) for f in logging.getLogger("distributed.worker").filters)
    assert all(client.run(installed).values())


def test_the_runner_hears_of_no_worker_leaving_while_none_does(client):
    """The client refreshes its cached scheduler identity in the background with per-worker
    details left out (``"workers": {}``, the totals kept); a count read from that cache, landing
    between the runner's own fetch and its read, said "2 worker(s) left the cluster (2 → 0)"
    in a real study while both workers trained on.  With the refresh every millisecond the race
    comes up within a few hundred looks; the count must stay 2 at every one."""
    import dask
    import distributed
    from rbtw.sweep import cluster
    with dask.config.set({"distributed.client.scheduler-info-interval": "1ms"}):
        with distributed.Client(client.scheduler.address, timeout=30) as c:
            c.wait_for_workers(2, timeout=60)       # an earlier test's killed worker is back
            lines = []
            loop = cluster._Loop([], c, None, lines.append, None, 1.0, None)
            for _ in range(400):
                loop.notice()
            assert loop.workers == 2 and lines == [], lines


def test_a_second_local_cluster_takes_another_dashboard_port_without_a_warning(tmp_path):
    """Two sweeps side by side (a study split with --only) each start a local cluster; the second
    finds Dask's dashboard port taken.  Dask moves to a free port with a three-line UserWarning
    that reached the user's terminal; the sweep names the address it got instead."""
    import warnings
    holder = socket.socket()
    try:
        holder.bind(("", 8787))
        holder.listen()
    except OSError:
        pass                        # held already, by another cluster: the case itself
    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            cluster = sw.local_cluster(1, silence_logs=logging.ERROR)
            cluster.close()
        assert not [w for w in said if "already in use" in str(w.message)], [str(w.message) for w in said]
    finally:
        holder.close()
