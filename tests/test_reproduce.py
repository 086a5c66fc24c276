"""The reproduction driver (planning, job commands, report) and learning-curve plots."""

import json
import sys

import pytest
from click.testing import CliRunner

from rbtw import reproduce as rep
from rbtw.cli import main
from rbtw.errors import UserError
from rbtw.plot import curves, plot_logs, read_log


def test_plan_covers_every_variant_and_gru_on_ptb_chars(tmp_path):
    jobs = rep.plan("quick", ["ptb_char", "mnist"], tmp_path)
    names = [j.name for j in jobs]
    assert names[:4] == ["ptb_char/fp", "ptb_char/binaryconnect", "ptb_char/binary", "ptb_char/ternary"]
    assert {"ptb_char/gru-fp", "ptb_char/gru-binary", "ptb_char/gru-ternary"} <= set(names)
    assert not any(n.startswith("mnist/gru") for n in names)
    bc = next(j for j in jobs if j.variant == "binaryconnect")
    cmd = bc.command()
    assert "--no-bn" in cmd and "--stochastic" in cmd and cmd[cmd.index("--quant") + 1] == "binary"
    with pytest.raises(UserError):
        rep.plan("huge", ["ptb_char"], tmp_path)
    with pytest.raises(UserError):
        rep.plan("quick", ["imagenet"], tmp_path)


def test_unlimited_settings_become_zero_on_the_command_line(tmp_path):
    job = rep.plan("full", ["ptb_char"], tmp_path)[0]
    cmd = job.command()
    assert cmd[cmd.index("--eval-max-batches") + 1] == "0"


def test_reproduce_runs_trains_and_reports(tmp_path, monkeypatch):
    """A miniature budget on the embedded corpus through the real job runner."""
    monkeypatch.setitem(rep.BUDGETS, "quick", dict(rep.BUDGETS["quick"], ptb_char=dict(
        hidden=8, seq_len=20, batch=8, epochs=1, max_batches=2, eval_max_batches=2)))
    monkeypatch.setattr(rep, "TASK_ORDER", rep.TASK_ORDER + ["default"])
    monkeypatch.setitem(rep.BUDGETS["quick"], "default", rep.BUDGETS["quick"]["ptb_char"])
    jobs = rep.plan("quick", ["default"], tmp_path)
    rep.run_jobs(jobs, workers=2, echo=lambda line: None)
    assert all(rep.finished(j) is not None for j in jobs), [j.result for j in jobs]
    text = rep.report(jobs, "quick", "rbtw reproduce --tasks default")
    assert "| ternary |" in text and "| binaryconnect |" in text and "KiB" in text
    # a second run repeats nothing
    before = {j.name: (j.out / "metrics.jsonl").read_text() for j in jobs}
    rep.run_jobs(jobs, workers=2, echo=lambda line: None)
    assert before == {j.name: (j.out / "metrics.jsonl").read_text() for j in jobs}


def write_log(path, metric="valid_bpc"):
    path.mkdir(parents=True, exist_ok=True)
    events = [{"event": "train", "step": s, "loss": 3.0 - 0.1 * s} for s in range(1, 6)]
    events += [{"event": "epoch", "epoch": e, metric: 2.5 - 0.2 * e} for e in range(3)]
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    return path


def test_curves_read_the_metrics_log(tmp_path):
    _, events = read_log(write_log(tmp_path / "a"))
    train, metric, valid = curves(events)
    assert metric == "valid_bpc" and len(train) == 5 and valid[0] == (1, 2.5)
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(UserError, match="not a JSON line"):
        read_log(tmp_path / "bad.jsonl")


def test_plot_draws_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = plot_logs([write_log(tmp_path / "a"), write_log(tmp_path / "b")], tmp_path / "c.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = CliRunner().invoke(main, ["plot", str(tmp_path / "a"), "--out", str(tmp_path / "d.png")])
    assert result.exit_code == 0 and (tmp_path / "d.png").exists()


def test_plot_without_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = CliRunner().invoke(main, ["plot", str(write_log(tmp_path / "a")), "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "pip install 'rbtw[plot]'" in result.stderr


@pytest.mark.parametrize("budget", ["quick", "full"])
def test_job_config_is_what_its_train_command_would_train(tmp_path, monkeypatch, budget):
    """The sweep runner trains Job.config() in-process; it equals the config of Job.command()."""
    from rbtw import train

    seen = {}

    class Capture:
        def __init__(self, config, out, **kwargs):
            seen["config"] = config.to_dict()
            raise UserError("captured")

    monkeypatch.setattr(train, "Run", Capture)
    for job in rep.plan(budget, ["ptb_char", "mnist", "ptb_word"], tmp_path):
        result = CliRunner().invoke(main, job.command()[3:])  # after: python -m rbtw.cli
        assert "captured" in result.stderr, result.stderr
        assert job.config() == seen["config"], job.name


def test_sigterm_stops_a_reproduction_as_ctrl_c_does(tmp_path, monkeypatch):
    """While the runs train, SIGTERM is turned into the interrupt the runner answers by stopping
    every run at its next minibatch boundary (it would have killed the command outright); the
    cluster is closed and the stop file removed."""
    import os
    import signal
    import time
    from rbtw import sweep
    closed = []

    class Client:
        def close(self):
            closed.append("client")

    def run_all(runs, client, data_dir, echo, progress, stop_file):
        assert os.path.dirname(stop_file) and not closed
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, "SIGTERM would kill the command"
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)                                   # the signal's handler interrupts this
        raise AssertionError("SIGTERM did not interrupt")

    monkeypatch.setattr(sweep, "connect", lambda scheduler, workers, echo=None: (Client(), None))
    monkeypatch.setattr(sweep, "run_all", run_all)
    jobs = rep.plan("quick", ["ptb_char"], tmp_path)
    with pytest.raises(KeyboardInterrupt):
        rep.run_jobs(jobs, echo=lambda line: None)
    assert closed == ["client"] and not list(tmp_path.rglob(".stop-*"))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
