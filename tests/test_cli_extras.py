"""What users expect of a CLI: progress lines off a terminal, ``rbtw runs``, the README's Python
block run twice, and the embedded corpus in a non-editable install."""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import rbtw
from rbtw.cli import main, progress

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--hidden", "8", "--epochs", "1", "--max-batches", "3", "--eval-max-batches", "2", "--seq-len", "10",
        "--batch", "4"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# --- progress lines when stderr is not a terminal ----------------------------------------------

@pytest.fixture
def every_call(monkeypatch):
    monkeypatch.setattr(progress, "PLAIN_SECONDS", 0.0)


def test_train_and_eval_print_plain_progress_lines_off_a_terminal(tmp_path, every_call):
    result = invoke("train", "default", *TINY, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("epoch 1/1: ")]
    assert "epoch 1/1: 1/3 minibatches (33 %), loss " in lines[0]
    assert any(line.startswith("epoch 1/1: 3/3 minibatches (100 %)") for line in lines)
    assert "\r" not in result.stderr and "\x1b" not in result.stderr          # no bar redrawing
    result = invoke("eval", tmp_path / "run" / "checkpoint.npz", "--max-batches", 2)
    assert result.exit_code == 0 and "evaluating test: 2/2 batches (100 %)" in result.stderr


def test_quick_work_prints_no_progress_line(tmp_path):
    result = invoke("train", "default", *TINY, "--out", tmp_path / "run")
    assert result.exit_code == 0 and "minibatches (" not in result.stderr


def test_every_progress_helper_prints_lines_off_a_terminal(capsys, every_call):
    bars = progress.ByteBars()
    for done in (0, 2_500_000, 5_000_000):
        bars("ptb.train.txt", done, 5_000_000)
    with progress.Progress("epochs") as demo:
        demo(1, 4)
        demo(4, 4)
    tick = progress.batch_bar("emulating", 3)
    for _ in range(3):
        tick()
    err = capsys.readouterr().err
    assert "ptb.train.txt: 2.5/5.0 MB (50 %)" in err and "ptb.train.txt: 5.0/5.0 MB (100 %)" in err
    assert "epochs: 1/4 (25 %)" in err and "epochs: 4/4 (100 %)" in err
    from rbtw.cli.progress import Lines
    lines = Lines("epoch 2/3", "minibatches")
    lines.start -= 30                                    # 30 s into a quarter of the work
    lines(25, 100, "loss 1.234")
    assert capsys.readouterr().err.strip() == "epoch 2/3: 25/100 minibatches (25 %), loss 1.234, 30 s, about 90 s left"
    assert "emulating: 3/3 batches (100 %)" in err



def test_sweep_progress_counts_only_runs_that_ended(capsys):
    """An interrupted run (Ctrl-C, SIGTERM) is still to train: it must not read as done."""
    with progress.RunProgress("runs", 3) as bar:
        bar.advance("done")
        bar.advance("interrupted")
        bar.advance("failed")
    assert capsys.readouterr().err.splitlines() == ["runs: 1/3 ended", "runs: 2/3 ended (1 failed)"]

# --- rbtw runs ----------------------------------------------------------------------------------

def test_runs_lists_finished_unfinished_and_failed_runs(tmp_path):
    root = tmp_path / "runs"
    assert invoke("train", "default", *TINY, "--quant", "ternary", "--stochastic", "--out", root / "done").exit_code == 0
    assert invoke("train", "default", *TINY, "--lr", "1e9", "--out", root / "deeper" / "failed").exit_code == 2

    def stop(run, loss):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rbtw.fit(task="default", hidden=8, seq_len=10, batch=4, epochs=2, max_batches=3, cell="gru",
                 out=root / "deeper" / "cut", log=lambda line: None, progress=stop)
    (root / "not-a-run").mkdir()
    result = invoke("runs", root)
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert sorted(rows) == ["deeper/cut", "deeper/failed", "done"]
    assert re.search(r"done\s+default\s+lstm ternary stoch\s+finished\s+1/1\s+test bpc \d\.\d{4}", rows["done"])
    assert re.search(r"deeper/failed\s+default\s+lstm fp\s+failed\s+1/1", rows["deeper/failed"])
    assert re.search(r"deeper/cut\s+default\s+gru fp\s+unfinished\s+0/2", rows["deeper/cut"])
    assert result.stdout.splitlines()[0].split() == ["run", "task", "variant", "status", "epochs", "metric"]


def test_runs_of_a_missing_or_empty_directory(tmp_path):
    result = invoke("runs", tmp_path / "nothing")
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and "no such directory" in result.stderr
    assert "no run directories" in invoke("runs", tmp_path).stdout


# --- the README's Python block, twice -------------------------------------------------------

def test_readme_python_block_runs_twice_in_a_row(tmp_path, monkeypatch, capsys):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text.split("## Python API", 1)[1], re.S).group(1)
    monkeypatch.chdir(tmp_path)
    outputs = []
    for _ in range(2):
        exec(compile(code, "README.md", "exec"), {})
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]                  # the same seed, the same run, the same figures


