"""Studies as sweep files: shared prefixes, arms that branch from them, extension until the
validation metric stops improving, evaluation conventions, and a cluster that fails, stops and
resumes cleanly."""

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from click.testing import CliRunner

from rbtw import sweep as sw
from rbtw.checkpoint import load_checkpoint
from rbtw.cli import main
from rbtw.config import TrainConfig
from rbtw.errors import UserError
from rbtw.rundir import RunDir
from rbtw.sweep.runner import until_state
from rbtw.train import Run, branch

from conftest import external_cluster

distributed = pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(hidden=8, seq_len=10, batch=4, epochs=2, max_batches=4, eval_max_batches=3, log_every=1000, bn=False)
ARMS = {"constant": {"epochs": 3},
        "cosine": {"epochs": 3, "lr_warmdown": "cosine", "lr_warmdown_frac": 0.3, "lr_warmdown_to": 0.1}}
UNTIL = {"min_gain": 0.0, "max_epochs": 5}


def study(seeds=(0,), variants=None, **extra):
    d = {"task": "default", "options": dict(TINY), "grid": variants or {"fp": {"quant": "none"}},
         "seeds": list(seeds), "arms": ARMS, "until": UNTIL}
    d.update(extra)
    return sw.parse_spec(d)


def snapshot(out):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(Path(out).rglob("*"))
            if p.is_file() and p.name not in (".lock",)}


# ---------------------------------------------------------------------------------------------
# the file


def test_a_study_lists_prefixes_and_arms_in_their_directories(tmp_path):
    runs = study(seeds=(0, 1)).runs(tmp_path)
    assert [r.key for r in runs] == ["prefix/fp-seed0", "constant/fp-seed0", "cosine/fp-seed0",
                                     "prefix/fp-seed1", "constant/fp-seed1", "cosine/fp-seed1"]
    prefix, constant, cosine = runs[:3]
    assert prefix.out == tmp_path / "prefix" / "fp-seed0" and cosine.out == tmp_path / "cosine" / "fp-seed0"
    assert constant.prefix is prefix and prefix.until is None and constant.until == UNTIL
    assert cosine.config == dict(prefix.config, **ARMS["cosine"])


@pytest.mark.parametrize("arms, message", [
    ({"constant": {"hidden": 16}}, "may change only"),
    ({"prefix": {"epochs": 3}}, "arm name 'prefix'"),
    ({}, "arms is empty"),
    ({"fast": {"epochs": 0}}, r"arm 'fast': epochs \(--epochs\) must be a whole number from 1"),
    ({"fast": {"lr": 0.0}}, r"arm 'fast': lr \(--lr\) must be"),
])
def test_bad_arms_are_one_line_errors(arms, message):
    with pytest.raises(UserError, match=message):
        study(arms=arms)


@pytest.mark.parametrize("until, message", [
    ({"min_gain": 0.1}, "until needs max_epochs"),
    ({"min_gain": -1, "max_epochs": 3}, "min_gain must be a finite number ≥ 0"),
    ({"min_gain": float("nan"), "max_epochs": 3}, "min_gain must be a finite number ≥ 0"),
    ({"min_gain": float("inf"), "max_epochs": 3}, "min_gain must be a finite number ≥ 0"),
    ({"min_gain": 0.1, "max_epochs": True}, "until needs max_epochs"),
    ({"min_gain": 0.1, "max_epochs": 3, "patience": 2}, "unknown field 'patience'"),
])
def test_bad_until_is_a_one_line_error(until, message):
    with pytest.raises(UserError, match=message):
        study(until=until)


def test_a_json_sweep_file_with_a_repeated_key_is_refused(tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"task": "default", "seeds": [0], "grid": {"fp": {"quant": "none"}, "fp": {"quant": "binary"}}}')
    with pytest.raises(UserError, match="'fp' appears twice"):
        sw.load_sweep(path)


def _log_epochs(run_dir, values, metric="bpc"):
    rd = RunDir(run_dir)
    rd.path.mkdir(parents=True, exist_ok=True)
    for k, v in enumerate(values):
        rd.append(event="epoch", epoch=k, step=k + 1, **{f"valid_{metric}": v})


@pytest.mark.parametrize("values, state", [
    ([2.0], "extend"), ([2.0, 1.9], "extend"), ([2.0, 1.997], "converged"), ([2.0, 2.1], "converged"),
    ([2.0, 1.9, 1.8, 1.7], "cap"), ([2.0, 1.9, 1.8, 1.799], "converged"),
])
def test_until_extends_until_the_gain_is_small_or_the_cap(tmp_path, values, state):
    _log_epochs(tmp_path, values)
    assert until_state(tmp_path, {"task": "ptb_char"}, {"min_gain": 0.005, "max_epochs": 4}) == state


def test_until_reads_accuracy_as_higher_is_better(tmp_path):
    _log_epochs(tmp_path, [0.50, 0.60], metric="accuracy")
    assert until_state(tmp_path, {"task": "mnist"}, {"min_gain": 0.01, "max_epochs": 9}) == "extend"
    _log_epochs(tmp_path / "b", [0.60, 0.50], metric="accuracy")
    assert until_state(tmp_path / "b", {"task": "mnist"}, {"min_gain": 0.01, "max_epochs": 9}) == "converged"


# ---------------------------------------------------------------------------------------------
# the runs: the same as by hand


def _by_hand(tmp_path, config):
    """The study's sequence for one seed, by hand: prefix, branch, the arm, then one more epoch
    at a time while the criterion says so."""
    prefix = tmp_path / "hand" / "prefix"
    Run(TrainConfig.from_dict(config), prefix, log=lambda line: None).run()
    out = {}
    for arm, changes in ARMS.items():
        dst = tmp_path / "hand" / arm
        branch(prefix, dst, **changes)
        Run(None, dst, resume=True, log=lambda line: None).run()
        while until_state(dst, config, UNTIL) == "extend":
            meta = load_checkpoint(dst / "checkpoint.npz").meta
            more = TrainConfig.from_dict(dict(meta["config"], epochs=meta["epoch"] + 1))
            Run(more, dst, resume=True, log=lambda line: None).run()
        out[arm] = dst
    return prefix, out


