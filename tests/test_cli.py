"""The command line, through click's CliRunner: working commands and one-line errors."""

import os
import json

import numpy as np
import pytest
from click.testing import CliRunner

from rbtw.config import TrainConfig
from rbtw import __version__
from rbtw.checkpoint import load_checkpoint, save_checkpoint
from rbtw.cli import main

TINY = ["--hidden", "16", "--epochs", "1", "--max-batches", "2", "--eval-max-batches", "2", "--seq-len", "20",
        "--batch", "8"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(result, *fragments):
    assert result.exit_code != 0
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert __version__ in result.output


def test_help_lists_commands_that_each_answer_help():
    result = invoke("--help")
    assert result.exit_code == 0
    commands = result.output.split("Commands:")[1].split()
    names = [w for w in commands if w in main.commands]
    assert set(names) == set(main.commands)
    for name in names:
        assert invoke(name, "--help").exit_code == 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = invoke("train", "default", *TINY, "--quant", "ternary", "--stochastic", "--out", out)
    assert result.exit_code == 0, result.output
    assert "test bpc" in result.stdout
    return out


def test_train_eval_info_sample(trained):
    ckpt = trained / "checkpoint.npz"
    result = invoke("eval", ckpt, "--split", "valid", "--json", "--max-batches", "2")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["split"] == "valid" and metrics["bpc"] > 0
    assert metrics["eval_weights"] == "deterministic" and metrics["eval_stats"] == "population"

    result = invoke("info", ckpt)
    assert result.exit_code == 0
    assert "ternary stochastic" in result.stdout and "1 bit/weight" in result.stdout

    result = invoke("sample", ckpt, "--prime", "Alice ", "--length", "30", "--seed", "3")
    assert result.exit_code == 0
    assert result.stdout.startswith("Alice ") and len(result.stdout.rstrip("\n")) >= 36
    again = invoke("sample", ckpt, "--prime", "Alice ", "--length", "30", "--seed", "3")
    assert again.stdout == result.stdout


def test_existing_run_is_not_overwritten_without_resume_or_force(trained):
    before = (trained / "checkpoint.npz").read_bytes()
    assert_one_line_error(invoke("train", "default", *TINY, "--out", trained), "--resume")
    assert (trained / "checkpoint.npz").read_bytes() == before


def test_unknown_task_and_option(tmp_path):
    assert_one_line_error(invoke("train", "nosuch"), "nosuch")
    assert_one_line_error(invoke("train", "default", "--bogus"), "--bogus")
    assert_one_line_error(invoke("train", "default", "--quant", "quaternary"), "--quant")
    assert_one_line_error(invoke("train", "default", "--hidden", "0"), "--hidden")


def test_missing_data_says_how_to_get_it(tmp_path):
    result = invoke("train", "ptb_char", *TINY, "--data-dir", tmp_path / "empty", "--out", tmp_path / "run")
    assert_one_line_error(result, "rbtw data download ptb_char", "rbtw data import ptb_char")


def test_corrupt_and_mismatched_checkpoints(trained, tmp_path):
    good = (trained / "checkpoint.npz").read_bytes()
    for name, content in [("truncated.npz", good[: len(good) // 3]), ("garbage.npz", b"\x00" * 100),
                          ("empty.rbtw", b"")]:
        (tmp_path / name).write_bytes(content)
        for command in ("eval", "info", "sample"):     # these take an export too, and say so
            assert_one_line_error(invoke(command, tmp_path / name), "not a readable rbtw checkpoint or packed export")
        assert_one_line_error(invoke("export", tmp_path / name, tmp_path / "out.rbtw"),
                              f"{name} is not a readable rbtw checkpoint (")
    ckpt = load_checkpoint(trained / "checkpoint.npz")
    ckpt.params["rnn0.W_h"] = np.zeros((3, 3), dtype=np.float32)
    save_checkpoint(tmp_path / "mismatched.npz", ckpt.meta, ckpt.params, ckpt.stats, ckpt.optimizer, ckpt.extra)
    assert_one_line_error(invoke("eval", tmp_path / "mismatched.npz"), "rnn0.W_h")
    assert_one_line_error(invoke("eval", tmp_path / "nothing.npz"), "no such checkpoint or packed export")


def test_prime_errors(trained, tmp_path):
    ckpt = trained / "checkpoint.npz"
    assert_one_line_error(invoke("sample", ckpt, "--prime", "Alice \u2603"), "not in the model's vocabulary")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9".encode("latin-1"))
    assert_one_line_error(invoke("sample", ckpt, "--prime-file", bad), "not valid UTF-8 text")


def test_imported_text_that_is_not_utf8(tmp_path):
    bad = tmp_path / "warpeace_input.txt"
    bad.write_bytes(b"\xff\xfe" + b"x" * 100)
    assert_one_line_error(invoke("data", "import", "warpeace", bad, "--data-dir", tmp_path / "cache"))
    assert not any((tmp_path / "cache").rglob("warpeace_input.txt"))


# --- careless input: domains, resume semantics, divergence, operating-system errors ---------


@pytest.mark.parametrize("option", [["--lr", "nan"], ["--lr", "inf"], ["--clip-norm", "inf"], ["--h0-noise", "nan"],
                                    ["--lr-end", "inf"], ["--seed", "-1"]])
def test_values_outside_an_options_domain(tmp_path, option):
    result = invoke("train", "default", *TINY, *option, "--out", tmp_path / "run")
    assert_one_line_error(result)
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


@pytest.mark.parametrize("option,fragment", [(["--dropout", "0.3"], "--dropout"), (["--emb", "8"], "--emb"),
                                             (["--quant", "fp", "--stochastic"], "stochastic=True (--stochastic) does"),
                                             (["--quant", "fp", "--no-bn", "--eval-stats", "batch"],
                                              "eval_stats (--eval-stats) 'batch' does"),
                                             (["--pixels-per-step", "4"], "--pixels-per-step"),
                                             (["--lr-warmdown-epochs", "2"], "--lr-warmdown-epochs")])
def test_options_that_do_not_apply_are_refused(tmp_path, option, fragment):
    assert_one_line_error(invoke("train", "default", *TINY, *option, "--out", tmp_path / "run"), fragment)


@pytest.mark.parametrize("option", [["--hidden", "1000000000"], ["--seq-len", "1000000000"]])
def test_sizes_beyond_memory_are_refused_with_the_estimate(tmp_path, option):
    assert_one_line_error(invoke("train", "default", *option, "--out", tmp_path / "run"), "GiB of memory")


def test_divergence_is_a_failure(tmp_path):
    result = invoke("train", "default", *TINY, "--lr", "1e9", "--out", tmp_path / "run")
    assert result.exit_code == 2
    last = result.stderr.strip().splitlines()[-1]   # after the epoch's progress lines
    assert last.startswith("error: the run diverged") and "--lr" in last, result.stderr
    assert "Traceback" not in result.stderr


def test_resume_refuses_other_tasks_and_changed_options_but_extends_epochs(tmp_path):
    out = tmp_path / "run"
    assert invoke("train", "default", *TINY, "--out", out).exit_code == 0
    before = (out / "checkpoint.npz").read_bytes()
    assert_one_line_error(invoke("train", "mnist", "--resume", "--out", out), "default run, not mnist")
    assert_one_line_error(invoke("train", "default", "--resume", "--out", out, "--hidden", "32"), "hidden 32")
    assert_one_line_error(invoke("train", "default", "--resume", "--out", out, "--preset", "paper"), "--preset")
    assert_one_line_error(invoke("train", "default", "--resume", "--force", "--out", out), "--force")
    assert (out / "checkpoint.npz").read_bytes() == before
    result = invoke("train", "default", "--resume", "--out", out, "--epochs", "2")
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out / "checkpoint.npz").meta["epoch"] == 2
    assert json.loads((out / "config.json").read_text())["epochs"] == 2
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()
              if json.loads(line)["event"] == "epoch"]
    assert epochs == [0, 1]


def test_force_replaces_the_old_run_at_once(tmp_path):
    out = tmp_path / "run"
    assert invoke("train", "default", *TINY, "--out", out).exit_code == 0
    from rbtw import train
    config = TrainConfig(task="default", hidden=16, seq_len=20, batch=8, epochs=1, max_batches=2, seed=5)

    def poison(run, loss):
        run.params["out.W"][0, 0] = np.nan

    run = train.Run(config, out, log=lambda line: None)   # what --force does
    with pytest.raises(train.NonFiniteLoss, match="last good checkpoint"):
        run.run(progress=poison)
    kept = load_checkpoint(out / "checkpoint.npz")
    assert kept.meta["config"]["seed"] == 5 and kept.meta["step"] == 0   # the new run's, not the old one
    assert json.loads((out / "config.json").read_text())["seed"] == 5


def test_progress_bar_shows_the_current_loss():
    from rbtw.cli.progress import EpochBar as _EpochBar

    class FakeRun:
        epoch, batch_index, config = 0, 0, type("C", (), {"epochs": 1})()

        def n_batches(self):
            return 3

    bar, run = _EpochBar(terminal=True), FakeRun()
    shown = []
    for k, loss in enumerate([3.0, 2.0, 1.0]):
        run.batch_index = k + 1
        bar(run, loss)
        shown.append(bar.bar.item_show_func(bar.bar.current_item))
    bar.close()
    assert shown == ["loss 3.000", "loss 2.000", "loss 1.000"]


def test_write_errors_are_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(invoke("train", "default", *TINY, "--out", blocker / "run"), "Not a directory")
    assert_one_line_error(invoke("plot", tmp_path / "missing", "--out", blocker / "c.png"))


def test_export_never_overwrites_its_input_or_an_existing_file(trained, tmp_path):
    ckpt = trained / "checkpoint.npz"
    before = ckpt.read_bytes()
    assert_one_line_error(invoke("export", ckpt, ckpt), "is an input")
    assert_one_line_error(invoke("export", ckpt, ckpt, "--force"), "is an input")
    other = tmp_path / "precious.txt"
    other.write_text("keep me")
    assert_one_line_error(invoke("export", ckpt, other), "--force")
    assert ckpt.read_bytes() == before and other.read_text() == "keep me"
    assert invoke("export", ckpt, other, "--force").exit_code == 0
    assert other.read_bytes()[:4] != b"keep"


def test_plot_output_format_and_inputs(trained, tmp_path):
    pytest.importorskip("matplotlib")
    assert_one_line_error(invoke("plot", trained, "--out", tmp_path / "curves.txt"), ".png, .pdf or .svg")
    assert_one_line_error(invoke("plot", trained, "--out", trained / "metrics.jsonl"), "is an input")
    assert_one_line_error(invoke("plot", trained / "checkpoint.npz", "--out", tmp_path / "c.png"), "metrics log")
    assert invoke("plot", trained, "--out", tmp_path / "c.svg").exit_code == 0
    assert (tmp_path / "c.svg").read_bytes().lstrip().startswith(b"<?xml")


@pytest.mark.parametrize("content", [b"", b"Alice ", b"{}\n"])
def test_plot_of_a_log_with_nothing_to_draw_is_refused(tmp_path, content):
    pytest.importorskip("matplotlib")
    log = tmp_path / "notes.txt"
    log.write_bytes(content)
    assert_one_line_error(invoke("plot", log, "--out", tmp_path / "c.png"), "no training")
    assert not (tmp_path / "c.png").exists()


def test_an_output_named_with_a_trailing_slash_is_a_directory_on_every_surface(trained, tmp_path):
    ckpt = trained / "checkpoint.npz"
    for args in (["export", ckpt, f"{tmp_path}/new/"], ["calibrate", ckpt, f"{tmp_path}/new/", "--batches", "1"],
                 ["plot", trained, "--out", f"{tmp_path}/new/"]):
        assert_one_line_error(invoke(*args), "names a directory")
    assert list(tmp_path.iterdir()) == []


def test_sample_takes_a_prime_from_a_pipe_and_refuses_two_primes(trained, tmp_path):
    import threading
    fifo = tmp_path / "prime"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text("the ", encoding="utf-8"))
    writer.start()
    result = invoke("sample", trained / "checkpoint.npz", "--prime-file", fifo, "--length", "5")
    writer.join(timeout=30)
    assert result.exit_code == 0 and result.stdout.startswith("the "), result.output
    (tmp_path / "p.txt").write_text("a", encoding="utf-8")
    assert_one_line_error(invoke("sample", trained / "checkpoint.npz", "--prime", "b", "--prime-file",
                                 tmp_path / "p.txt"), "not both")


