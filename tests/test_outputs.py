"""Outputs are safe on every surface: one rule (rbtw.fileio.check_output) for every file a user
names, whichever command or function writes it.

A class of output paths — a fresh name in an existing directory, an existing file, an input of
the command (as given, through ``..``, through a symbolic or a hard link), a directory, a name
under a missing directory or under a regular file, a read-only place (/sys, /proc) — goes
through every write surface: ``rbtw export`` and ``Model.export``, ``rbtw calibrate`` and
``Model.calibrate``, ``rbtw plot``, ``rbtw reproduce --report``.  Only a fresh name (or an existing file with force) is written,
and never a file of the run whose model is read (its best checkpoint, configuration, log), force or not;
everything else is one line of error, and nothing else on disk changes: no input, no other
file, no directory is created, no temporary file is left.  A full disk (RLIMIT_FSIZE, which
fails writes with EFBIG as a full disk does with ENOSPC) is one line too and keeps the old file.
"""

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rbtw
from rbtw.cli import main
from rbtw.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--hidden", "8", "--epochs", "1", "--max-batches", "2", "--eval-max-batches", "1", "--seq-len", "10",
        "--batch", "4"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    run = root / "run"
    result = CliRunner().invoke(main, ["train", "default", *TINY, "--quant", "binary", "--out", str(run)])
    assert result.exit_code == 0, result.output
    (root / "existing.rbtw").write_bytes(b"precious")
    (root / "a-file").write_bytes(b"not a directory")
    os.symlink(run / "checkpoint.npz", root / "link-to-checkpoint.rbtw")
    os.link(run / "checkpoint.npz", root / "hard-link.rbtw")
    return root