@pytest.mark.slow
def test_a_study_on_a_local_cluster_equals_the_hand_run_sequence_and_reruns_nothing(client, tmp_path,
                                                                                   monkeypatch):
    from rbtw.sweep import runner
    monkeypatch.setattr(runner, "NOTICE_SECONDS", 0.1)
    s = study(summary={"conventions": True}, reference="fp",
              variants={"fp": {"quant": "none"}, "ternary": {"quant": "ternary", "stochastic": True}})
    sw.prepare_out(s, tmp_path / "study")              # as `rbtw sweep` does: the study's file kept
    runs = s.runs(tmp_path / "study")
    lines = []
    results = sw.run_all(runs, client, echo=lines.append)
    assert all(r["status"] == "done" for r in results.values()), results
    assert lines == []      # no worker was lost: an arm's first attempt (its log holds its prefix's) is no news
    fp_prefix, fp_constant, fp_cosine = runs[:3]
    hand_prefix, hand = _by_hand(tmp_path, fp_prefix.config)
    for mine, theirs in ((fp_prefix.out, hand_prefix), (fp_constant.out, hand["constant"]),
                         (fp_cosine.out, hand["cosine"])):
        got, want = load_checkpoint(mine / "checkpoint.npz"), load_checkpoint(theirs / "checkpoint.npz")
        assert got.meta["step"] == want.meta["step"]
        for name in want.params:
            np.testing.assert_array_equal(got.params[name], want.params[name], err_msg=f"{mine} {name}")
    for run in runs:
        assert sw.stage_done(run), run.key
    # a run extended past its schedule keeps the schedule's last checkpoint, measured too
    extended = [r for r in runs if RunDir(r.out).schedule_end_path.exists()]
    assert any(json.loads(RunDir(r.out).config_path.read_text())["lr_warmdown_epochs"] == 3 for r in extended)
    for r in extended:
        assert load_checkpoint(RunDir(r.out).schedule_end_path).meta["epoch"] == 3
    summary = sw.summarize(s, *sw.collect(s, tmp_path / "study"))
    groups = {(g["variant"], g["arm"]): g for g in summary["groups"]}
    assert set(groups) == {("fp", "constant"), ("fp", "cosine"), ("ternary", "constant"), ("ternary", "cosine")}
    records = {r["key"]: r for r in summary["runs"]}
    # an arm's log holds its prefix's attempt too: two attempts, neither of them a resume
    assert {r["attempts"] for r in records.values() if r["stage"] == "arm"} == {2}
    assert not any(r["resumed"] for r in records.values())
    assert "(resumed)" not in sw.markdown(summary)
    for key in ("constant/ternary-seed0", "cosine/fp-seed0"):
        conv = records[key]["conventions"]
        assert set(conv) == {"population", "official", "expected", "calibrated"}
        assert conv["population"] == pytest.approx(records[key]["test_bpc"], rel=1e-12)  # the run's own default
    # the best validation point, measured too (once, when it is the final or the schedule's end)
    for key in ("constant/fp-seed0", "cosine/fp-seed0", "constant/ternary-seed0", "cosine/ternary-seed0"):
        rec = records[key]
        assert rec["best_epoch"] == int(np.argmin(rec["valid"])) + 1, rec["valid"]
        best = RunDir(tmp_path / "study" / key).best_path
        final = RunDir(tmp_path / "study" / key).checkpoint_path
        assert set(rec["conventions_at_best"]) == set(rec["conventions"])
        if load_checkpoint(best).meta["step"] == load_checkpoint(final).meta["step"]:
            assert rec["conventions_at_best"] == rec["conventions"]
    at_best = groups[("ternary", "constant")]["conventions_at_best"]["population"]
    assert at_best["mean"] == records["constant/ternary-seed0"]["conventions_at_best"]["population"]
    assert "At each run's best validation epoch" in sw.markdown(summary)
    fp_conv = records["constant/fp-seed0"]["conventions"]
    assert fp_conv["population"] == fp_conv["expected"]          # full precision: no weight sampling
    assert fp_conv["calibrated"] == fp_conv["population"]        # ... and, without BN, nothing to calibrate
    assert records["constant/fp-seed0"]["calibration"] is None
    # the calibrated ternary model is the one `rbtw calibrate` writes, scored on the test split
    ternary = records["constant/ternary-seed0"]
    report = ternary["calibration"]
    assert len(report["tried"]) >= 4 and not report["statistics"]          # no BN here: the threshold only
    assert report["calibrated"] == min(t["valid"] for t in report["tried"]) <= report["uncalibrated"]
    from rbtw.calibrate import calibrate
    from rbtw.evaluate import evaluate
    from rbtw.models import ModelSpec
    from rbtw.tasks import load_task_data
    ckpt = load_checkpoint(tmp_path / "study" / "constant" / "ternary-seed0" / "checkpoint.npz")
    config = TrainConfig.from_dict(ckpt.meta["config"])
    data = load_task_data(config)
    meta, params, stats, again = calibrate(ckpt, data, config)
    assert again == report
    test = evaluate(params, stats, ModelSpec.from_dict(meta["spec"]), data, "test", config)["bpc"]
    assert ternary["conventions"]["calibrated"] == pytest.approx(test, rel=1e-12)
    (gap,) = [d for d in summary["differences"] if d["arm"] == "constant"]
    want = records["constant/ternary-seed0"]["conventions"]["official"] - fp_conv["official"]
    assert gap["conventions"]["official"]["mean"] == pytest.approx(want, rel=1e-12)
    before = snapshot(tmp_path / "study")
    assert all(r.get("skipped") for r in sw.run_all(runs, None).values())    # nothing left: no cluster needed
    assert snapshot(tmp_path / "study") == before
    # bench/converged.py collects the study: every arm run, its four conventions, the calibration table
    results = tmp_path / "results"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "converged.py"), str(tmp_path / "study"),
                           "--results", str(results)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    collected = {r["name"]: r for r in json.loads((results / "converged.json").read_text())["runs"]}
    mine = {n: r for n, r in collected.items() if r.get("study") == "study"}
    assert set(mine) == {"fp-constant-s0", "fp-cosine-s0", "ternary-constant-s0", "ternary-cosine-s0"}
    assert mine["ternary-constant-s0"]["test_bpc"] == ternary["conventions"]
    assert mine["ternary-constant-s0"]["calibration"] == report
    assert "### Calibration of the deterministic model" in (results / "converged.md").read_text()
    # a cache from before the calibrated convention, or made by an older calibration rule: only
    # the calibrated value is measured again
    from rbtw.calibrate import RULE
    from rbtw.sweep.summary import _seal, measure_conventions, record
    run = next(r for r in runs if r.key == "constant/ternary-seed0")
    path = RunDir(run.out).conventions_path
    for stale in ({"calibrated": None, "calibration": None, "calibration_rule": None},     # removed
                  {"calibrated": 8.0, "calibration_rule": RULE - 1}):                      # an older rule
        cache = json.loads(path.read_text())
        for key, entry in cache.items():
            entry.pop("sha256", None)
            entry["population"] = 9.0                    # a mark: kept, not re-measured
            for field, value in stale.items():
                entry.pop(field, None) if value is None else entry.__setitem__(field, value)
            entry["sha256"] = _seal(key, entry)          # as that rbtw sealed it
        path.write_text(json.dumps(cache))
        assert not sw.stage_done(run)
        assert record(run, "bpc")["status"] == "unfinished"      # the summary agrees with the runner
        again = measure_conventions(run.out, "checkpoint.npz")
        assert again["population"] == 9.0
        assert again["calibrated"] == pytest.approx(ternary["conventions"]["calibrated"], rel=1e-12)
        (entry,) = [e for k, e in json.loads(path.read_text()).items() if k.startswith("checkpoint.npz@")]
        assert entry["calibration_rule"] == RULE and entry["population"] == 9.0
    from rbtw.sweep.runner import checkpoints_to_measure
    for name in checkpoints_to_measure(run.out):   # best.npz is the final state: measured once, under both names
        measure_conventions(run.out, name)
    assert sw.stage_done(run) and record(run, "bpc")["status"] == "done"


