"""The command line, through click's CliRunner: working commands and one-line errors."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

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
    assert "ternary stochastic" in result.stdout and "1 bits/weight" in result.stdout

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
    for name, content in [("truncated.npz", good[: len(good) // 3]), ("garbage.npz", b"\x00" * 100)]:
        (tmp_path / name).write_bytes(content)
        for command in ("eval", "info", "sample"):
            assert_one_line_error(invoke(command, tmp_path / name), "not a readable rbtw checkpoint")
    ckpt = load_checkpoint(trained / "checkpoint.npz")
    ckpt.params["rnn0.W_h"] = np.zeros((3, 3), dtype=np.float32)
    save_checkpoint(tmp_path / "mismatched.npz", ckpt.meta, ckpt.params, ckpt.stats, ckpt.optimizer, ckpt.extra)
    assert_one_line_error(invoke("eval", tmp_path / "mismatched.npz"), "rnn0.W_h")
    assert_one_line_error(invoke("eval", tmp_path / "nothing.npz"), "no such checkpoint")


def test_prime_errors(trained, tmp_path):
    ckpt = trained / "checkpoint.npz"
    assert_one_line_error(invoke("sample", ckpt, "--prime", "Alice \u2603"), "not in the model's vocabulary")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9".encode("latin-1"))
    assert_one_line_error(invoke("sample", ckpt, "--prime-file", bad), "not UTF-8")


def test_imported_text_that_is_not_utf8(tmp_path):
    bad = tmp_path / "warpeace_input.txt"
    bad.write_bytes(b"\xff\xfe" + b"x" * 100)
    assert_one_line_error(invoke("data", "import", "warpeace", bad, "--data-dir", tmp_path / "cache"))
    assert not any((tmp_path / "cache").rglob("warpeace_input.txt"))