def snapshot(root):
    return {p: (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*")) if not p.is_symlink()}


PATHS = ["fresh.rbtw", "existing.rbtw", "run/checkpoint.npz", "run/../run/checkpoint.npz", "link-to-checkpoint.rbtw",
         "hard-link.rbtw", "run", "missing/deeper/x.rbtw", "a-file/x.rbtw", "/sys/rbtw-outputs.rbtw",
         "/sys/rbtw-missing/x.rbtw", "/proc/rbtw-outputs.rbtw", "run/metrics.jsonl", "run/best.npz",
         "run/config.json", "run/calibrated.npz"]


def same(a, b):
    try:
        return a.resolve() == b.resolve() or (a.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def refused(target, inputs, force):
    """The rule, written out: an input, a directory, no parent directory, a read-only place,
    or an existing file without force."""
    return (any(same(target, i) for i in inputs) or target.is_dir() or not target.parent.is_dir()
            or str(target).startswith(("/sys/", "/proc/")) or (target.exists() and not force))


def export_cli(world, out, force):
    return CliRunner().invoke(main, ["export", str(world / "run" / "checkpoint.npz"), str(out)]
                              + (["--force"] if force else []))


def export_api(world, out, force):
    try:
        rbtw.load(world / "run" / "checkpoint.npz").export(out, force=force)
    except UserError as e:
        assert "\n" not in str(e)
        return str(e)
    return None


CALIBRATION = ["--batches", "2", "--valid-batches", "1"]


def calibrate_cli(world, out, force):
    return CliRunner().invoke(main, ["calibrate", str(world / "run" / "checkpoint.npz"), str(out), *CALIBRATION]
                              + (["--force"] if force else []))


def calibrate_api(world, out, force):
    try:
        rbtw.load(world / "run" / "checkpoint.npz").calibrate(out, batches=2, valid_batches=1, force=force)
    except UserError as e:
        assert "\n" not in str(e)
        return str(e)
    return None


def plot_cli(world, out, force):
    return CliRunner().invoke(main, ["plot", str(world / "run"), "--out", str(out)] + (["--force"] if force else []))


def report_cli(world, out, force):
    return CliRunner().invoke(main, ["reproduce", "--tasks", "ptb_char", "--report", str(out), "--out",
                                     str(world / "repro"), "--data-dir", str(world / "no-data")]
                              + (["--force"] if force else []))


RUN_FILES = ["run/checkpoint.npz", "run/best.npz", "run/config.json", "run/metrics.jsonl"]

# surface -> (call, the target it writes for a drawn path, the files it never writes over)
SURFACES = {
    "export": (export_cli, lambda p: p, RUN_FILES),
    "Model.export": (export_api, lambda p: p, RUN_FILES),
    "calibrate": (calibrate_cli, lambda p: p, RUN_FILES),
    "Model.calibrate": (calibrate_api, lambda p: p, RUN_FILES),
    "plot": (plot_cli, lambda p: p.with_suffix(".png") if p.suffix != ".jsonl" else p, ["run/metrics.jsonl"]),
    "reproduce --report": (report_cli, lambda p: p, []),
}


def outcome(result):
    """None (written) or the one-line error message."""
    if result is None or isinstance(result, str):
        return result
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if result.exit_code == 0:
        return None
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and lines and lines[-1].startswith("error: "), result.stderr
    assert sum(line.startswith("error: ") for line in lines) == 1, result.stderr
    return lines[-1]


@settings(max_examples=80, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(surface=st.sampled_from(sorted(SURFACES)), name=st.sampled_from(PATHS), force=st.booleans())
def test_every_write_surface_writes_only_where_it_may(world, surface, name, force):
    call, target_of, inputs = SURFACES[surface]
    if surface == "plot":
        pytest.importorskip("matplotlib")
    target = target_of(Path(name) if name.startswith("/") else world / name)
    expect_refusal = refused(target, [world / i for i in inputs], force)
    before = snapshot(world)
    message = outcome(call(world, target, force))
    if surface == "reproduce --report" and not expect_refusal:
        assert message is not None and "rbtw data" in message, message   # no data: it stops there
        message = None
    elif expect_refusal:
        assert message is not None and (target.name in message or target.parent.name in message), message
    else:
        assert message is None, message
        assert surface == "reproduce --report" or target.stat().st_size > 0
        if target.exists() and target not in before:
            target.unlink()
        elif target in before:
            target.write_bytes(before[target])
    assert snapshot(world) == before, sorted(map(str, set(snapshot(world)) ^ set(before)))
    assert not list(world.rglob("*.tmp")) and not (world / "missing").exists()


def test_export_of_its_own_checkpoint_is_refused_on_every_surface(world):
    ckpt = world / "run" / "checkpoint.npz"
    before = ckpt.read_bytes()
    model = rbtw.load(ckpt)
    for force in (False, True):
        with pytest.raises(UserError, match="is an input"):
            model.export(ckpt, force=force)
    exported = world / "own.rbtw"
    model.export(exported)
    with pytest.raises(UserError, match="is an input"):
        rbtw.load(exported).export(exported, force=True)
    with pytest.raises(UserError, match="already exists"):
        model.export(exported)
    assert ckpt.read_bytes() == before
    exported.unlink()


@pytest.mark.parametrize("surface", ["export", "Model.export", "calibrate", "Model.calibrate"])
@pytest.mark.parametrize("name", ["best.npz", "config.json", "metrics.jsonl", "conventions.json"])
def test_a_runs_own_files_are_never_outputs_even_with_force(world, surface, name):
    call, _, _ = SURFACES[surface]
    target = world / "run" / name
    before = snapshot(world)
    message = outcome(call(world, target, True))
    assert message is not None and "is an input" in message, message
    assert snapshot(world) == before


MODEL_SURFACES = {
    "export": lambda model, out: CliRunner().invoke(main, ["export", str(model), str(out), "--force"]),
    "calibrate": lambda model, out: CliRunner().invoke(main, ["calibrate", str(model), str(out), *CALIBRATION,
                                                               "--force"]),
    "Model.export": lambda model, out: rbtw.load(model).export(out, force=True),
    "Model.calibrate": lambda model, out: rbtw.load(model).calibrate(out, batches=2, valid_batches=1, force=True),
}


def _outcome_of(call, model, out):
    try:
        return outcome(call(model, out))
    except UserError as e:
        assert "\n" not in str(e)
        return str(e)


@pytest.mark.parametrize("surface", sorted(MODEL_SURFACES))
@pytest.mark.parametrize("name", ["best.npz", "config.json", "metrics.jsonl"])
def test_a_runs_own_files_are_never_outputs_through_a_link_to_its_checkpoint(world, surface, name):
    # the model is opened as world/link-to-checkpoint.rbtw, a symbolic link outside the run
    target = world / "run" / name
    before = snapshot(world)
    message = _outcome_of(MODEL_SURFACES[surface], world / "link-to-checkpoint.rbtw", target)
    assert message is not None and "is an input" in message, message
    assert snapshot(world) == before


@pytest.mark.parametrize("surface", sorted(MODEL_SURFACES))
def test_a_checkpoint_whose_configuration_is_wrong_is_refused_in_one_line(world, tmp_path, surface):
    from rbtw.checkpoint import load_checkpoint, save_checkpoint
    ckpt = load_checkpoint(world / "run" / "checkpoint.npz")
    odd = tmp_path / "odd.npz"
    meta = dict(ckpt.meta, config=dict(ckpt.meta["config"], task="text", text_file=5))
    save_checkpoint(odd, meta, ckpt.params, ckpt.stats, ckpt.optimizer, ckpt.extra)
    message = _outcome_of(MODEL_SURFACES[surface], odd, tmp_path / "out.npz")
    assert message is not None and "text_file" in message, message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.npz"]


def test_a_text_runs_training_file_is_never_an_output(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "text", "--file", str(text), *TINY, "--out", str(run)])
    assert result.exit_code == 0, result.output
    before = text.read_bytes()
    for args in (["export", str(run / "checkpoint.npz"), str(text), "--force"],
                 ["calibrate", str(run / "checkpoint.npz"), str(text), *CALIBRATION, "--force"]):
        message = outcome(CliRunner().invoke(main, args))
        assert message is not None and "is an input" in message, message
    with pytest.raises(UserError, match="is an input"):
        rbtw.load(run / "checkpoint.npz").calibrate(text, batches=2, valid_batches=1, force=True)
    assert text.read_bytes() == before


# ---------------------------------------------------------------------------------------------
# a full disk


def _limited(limit):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _run_limited(args, limit, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, *args], env=env, preexec_fn=_limited(limit), capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def _assert_full_disk_line(proc):
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "File too large" in last and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.slow
def test_full_disk_keeps_the_old_file_on_every_surface(world, tmp_path):
    old = b"the old file"
    ckpt = world / "run" / "checkpoint.npz"
    cases = {
        "export": (["-m", "rbtw.cli", "export", str(ckpt), str(tmp_path / "m.rbtw"), "--force"], tmp_path / "m.rbtw"),
        "plot": (["-m", "rbtw.cli", "plot", str(world / "run"), "--out", str(tmp_path / "c.png"), "--force"],
                 tmp_path / "c.png"),
        "calibrate": (["-m", "rbtw.cli", "calibrate", str(ckpt), str(tmp_path / "cal.npz"), *CALIBRATION, "--force"],
                      tmp_path / "cal.npz"),
        "Model.export": (["-c", "import rbtw, sys\nfrom rbtw.errors import run_script\n"
                          f"run_script(lambda: rbtw.load({str(ckpt)!r}).export({str(tmp_path / 'api.rbtw')!r}, force=True))"],
                         tmp_path / "api.rbtw"),
    }
    for name, (args, target) in cases.items():
        if name == "plot":
            pytest.importorskip("matplotlib")
        target.write_bytes(old)
        proc = _run_limited(args, 600)
        _assert_full_disk_line(proc)
        assert target.read_bytes() == old, name
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")], name


@pytest.mark.slow
def test_full_disk_keeps_the_old_sweep_summary(tmp_path):
    pytest.importorskip("dask")
    from rbtw import sweep
    spec = tmp_path / "s.toml"
    spec.write_text('task = "default"\nseeds = [0]\n[options]\nhidden = 8\n[grid]\nfp = { quant = "none" }\n')
    out = tmp_path / "study"
    sweep.prepare_out(sweep.load_sweep(spec), out)
    for name in ("summary.json", "summary.md"):
        (out / name).write_text("the old summary")
    proc = _run_limited(["-m", "rbtw.cli", "sweep", str(out), "--summary"], 10)
    _assert_full_disk_line(proc)
    assert (out / "summary.json").read_text() == "the old summary"
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


def test_a_run_directory_on_a_read_only_file_system_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["train", "default", *TINY, "--out", "/sys/rbtw-run"])
    assert outcome(result) is not None and "/sys/rbtw-run" in result.stderr
    with pytest.raises(UserError, match="/sys/rbtw-run"):
        rbtw.fit(task="default", hidden=8, out="/sys/rbtw-run", log=lambda line: None)