@pytest.mark.parametrize("cap", [0, 2])
def test_a_calibration_of_an_older_rule_is_kept_only_where_the_rules_agree(tmp_path, cap):
    # rule 3 chooses on the whole validation split, rule 2 stopped at the run's eval cap: for a
    # run without a cap they agree, and its cached calibration stands; with a cap it is redone
    from rbtw.calibrate import RULE, SAME_UNCAPPED
    from rbtw.sweep.summary import _seal, calibration_of, conventions_of
    run = tmp_path / "run"
    args = ["train", "default", "--hidden", "8", "--epochs", "1", "--max-batches", "2", "--seq-len", "10",
            "--batch", "4", "--eval-max-batches", str(cap), "--out", str(run)]
    assert CliRunner().invoke(main, args).exit_code == 0
    step = load_checkpoint(run / "checkpoint.npz").meta["step"]
    for rule in (*SAME_UNCAPPED, RULE - 2):
        entry = {"population": 5.0, "official": 5.1, "expected": 5.2, "calibrated": 4.9,
                 "calibration": {"rule": rule}, "calibration_rule": rule}
        key = f"checkpoint.npz@{step}"
        RunDir(run).conventions_path.write_text(json.dumps({key: dict(entry, sha256=_seal(key, entry))}))
        kept = rule in SAME_UNCAPPED and cap == 0
        assert conventions_of(run, "checkpoint.npz") == dict(
            {"population": 5.0, "official": 5.1, "expected": 5.2}, **({"calibrated": 4.9} if kept else {}))
        assert calibration_of(run, "checkpoint.npz") == ({"rule": rule} if kept else None)
    RunDir(run).conventions_path.write_text(json.dumps({key: entry}))       # no seal: measured again
    assert conventions_of(run, "checkpoint.npz") is None


@pytest.mark.slow
def test_an_arm_waits_for_its_prefix_held_by_another_trainer(client, tmp_path):
    """The study takes over a prefix started by hand in its layout: its arms start when it ends."""
    s = study()
    runs = s.runs(tmp_path)
    prefix = runs[0]
    config = TrainConfig.from_dict(prefix.config)
    from rbtw.runlock import RunLock
    lock = RunLock(prefix.out).acquire()

    def train_then_release():                                   # "rbtw train" in another process
        time.sleep(1.0)
        Run(config, prefix.out, log=lambda line: None).run()
        lock.release()
    trainer = threading.Thread(target=train_then_release)
    trainer.start()
    lines = []
    results = sw.run_all(runs, client, echo=lines.append, retry_seconds=0.5)
    trainer.join()
    assert all(r["status"] == "done" for r in results.values())
    assert any("in use by" in line for line in lines)
    assert len(RunDir(prefix.out).of_kind("test")) == 1                 # trained once, by its owner
    for arm in runs[1:]:
        assert sw.stage_done(arm)
        first = RunDir(arm.out).epochs()[0]
        assert first["epoch"] == 0          # the arm's log carries its prefix's history


def test_a_study_directory_may_hold_runs_started_by_hand_and_may_be_extended(tmp_path):
    out = tmp_path / "study"
    s = study(seeds=(0,))
    (out / "prefix" / "fp-seed0").mkdir(parents=True)
    (out / "prefix" / "fp-seed0.log").write_text("started by hand\n")
    sw.prepare_out(s, out)                                        # adopted
    more = study(seeds=(0, 1), variants={"fp": {"quant": "none"}, "binary": {"quant": "binary"}})
    sw.prepare_out(more, out)                                     # more seeds and variants: extended
    assert sw.stored_sweep(out).seeds == [0, 1]
    changed = study(seeds=(0, 1), variants={"fp": {"quant": "binary"}, "binary": {"quant": "binary"}})
    with pytest.raises(UserError, match="variant 'fp' is missing or defined otherwise"):
        sw.prepare_out(changed, out)
    fewer = study(seeds=(1,), variants={"fp": {"quant": "none"}, "binary": {"quant": "binary"}})
    with pytest.raises(UserError, match="seeds it had are missing"):
        sw.prepare_out(fewer, out)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="does not hold a sweep"):
        sw.prepare_out(s, tmp_path / "other")


# ---------------------------------------------------------------------------------------------
# attempts, wall time, resumed runs