def test_a_training_text_file_must_be_a_regular_file(tmp_path):
    fifo = tmp_path / "text"
    os.mkfifo(fifo)
    assert_one_line_error(invoke("train", "text", "--file", fifo, *TINY, "--out", tmp_path / "run"),
                          "not a regular file")


def test_a_pipe_or_a_symlink_loop_in_place_of_a_file_is_one_line(trained, tmp_path):
    """Neither is read (a pipe with no writer would block, a device might never end) nor
    followed forever; as an output, a loop is refused like any other impossible place."""
    fifo, loop = tmp_path / "fifo.rbtw", tmp_path / "loop.rbtw"
    os.mkfifo(fifo)
    os.symlink(loop, loop)
    for path in (fifo, loop, "/dev/zero"):
        for args in (["info", path], ["eval", path], ["export", path, tmp_path / "x.rbtw"]):
            assert_one_line_error(invoke(*args))
    assert_one_line_error(invoke("plot", loop, "--out", tmp_path / "c.png"))
    ckpt = trained / "checkpoint.npz"
    for args in (["export", ckpt, loop], ["calibrate", ckpt, loop, "--batches", "1"], ["plot", trained, "--out", loop]):
        assert_one_line_error(invoke(*args))


def test_a_number_beyond_the_float_range_in_a_metrics_log_is_damage(trained, tmp_path):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    k = next(i for i, line in enumerate(lines) if '"event": "epoch"' in line)
    event = json.loads(lines[k])
    event["valid_bpc"] = 10 ** 400
    lines[k] = json.dumps(event)
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    pytest.importorskip("matplotlib")
    assert_one_line_error(invoke("plot", run, "--out", tmp_path / "c.png"), "valid_bpc")
    listing = invoke("runs", tmp_path)
    assert listing.exit_code == 0 and "damaged" in listing.output or "unreadable" in listing.output, listing.output