# --- packaging ------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_plain_install_carries_the_embedded_corpus(tmp_path):
    """``pip install .`` (not editable) builds a wheel: the corpus must be inside it, and an
    install from it must find the corpus with the source checkout out of sight."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist", ".*")
    for name in ("rbtw", "data"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "dist"), "-q"], capture_output=True, text=True, env=env, timeout=600)
    assert build.returncode == 0, build.stderr        # the test extra brings a new enough setuptools
    wheel, = (tmp_path / "dist").glob("rbtw-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "rbtw/data/carroll-alice.txt" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)       # the licence travels too
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel), "-q"],
                   check=True, capture_output=True, env=env, timeout=600)
    listing = subprocess.run([sys.executable, "-m", "rbtw.cli", "data", "list", "--data-dir", str(tmp_path / "c")],
                             capture_output=True, text=True, cwd=tmp_path, env=dict(env, PYTHONPATH=str(target)),
                             timeout=300)
    assert listing.returncode == 0, listing.stderr
    default = next(line for line in listing.stdout.splitlines() if line.startswith("default"))
    assert "embedded" in default and str(target / "rbtw" / "data" / "carroll-alice.txt") in default


# --- a closed pipe ---------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["info", "--system"], ["data", "list"],
                                  ["train", "ptb_char", "--show-config"], ["runs", "."]])
def test_a_reader_that_closed_the_pipe_ends_the_command_quietly(args, tmp_path):
    """``rbtw ... | head``: the reader has what it wanted; status 0 and nothing on stderr.  The
    pipe's read end is closed before the command starts, so its first write meets EPIPE."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-c", "from rbtw.cli import main; main()", *args], stdout=write,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path, timeout=300,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (0, "")


def test_a_broken_pipe_elsewhere_is_an_error_not_a_quiet_end(monkeypatch):
    """Only a closed stdout ends quietly: a BrokenPipeError from anything else (a socket, a
    child's pipe) is reported like any other OS error, status 2."""
    import rbtw.data

    def broken(*args, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")
    monkeypatch.setattr(rbtw.data, "dataset_rows", broken)
    result = invoke("data", "list")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "Broken pipe" in result.stderr


# --- counts in report lines: "1 epoch", "1 bit/weight" -------------------------------------------

def test_info_lines_say_one_epoch_one_minibatch_and_one_bit_per_weight():
    import numpy as np
    sys.path.insert(0, str(ROOT / "tests"))
    from randmodel import random_model
    from rbtw.summary import count, describe, describe_calibration
    meta, params, _ = random_model(np.random.default_rng(0), quant="ternary")
    lines = describe(dict(meta, epoch=1, step=1), params)
    assert "trained 1 epoch, 1 minibatch" in lines[0], lines[0]
    (one_bit,) = [line for line in lines if line.lstrip().startswith("1 ")]
    assert one_bit.startswith("   1 bit/weight ") and "bits/weight" not in one_bit
    widths = {line.index("KiB") for line in lines if "/weight" in line}
    assert len(widths) == 1                               # the KiB column stays aligned
    assert "trained 3 epochs, 1,200 minibatches" in describe(dict(meta, epoch=3, step=1200), params)[0]
    report = {"statistics": True, "batches": 1, "tried": [{"threshold": None, "valid": 1.0}], "metric": "bpc",
              "uncalibrated": 1.5, "calibrated": 1.4, "threshold": None}
    assert "re-estimated over 1 training minibatch:" in describe_calibration(report)
    assert (count(1, "epoch"), count(0, "epoch"), count(2, "minibatch", "minibatches")) == \
        ("1 epoch", "0 epochs", "2 minibatches")


# --- a refusal names the override of the surface it is made on ---------------------------------

def test_an_existing_output_is_refused_naming_the_cli_option_on_the_cli(tmp_path):
    run = tmp_path / "run"
    trained = invoke("train", "default", "--hidden", "8", "--epochs", "1", "--max-batches", "2", "--eval-max-batches",
                     "1", "--seq-len", "10", "--batch", "4", "--out", run)
    assert trained.exit_code == 0, trained.output
    assert "first 1 test minibatch)" in trained.stdout, trained.stdout          # not "1 test minibatches"
    taken = tmp_path / "taken.rbtw"
    taken.write_bytes(b"")
    for command in ("export", "calibrate"):
        result = invoke(command, run / "checkpoint.npz", taken)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
        assert "already exists: pass --force to replace it" in result.stderr, result.stderr
        assert "force=True" not in result.stderr
    assert taken.read_bytes() == b""


def test_check_output_names_the_override_its_caller_gives():
    from rbtw import fileio
    from rbtw.cli import app
    from rbtw.errors import UserError
    path = Path(__file__)                             # exists
    messages = {}
    for name, call in [("api", lambda: fileio.check_output(path, force_hint=fileio.FORCE_KEYWORD)),
                       ("cli", lambda: app.check_output(path)),
                       ("either", lambda: fileio.check_output(path, [], False, "file"))]:
        with pytest.raises(UserError) as e:
            call()
        messages[name] = str(e.value)
    assert messages["api"].endswith("already exists: pass force=True to replace it")
    assert messages["cli"].endswith("already exists: pass --force to replace it")
    assert messages["either"].endswith("already exists: pass --force (force=True) to replace it")
    assert app.check_output(path, force=True) == path