def test_wall_time_adds_every_attempt_even_one_whose_worker_died():
    events = [{"event": "attempt", "time": 100.0}, {"event": "train", "time": 130.0},
              {"event": "epoch", "time": 150.0, "seconds": 50},                       # then killed
              {"event": "attempt", "time": 200.0}, {"event": "epoch", "time": 240.0, "seconds": 40},
              {"event": "test", "time": 241.0}, {"event": "sweep", "status": "done", "seconds": 41.5, "time": 241.5}]
    assert sw.summary.attempt_seconds(events) == (50.0 + 41.5, 2)
    assert sw.summary.attempt_seconds([{"event": "epoch", "seconds": 3}, {"event": "epoch", "seconds": 4}]) == (7, 0)


@given(st.lists(st.sampled_from(["done", "failed", "interrupted", "died"]), min_size=1, max_size=6))
def test_a_run_was_resumed_exactly_when_an_attempt_follows_one_that_did_not_end_done(ends):
    """Attempts, each ending as a sweep task can end ("died": its worker was killed, no sweep
    event); what follows a done attempt (an arm after its prefix, an until extension) starts
    afresh, what follows any other resumes from a checkpoint."""
    events = []
    for k, end in enumerate(ends):
        events += [{"event": "attempt", "time": 10.0 * k}, {"event": "epoch", "time": 10.0 * k + 5, "seconds": 5}]
        if end != "died":
            events.append({"event": "sweep", "status": end, "seconds": 5, "time": 10.0 * k + 6})
    assert sw.summary.resumed_from_log(events) == any(end != "done" for end in ends[:-1])


# ---------------------------------------------------------------------------------------------
# clusters that are not there, not Dask, or empty


def _serve(handler_cls):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_an_http_server_is_not_a_scheduler(tmp_path):
    server = _serve(http.server.SimpleHTTPRequestHandler)     # speaks only when spoken to
    try:
        start = time.time()
        with pytest.raises(UserError, match="not Dask"):
            sw.probe_scheduler(f"tcp://127.0.0.1:{server.server_address[1]}", timeout=1.0)
        assert time.time() - start < 5
    finally:
        server.shutdown()


def test_a_server_that_answers_with_something_else_is_not_a_scheduler():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def answer():
        conn, _ = listener.accept()
        conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")          # what a proxy says
        conn.close()
    threading.Thread(target=answer, daemon=True).start()
    with pytest.raises(UserError, match="not as a Dask scheduler"):
        sw.probe_scheduler(f"127.0.0.1:{listener.getsockname()[1]}", timeout=2.0)
    listener.close()


def test_a_closed_port_fails_at_once_naming_the_address():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(UserError, match=f"tcp://127.0.0.1:{port}"):
        sw.probe_scheduler(f"tcp://127.0.0.1:{port}", timeout=2.0)


@pytest.mark.slow
def test_a_scheduler_without_workers_is_said_and_the_wait_ends(tmp_path):
    with external_cluster(tmp_path, workers=0) as address:
        spec = tmp_path / "s.json"
        spec.write_text(json.dumps({"task": "default", "options": TINY, "grid": {"fp": {"quant": "none"}},
                                    "seeds": [0]}))
        start = time.time()
        result = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(tmp_path / "out"), "--scheduler",
                                           address, "--wait-workers", "1"])
        assert result.exit_code == 2 and time.time() - start < 30
        assert "has no workers; waiting up to 1 s" in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("error: the scheduler at")


# ---------------------------------------------------------------------------------------------
# Ctrl-C on a local cluster