def test_reproduce_without_tasks_is_an_error(tmp_path):
    report = tmp_path / "REPRODUCTION.md"
    report.write_text("previous report")
    assert_one_line_error(invoke("reproduce", "--tasks", "", "--report", report, "--out", tmp_path), "already exists")
    assert_one_line_error(invoke("reproduce", "--tasks", "", "--report", report, "--out", tmp_path, "--force"),
                          "--tasks")
    assert report.read_text() == "previous report"


def test_ctrl_c_anywhere_in_a_command_is_one_line_and_status_130(monkeypatch):
    """A KeyboardInterrupt, or the SystemError a compiled kernel wraps it in, ends a command
    with "interrupted" and status 130, without a traceback."""
    import rbtw.cli.inference as cli

    def interrupted_kernel(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise SystemError("CPUDispatcher(<function _row_product>) returned a result with an exception set")

    for fake in (interrupted_kernel, lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt)):
        monkeypatch.setattr(cli, "_load", fake)
        result = CliRunner().invoke(main, ["info", "x.npz"])
        assert result.exit_code == 130 and result.stderr.strip() == "interrupted", result.stderr
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_run_directory_deleted_during_training(tmp_path, monkeypatch):
    import shutil

    from rbtw.cli.progress import EpochBar
    out = tmp_path / "run"
    original = EpochBar.__call__

    def delete_it(self, run, loss):
        shutil.rmtree(out, ignore_errors=True)
        original(self, run, loss)

    monkeypatch.setattr(EpochBar, "__call__", delete_it)
    result = invoke("train", "default", *TINY, "--out", out)
    assert result.exit_code == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "No such file or directory" in last, result.stderr