@pytest.mark.slow
@pytest.mark.parametrize("signum,group", [(signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["ctrl-c to the process group", "kill PID"])
def test_ctrl_c_or_sigterm_stops_a_local_cluster_sweep_cleanly_and_the_rerun_resumes(tmp_path, signum, group):
    spec = tmp_path / "s.json"
    slow = dict(TINY, epochs=1, max_batches=3000, checkpoint_every=20, bn=True)
    spec.write_text(json.dumps({"task": "default", "options": slow, "grid": {"ternary": {"quant": "ternary"}},
                                "seeds": [0, 1]}))
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    launcher = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.setsid(); "
                "os.execvp(sys.executable, [sys.executable, '-m', 'rbtw.cli'] + sys.argv[1:])")
    proc = subprocess.Popen([sys.executable, "-c", launcher, "sweep", str(spec), "--out", str(out), "--workers", "2"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    ckpts = [out / "ternary-seed0" / "checkpoint.npz", out / "ternary-seed1" / "checkpoint.npz"]
    while time.time() < deadline and not all(p.exists() for p in ckpts):
        time.sleep(0.2)
    time.sleep(1.0)
    if group:
        os.killpg(proc.pid, signum)                          # Ctrl-C: the whole process group
    else:
        os.kill(proc.pid, signum)                            # `kill PID`: the sweep's own process
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "every run saved its checkpoint" in err
    for name in ("ternary-seed0", "ternary-seed1"):
        rd = RunDir(out / name)
        assert not (rd.path / ".lock").exists()
        assert rd.of_kind("interrupted") and rd.of_kind("sweep")[-1]["status"] == "interrupted"
        assert rd.final_test() is None
    again = CliRunner().invoke(main, ["sweep", str(out), "--workers", "2"])      # the directory resumes it
    assert again.exit_code == 0, again.stderr
    for name in ("ternary-seed0", "ternary-seed1"):
        rd = RunDir(out / name)
        assert rd.final_test() is not None and len(rd.of_kind("attempt")) == 2
    assert "2 (resumed)" in (out / "summary.md").read_text()


@pytest.mark.slow
def test_stopping_one_of_two_sweeps_on_a_directory_leaves_the_other_training(tmp_path):
    """A study split between two sweeps with --only (each on its own cores): SIGTERM to one
    stops its runs only.  (With one stop file per directory, stopping the first stopped the
    second's runs too, and the second sweep then ended as if asked to.)"""
    spec = tmp_path / "s.json"
    slow = dict(TINY, epochs=1, max_batches=3000, checkpoint_every=20, bn=True)
    spec.write_text(json.dumps({"task": "default", "options": slow, "seeds": [0],
                                "grid": {"a": {"quant": "ternary"}, "b": {"quant": "binary", "max_batches": 400}}}))
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def sweep(only):
        return subprocess.Popen([sys.executable, "-m", "rbtw.cli", "sweep", str(spec), "--out", str(out), "--only",
                                 only, "--workers", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
    first = sweep("a")
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "a-seed0" / "checkpoint.npz").exists():
        time.sleep(0.2)
    second = sweep("b")
    while time.time() < deadline and not (out / "b-seed0" / "checkpoint.npz").exists():
        time.sleep(0.2)
    assert (out / "b-seed0" / "checkpoint.npz").exists()
    os.kill(first.pid, signal.SIGTERM)
    _, err = first.communicate(timeout=180)
    assert first.returncode == 128 + signal.SIGTERM, err
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert RunDir(out / "a-seed0").of_kind("interrupted")
    b = RunDir(out / "b-seed0")
    assert not b.of_kind("interrupted") and b.final_test() is not None
    assert not list(out.glob(".stop*"))                     # each sweep removed its own


def test_only_picks_variants_and_arms_with_their_prefixes(tmp_path):
    s = study(seeds=(0, 1), variants={"fp": {"quant": "none"}, "binary": {"quant": "binary"}})
    runs = s.runs(tmp_path)
    keys = lambda names: sorted(r.key for r in s.select(runs, names))  # noqa: E731
    assert keys(["fp"]) == sorted(r.key for r in runs if r.variant == "fp")
    assert keys(["constant"]) == sorted(r.key for r in runs if r.arm != "cosine")
    assert keys(["binary", "cosine"]) == ["cosine/binary-seed0", "cosine/binary-seed1",
                                          "prefix/binary-seed0", "prefix/binary-seed1"]
    with pytest.raises(UserError, match="--only names no variant or arm of the sweep: ternary"):
        s.select(runs, ["ternary"])


@pytest.mark.slow
def test_workers_without_the_data_directory_get_it_from_the_client(tmp_path, monkeypatch):
    """Workers started as `dask worker ADDRESS` know neither $RBTW_DATA nor the client's home:
    the client passes its data directory with every task."""
    cache = tmp_path / "cache"
    text = tmp_path / "text8.txt"
    text.write_bytes(b"anarchism originated as a term of abuse first used against early working class " * 400)
    assert CliRunner().invoke(main, ["data", "import", "text8", str(text), "--data-dir", str(cache)]).exit_code == 0
    env = {k: v for k, v in os.environ.items() if k != "RBTW_DATA"}
    env.update(PYTHONPATH=str(ROOT), HOME=str(tmp_path / "empty-home"), **sw.ONE_THREAD)
    with external_cluster(tmp_path, workers=1, env=env) as address:
        spec = tmp_path / "s.json"
        spec.write_text(json.dumps({"task": "text8", "options": dict(TINY, epochs=1), "grid": {"fp": {"quant": "none"}},
                                    "seeds": [0]}))
        monkeypatch.setenv("RBTW_DATA", str(cache))
        result = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(tmp_path / "out"), "--scheduler", address])
        assert result.exit_code == 0, result.stderr
        assert RunDir(tmp_path / "out" / "fp-seed0").final_test() is not None


def test_a_local_cluster_never_restarts_silent_workers(client):
    """A paused or suspended machine is not a dead worker: no heartbeat deadline on a local
    cluster, so resuming it does not restart the workers and lose the runs' progress."""
    scheduler = client.cluster.scheduler
    assert scheduler.worker_ttl is None and "worker-ttl" not in scheduler.periodic_callbacks


def _bench_module(name):
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@settings(max_examples=40, deadline=None)
@given(g0=st.floats(0.05, 2.0), factor=st.floats(0.3, 0.95), bound=st.floats(0.001, 0.04))
def test_the_width_trend_reports_the_factor_a_doubling_really_multiplies_the_gap_by(g0, factor, bound):
    # bench/converged.py: a gap that is multiplied by `factor` at every doubling of H is fitted
    # exactly; the width at which it meets `bound` solves g0·factor^log2(H/128) = bound
    converged = _bench_module("converged")
    points = [(h, g0 * factor ** np.log2(h / 128)) for h in (128, 256, 512, 1000)]
    h_star, per_doubling, (low, high) = converged.meeting_width(points, bound)
    assert per_doubling == pytest.approx(factor, rel=1e-9)
    assert g0 * factor ** np.log2(h_star / 128) == pytest.approx(bound, rel=1e-6)
    # a line that fits every point exactly leaves no doubt about where it meets the bound
    assert low == pytest.approx(h_star, rel=1e-6) and high == pytest.approx(h_star, rel=1e-6)


def test_the_width_trend_interval_covers_the_true_width_as_often_as_it_says():
    # bench/converged.py: seeds scatter ln(gap) around a straight line in log2(H), laid out as
    # the study measures (three seeds at H 128 and 256, one at 512 and 1000); over many such
    # studies the 95 % interval on the width where the line meets the bound covers the true
    # width in 95 % of them (Fieller's interval is exact for a straight line and normal
    # scatter), and the interval always holds its own point estimate; likewise the prediction
    # interval at H 2000 holds one more seed's gap there in 95 % of the studies
    converged = _bench_module("converged")
    rng = np.random.default_rng(20)
    widths = [128] * 3 + [256] * 3 + [512, 1000]
    g0, factor, bound, sd = 0.22, 0.68, 0.02, 0.08
    true_h = 128 * 2 ** (np.log(bound / g0) / np.log(factor))            # ≈ 12,000
    covered, predicted, draws = 0, 0, 4000
    for _ in range(draws):
        noise = rng.normal(0, sd, len(widths))
        points = [(h, g0 * factor ** np.log2(h / 128) * np.exp(e)) for h, e in zip(widths, noise)]
        h_star, _, (low, high) = converged.meeting_width(points, bound)
        assert low <= h_star <= high
        covered += low <= true_h <= high
        g_hat, (g_low, g_high) = converged.predicted_gap(points, 2000)
        assert g_low < g_hat < g_high
        new_seed = g0 * factor ** np.log2(2000 / 128) * np.exp(rng.normal(0, sd))
        predicted += g_low <= new_seed <= g_high
    assert 0.935 <= covered / draws <= 0.965
    assert 0.935 <= predicted / draws <= 0.965


def test_the_width_trend_gives_no_interval_through_two_widths_and_none_when_it_does_not_shrink():
    converged = _bench_module("converged")
    two = [(128, 0.22), (128, 0.21), (512, 0.10), (512, 0.11)]
    h_star, per_doubling, band = converged.meeting_width(two, 0.02)
    assert band is None and 0.6 < per_doubling < 0.75 and h_star > 512
    g_hat, band = converged.predicted_gap(two, 1000)
    assert band is None and 0.02 < g_hat < 0.10
    assert converged.meeting_width([(128, 0.2), (256, 0.2), (512, 0.25)], 0.02) is None
    assert converged.meeting_width([(128, 0.2), (256, 0.1), (512, -0.01)], 0.02) is None
    # seeds scattered so widely that a flat line fits as well: no upper end
    wide = [(128, 0.3), (128, 0.05), (256, 0.25), (256, 0.04), (512, 0.2), (512, 0.03)]
    assert converged.meeting_width(wide, 0.02)[2][1] == np.inf


@settings(max_examples=25, deadline=None)
@given(cut=st.integers(0, 10**6), junk=st.binary(max_size=8))
def test_a_damaged_converged_json_is_a_one_line_error_and_stays_as_it_was(tmp_path_factory, cut, junk):
    # bench/converged.py keeps every run of every study in converged.json: a damaged copy (cut
    # anywhere, a few bytes of junk after) stops it with one line, and nothing is rewritten
    results = tmp_path_factory.mktemp("results")
    whole = (ROOT / "bench" / "results" / "converged.json").read_bytes()
    damaged = whole[:cut % len(whole)] + junk
    try:
        json.loads(damaged)["runs"][0]["name"]
        return                                  # still a readable results file: nothing to test
    except (ValueError, KeyError, TypeError, IndexError):
        pass
    (results / "converged.json").write_bytes(damaged)
    code, message = _run_main_said(_bench_module("converged"), ["--results", results])
    assert code == 2 and message.startswith("error: ") and "\n" not in message, message
    assert (results / "converged.json").read_bytes() == damaged
    assert sorted(p.name for p in results.iterdir()) == ["converged.json"]


@settings(max_examples=60, deadline=None)
@given(thetas=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=5))
def test_the_threshold_search_takes_every_theta_in_its_domain_and_refuses_the_rest(thetas):
    # bench/ternary_thresholds.py --grid: τ = θ·α with θ in (0, 1); anything else is refused
    # with one line naming the value, never a traceback hours into the search
    import argparse
    tt = _bench_module("ternary_thresholds")
    text = ",".join(repr(v) for v in thetas)
    if all(0 < v < 1 for v in thetas):
        assert tt.theta_grid(text) == thetas
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="θ must lie in"):
            tt.theta_grid(text)
    with pytest.raises(argparse.ArgumentTypeError):
        tt.theta_grid(text + ",x")