def test_no_library_warnings_reach_the_terminal(tmp_path):
    """The divergence example in a real process: numpy's overflow warnings stay hidden."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run([sys.executable, "-m", "rbtw.cli", "train", "default", *TINY, "--lr", "1e9",
                           "--out", str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "Warning" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: the run diverged")


@pytest.mark.slow
def test_demo_run_twice_keeps_its_runs_and_other_settings_need_force(tmp_path):
    out = tmp_path / "demo"
    first = invoke("demo", "--hidden", "4", "--epochs", "1", "--out", out)
    assert first.exit_code == 0, first.output
    assert "ternary" in first.stdout and "full precision" in first.stdout
    checkpoint = out / "ternary" / "checkpoint.npz"
    before = checkpoint.stat().st_mtime_ns
    again = invoke("demo", "--hidden", "4", "--epochs", "1", "--out", out)
    assert again.exit_code == 0 and "have finished" in again.stderr
    assert again.stdout.splitlines()[1:] == first.stdout.splitlines()[1:]      # the same results, reported
    assert checkpoint.stat().st_mtime_ns == before                            # nothing retrained
    assert_one_line_error(invoke("demo", "--hidden", "5", "--epochs", "1", "--out", out), "--force")
    assert checkpoint.stat().st_mtime_ns == before
    (out / "ternary" / "config.json").write_text("[1]")     # only the checkpoint's own copy counts
    assert invoke("demo", "--hidden", "4", "--epochs", "1", "--out", out).exit_code == 0
    assert checkpoint.stat().st_mtime_ns == before
    checkpoint.write_bytes(checkpoint.read_bytes()[:-100])   # a damaged run is replaced only with --force
    assert_one_line_error(invoke("demo", "--hidden", "4", "--epochs", "1", "--out", out), "--force")


def test_train_names_best_npz_when_validation_was_better_before_the_last_epoch(tmp_path):
    """best.npz holds the epoch of the lowest validation BPC; `rbtw train` names it exactly when
    that epoch is not the last.  High rates make validation worse after epoch 1 — which rate does
    (and which one diverges instead) depends on the machine's floating point, so a few are tried
    until one names it."""
    named = False
    for lr in (0.3, 0.6, 0.8, 1.0):
        out = tmp_path / f"lr{lr}"
        result = invoke("train", "default", "--hidden", 12, "--seq-len", 20, "--batch", 8, "--epochs", 3,
                        "--max-batches", 4, "--eval-max-batches", 2, "--lr", lr, "--out", out)
        if result.exit_code == 2 and "the run diverged" in result.stderr:
            continue                                # too high a rate on this machine
        assert result.exit_code == 0, result.output
        valid = [e["valid_bpc"] for e in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
                 if e["event"] == "epoch"]
        best = load_checkpoint(out / "best.npz").meta["epoch"]
        assert best == int(np.argmin(valid)) + 1, valid
        line = result.stderr.strip().splitlines()[-1]
        if best < 3:
            assert line.startswith(f"validation bpc was best after epoch {best} (") and line.endswith(
                f"that model is {out / 'best.npz'}")
            named = True
            break
        assert "was best after epoch" not in result.stderr
    assert named, "no rate made validation worse after an earlier epoch"