# ---------------------------------------------------------------------------------------------
# bench/converged.py and bench/study_progress.py on damaged and partial studies: one line, never
# a traceback


def _fake_study(out, variants=("fp", "ternary"), seeds=(0, 1), arms=True, train_loss=1.5):
    """A study directory whose runs' logs are written by hand (no training): three epochs each,
    a test event and the sweep's end; the validation BPC differs by variant and seed."""
    grid = {v: {"quant": "none" if v == "fp" else "ternary"} for v in variants}
    s = study(seeds=seeds, variants=grid) if arms else \
        sw.parse_spec({"task": "default", "options": dict(TINY), "grid": grid, "seeds": list(seeds)})
    sw.prepare_out(s, out)
    for r in s.runs(out):
        rd = RunDir(r.out)
        rd.path.mkdir(parents=True, exist_ok=True)
        for k in range(3):
            rd.append(event="epoch", epoch=k, step=k + 1, train_loss=train_loss,
                      valid_bpc=2.0 - 0.1 * k + 0.1 * variants.index(r.variant) + 0.01 * r.seed)
        rd.append(event="test", test_bpc=1.9)
        rd.append(event="sweep", status="done", seconds=3.0)
    return s


def _run_main(module, argv):
    """``module.main()`` with ``argv``: its exit code (0 when it returned); any other exception,
    a traceback from the command line, propagates."""
    saved = sys.argv
    sys.argv = [module.__file__] + [str(a) for a in argv]
    try:
        module.main()
    except SystemExit as stop:
        return stop.code
    finally:
        sys.argv = saved
    return 0


def _run_main_said(module, argv):
    """(exit code, what it wrote on stderr, stripped) of ``module.main()`` with ``argv``."""
    import contextlib
    import io
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = _run_main(module, argv)
    return code, err.getvalue().strip()


def _damage_log(run_dir, line=2):
    path = Path(run_dir) / "metrics.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[line - 1] = "{not json\n"
    path.write_text("".join(lines))


def test_converged_leaves_out_a_run_whose_log_is_damaged_and_collects_the_others(tmp_path, monkeypatch, capsys):
    converged = _bench_module("converged")
    monkeypatch.setattr(converged, "plot", lambda records, path: None)          # no figure: fast
    out, results = tmp_path / "study", tmp_path / "results"
    _fake_study(out, seeds=(0,))
    assert _run_main(converged, [out, "--results", results]) == 0
    first = {r["name"]: r for r in json.loads((results / "converged.json").read_text())["runs"]}
    assert set(first) == {"fp-constant-s0", "fp-cosine-s0", "ternary-constant-s0", "ternary-cosine-s0"}
    capsys.readouterr()
    _damage_log(out / "constant" / "ternary-seed0")
    _damage_log(out / "cosine" / "fp-seed0")
    RunDir(out / "constant" / "fp-seed0").append(event="epoch", epoch=3, step=4, valid_bpc=1.5)  # news
    assert _run_main(converged, [out, "--results", results]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    left = [line for line in err.splitlines() if "left out" in line]
    assert len(left) == 2 and all(line.startswith("warning: ") for line in left)
    assert any("constant/ternary-seed0" in line and "metrics.jsonl:2" in line for line in left)
    again = {r["name"]: r for r in json.loads((results / "converged.json").read_text())["runs"]}
    assert set(again) == set(first)
    assert again["fp-constant-s0"]["valid_bpc"][-1] == 1.5                      # the others go on
    assert again["ternary-constant-s0"] == first["ternary-constant-s0"]         # its earlier record kept
    assert again["fp-cosine-s0"] == first["fp-cosine-s0"]


def test_converged_keeps_a_finished_record_whose_directory_was_lost(tmp_path, monkeypatch):
    """An arm collected before, whose run directory is gone (a lost machine) and whose study
    directory now says "not started", keeps its record; an arm never collected adds none."""
    import shutil
    converged = _bench_module("converged")
    monkeypatch.setattr(converged, "plot", lambda records, path: None)
    out, results = tmp_path / "study", tmp_path / "results"
    _fake_study(out, seeds=(0,))
    assert _run_main(converged, [out, "--results", results]) == 0
    first = {r["name"]: r for r in json.loads((results / "converged.json").read_text())["runs"]}
    shutil.rmtree(out / "constant" / "fp-seed0")                     # lost with its machine
    shutil.rmtree(out / "cosine" / "ternary-seed0")
    del first["ternary-cosine-s0"]
    kept = json.loads((results / "converged.json").read_text())
    kept["runs"] = [r for r in kept["runs"] if r["name"] != "ternary-cosine-s0"]   # never collected
    (results / "converged.json").write_text(json.dumps(kept))
    assert _run_main(converged, [out, "--results", results]) == 0
    again = {r["name"]: r for r in json.loads((results / "converged.json").read_text())["runs"]}
    assert again == first


def _results_json():
    return json.loads((ROOT / "bench" / "results" / "converged.json").read_text())


def _refused(converged, results):
    """Run converged.py on ``results``: its message when it stopped with one line and wrote nothing."""
    before = {p.name: p.read_bytes() for p in results.iterdir()}
    code, message = _run_main_said(converged, ["--results", results])
    assert code == 2, "a damaged converged.json was taken"
    assert message.startswith("error: ") and "\n" not in message, message
    assert str(results / "converged.json") in message
    assert {p.name: p.read_bytes() for p in results.iterdir()} == before         # nothing written
    return message


def test_the_results_of_the_repository_are_a_converged_json_this_script_reads():
    converged = _bench_module("converged")
    runs = _results_json()["runs"]
    assert converged.read_results(ROOT / "bench" / "results" / "converged.json") == runs
    assert "### Every run" in converged.report(runs)


def _without(record, field):
    return {k: v for k, v in record.items() if k != field}


@pytest.mark.parametrize("damage, says", [
    (lambda d: {"runs": 3}, lambda d: "runs is 3, not a list"),
    (lambda d: {"runs": [1, 2]}, lambda d: "runs[0] is 1, not an object"),
    (lambda d: dict(d, runs=d["runs"][:2] + [_without(d["runs"][2], "cell")] + d["runs"][3:]),
     lambda d: f"runs[2] ({d['runs'][2]['name']}) has no cell"),
    (lambda d: dict(d, runs=d["runs"][:1] + [dict(d["runs"][1], status=7)] + d["runs"][2:]),
     lambda d: f"runs[1] ({d['runs'][1]['name']}) status is 7, not text"),
    (lambda d: dict(d, runs=d["runs"] + [dict(d["runs"][0], test_bpc={"population": "1.5"})]),
     lambda d: f'runs[{len(d["runs"])}] ({d["runs"][0]["name"]}) test_bpc is {{"population": "1.5"}}'),
    (lambda d: [d], lambda d: "not a converged.json this script wrote"),
], ids=["runs a number", "runs not objects", "no cell", "status a number", "a figure as text", "a list"])
def test_a_converged_json_of_another_shape_is_refused_in_one_line_naming_it(tmp_path, damage, says):
    converged = _bench_module("converged")
    whole = _results_json()
    (tmp_path / "converged.json").write_text(json.dumps(damage(whole)))
    assert says(whole) in _refused(converged, tmp_path)


# what a converged.json record holds, field by field: (required, kind, may be null)
RECORD = {"name": (True, "text", False), "variant": (True, "text", False), "schedule": (True, "text", False),
          "cell": (True, "text", False), "status": (True, "text", False), "hidden": (True, "positive", False),
          "seed": (True, "whole", False), "valid_bpc": (True, "numbers", False),
          "wall_seconds": (True, "number", False),
          "study": (False, "text", True), "machine": (False, "text", False), "epochs": (False, "whole", False),
          "schedule_epochs": (False, "whole", False), "tail_epochs": (False, "whole", False),
          "attempts": (False, "whole", False), "minibatches": (False, "whole", False),
          "best_epoch": (False, "whole", True), "converged": (False, "bool", True),
          "last_epoch_gain": (False, "number", True), "test_bpc": (False, "conventions", True),
          "test_bpc_at_schedule_end": (False, "conventions", True), "test_bpc_at_best": (False, "conventions", True),
          "calibration": (False, "calibration", True)}
JUNK = [None, True, False, -1, 0, 3, 2.5, "x", "", [], [1.5], ["x"], [None], {}, {"population": "x"},
        {"population": None}, {"x": 1.0}, {"uncalibrated": 1.0}, 10 ** 400, [10 ** 400], {"population": 10 ** 400}]


def _fits(kind, value):
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    whole = isinstance(value, int) and not isinstance(value, bool)
    return {"text": isinstance(value, str), "whole": whole and value >= 0, "positive": whole and value >= 1,
            "number": number, "bool": isinstance(value, bool),
            "numbers": isinstance(value, list) and all(_fits("number", v) for v in value),
            "conventions": isinstance(value, dict) and all(k in ("population", "official", "expected", "calibrated")
                                                             and _fits("number", v) for k, v in value.items()),
            "calibration": False}[kind]          # no junk value is a calibration report


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_single_damaged_results_record_is_refused_in_one_line_and_the_file_is_unchanged(
        tmp_path_factory, data):
    converged = _bench_module("converged")
    whole = _results_json()
    k = data.draw(st.integers(0, len(whole["runs"]) - 1), label="record")
    record = dict(whole["runs"][k])
    field = data.draw(st.sampled_from(sorted(f for f in RECORD if f in record or RECORD[f][0])), label="field")
    required, kind, nullable = RECORD[field]
    wrong = [v for v in JUNK if not _fits(kind, v) and not (v is None and nullable)]
    damage = data.draw(st.sampled_from((["missing"] if required else []) + wrong), label="damage")
    if damage == "missing":
        record.pop(field, None)
    else:
        record[field] = damage
    whole["runs"][k] = record
    results = tmp_path_factory.mktemp("results")
    (results / "converged.json").write_text(json.dumps(whole, indent=1))
    message = _refused(converged, results)
    assert f"runs[{k}]" in message and field in message


def _study_progress(argv, capsys):
    module = _bench_module("study_progress")
    code = _run_main(module, argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("where, argv, says", [
    ("nothing", [], "is not a directory"),
    ("study", ["--part", "slow"], "has no part 'slow' (its parts: constant, cosine, prefix)"),
    ("sweep", [], "has no part 'prefix' (its parts: . (a sweep without arms"),
    ("damaged", ["--part", "constant"], "constant/ternary-seed1/metrics.jsonl:2 is not a metrics log line"),
    ("study", ["--part", "cosine", "--reference", "binary"],
     "--reference 'binary' is no variant of {dir}/cosine (its variants: fp, ternary)"),
])
def test_study_progress_says_what_is_wrong_in_one_line(tmp_path, capsys, where, argv, says):
    _fake_study(tmp_path / "study", seeds=(0, 1))
    _fake_study(tmp_path / "sweep", seeds=(0,), arms=False)
    _fake_study(tmp_path / "damaged", seeds=(0, 1))
    _damage_log(tmp_path / "damaged" / "constant" / "ternary-seed1")
    code, out, err = _study_progress([tmp_path / where] + argv, capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert says.format(dir=tmp_path / where) in err


def test_study_progress_pairs_each_gap_with_the_reference_run_of_its_seed(tmp_path, capsys):
    _fake_study(tmp_path / "study", seeds=(0, 1, 2))
    (tmp_path / "study" / "cosine" / "fp-seed2" / "metrics.jsonl").unlink()     # not begun yet
    code, out, err = _study_progress([tmp_path / "study", "--part", "cosine"], capsys)
    assert code == 0, err
    head, _, *rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()]
    gaps = [c for c in head if "−" in c]
    assert gaps == ["ternary-seed0 − fp-seed0", "ternary-seed1 − fp-seed1"]        # none for seed 2
    assert len(rows) == 3
    for row in rows:
        cell = dict(zip(head, row))
        for seed in (0, 1):
            want = float(cell[f"ternary-seed{seed} valid"]) - float(cell[f"fp-seed{seed} valid"])
            assert float(cell[f"ternary-seed{seed} − fp-seed{seed}"]) == pytest.approx(want, abs=1e-4)
            assert want == pytest.approx(0.1, abs=1e-4)              # the same seed's: 0.1, not 0.1 + 0.01·seed
    # the reference taken the other way round: fp − ternary, paired the same way
    code, out, _ = _study_progress([tmp_path / "study", "--part", "cosine", "--reference", "ternary"],
                                   capsys)
    assert code == 0 and "fp-seed1 − ternary-seed1" in out and "fp-seed0 − ternary-seed1" not in out


def test_study_progress_shows_a_missing_training_loss_as_a_dash(tmp_path, capsys):
    _fake_study(tmp_path / "study", seeds=(0,), train_loss=None)
    code, out, err = _study_progress([tmp_path / "study"], capsys)
    assert code == 0, err
    rows = out.splitlines()[2:]
    assert len(rows) == 3 and all(row.endswith("| — | — |") for row in rows)


def test_a_converged_record_names_the_machines_that_trained_it_not_the_collecting_host(tmp_path):
    converged = _bench_module("converged")
    s = _fake_study(tmp_path / "study", seeds=(0,))
    trained = {}
    for k, r in enumerate(s.runs(tmp_path / "study")):
        if r.stage == "arm" and r.variant == "fp":
            trained[r.arm] = f"Trainer {k}, 2 cores, AVX2"
            lines = RunDir(r.out).metrics_path.read_text().splitlines()
            attempt = json.dumps({"event": "attempt", "time_started": 1.0, "host": "h", "machine": trained[r.arm],
                                  "pid": 1, "resumed": False, "time": 1.0})
            RunDir(r.out).metrics_path.write_text("\n".join([attempt] + lines) + "\n")
    records = {(r["variant"], r["schedule"]): r for r in converged.study_records(tmp_path / "study")}
    for arm, where in trained.items():
        assert records[("fp", arm)]["machine"] == where
    assert records[("ternary", "constant")]["machine"] == converged.machine()   # a log without it


def test_arms_of_a_prefix_that_cannot_train_are_failed_in_the_summary(tmp_path):
    s = study()
    runs = s.runs(tmp_path)
    prefix = runs[0]
    RunDir(prefix.out).path.mkdir(parents=True)
    RunDir(prefix.out).config_path.write_text(json.dumps(dict(prefix.config, hidden=16)))   # another run's
    results = sw.run_all(runs, None)            # nothing is submitted: the prefix fails, so do its arms
    assert sorted(k for k, r in results.items() if r["status"] == "failed") == sorted(r.key for r in runs)
    summary = sw.summarize(s, *sw.collect(s, tmp_path))
    assert [g["failed"] for g in summary["groups"]] == [1, 1]


def test_an_arm_that_changes_the_rate_its_prefix_trains_with_is_refused_when_the_file_is_read():
    for arm in ({"epochs": 3, "lr_warmdown": "cosine", "lr_warmdown_frac": 0.9},    # starts in epoch 1
                {"epochs": 3, "lr_warmdown": "linear", "lr_warmdown_frac": 0.5}):   # in epoch 2, mid-way
        with pytest.raises(UserError, match="changes the rate in epoch"):
            study(arms={"bad": arm}).runs("/nonexistent")
    study(arms={"late": {"epochs": 4, "lr_warmdown": "cosine", "lr_warmdown_frac": 0.5}}).runs("/nonexistent")
