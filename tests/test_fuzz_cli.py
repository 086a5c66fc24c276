"""The command line under careless input, as a property.

Hypothesis draws a command and a set of its options from values a careless user might type:
out-of-domain and extreme numbers, non-finite floats, unknown choices, and paths that are
missing, directories, under a regular file, on a read-only file system (/sys), damaged copies
of real checkpoints, exports and logs, or inputs of the command itself.  Every invocation must
end with exit status 0, or with a non-zero status whose message is one ``error: ...`` line and
no traceback; and no file that existed before may change unless changing it is the
command's purpose (``export --force`` onto an existing file, ``data import`` that succeeds).

Training commands get a cap on minibatches appended (the last value of an option wins) so that
an example costs a fraction of a second; the fuzzed values still reach every option first.
Derandomised: the same examples on every run.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rbtw.checkpoint import load_checkpoint
from rbtw.cli import main

TINY = ["--hidden", "12", "--epochs", "1", "--max-batches", "2", "--eval-max-batches", "2", "--seq-len", "20",
        "--batch", "8"]
SMALL = ["--hidden", "8", "--seq-len", "10", "--batch", "4"]      # before the fuzzed options: they win
CAP = ["--max-batches", "2", "--eval-max-batches", "2", "--epochs", "1"]

# (plausible values, careless ones): a careless value is drawn a quarter of the time
INTS = (["1", "2", "3", "8", "16"], ["-1", "0", "1000000000", str(2 ** 70), "x", "1.5", ""])
FLOATS = (["0.001", "0.1", "0.5", "2"], ["nan", "inf", "-inf", "-1", "0", "1e-9", "1e9", "x"])
STRINGS = (["Alice", "the_", "x"], ["", ",", "ptb_char", "\u2603", "nosuch,mnist", "-"])


def mixed(pools):
    plausible, careless = pools
    return st.integers(0, 3).flatmap(lambda k: st.sampled_from(careless if k == 0 else plausible))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Precious inputs (never to change) and a scratch area for outputs."""
    root = tmp_path_factory.mktemp("fuzz")
    precious = root / "precious"
    precious.mkdir()
    runner = CliRunner()
    run = precious / "run"
    result = runner.invoke(main, ["train", "default", *TINY, "--quant", "ternary", "--stochastic", "--out", str(run)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["export", str(run / "checkpoint.npz"), str(precious / "model.rbtw")])
    assert result.exit_code == 0, result.output
    good = (run / "checkpoint.npz").read_bytes()
    (precious / "truncated.npz").write_bytes(good[: len(good) // 2])
    export = (precious / "model.rbtw").read_bytes()
    (precious / "truncated.rbtw").write_bytes(export[: len(export) - 100])
    flipped = bytearray(export)
    flipped[-50] ^= 1
    (precious / "flipped.rbtw").write_bytes(bytes(flipped))
    (precious / "garbage.bin").write_bytes(os.urandom(3000))
    (precious / "prime.txt").write_text("Alice was ", encoding="utf-8")
    (precious / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (precious / "empty.txt").write_bytes(b"")
    (precious / "bad.jsonl").write_text('{"event": "epoch"}\nnot json\n')
    (precious / "text8.txt").write_bytes(b"anarchism originated as a term of abuse " * 50)
    links = root / "links"                      # outside precious: a loop is never snapshotted
    links.mkdir()
    os.symlink(links / "loop.rbtw", links / "loop.rbtw")
    cache = precious / "cache"
    assert runner.invoke(main, ["data", "import", "text8", str(precious / "text8.txt"),
                                "--data-dir", str(cache)]).exit_code == 0
    return root


def snapshot(directory):
    """{path: bytes} of every file and {path: None} of every directory below ``directory``: a
    command that fails must not leave even an empty directory behind."""
    return {p: p.read_bytes() if p.is_file() else None for p in sorted(Path(directory).rglob("*"))}


def restore(directory, saved):
    """Put ``directory`` back as ``saved`` (after a command changed it on purpose)."""
    for p in sorted(Path(directory).rglob("*"), reverse=True):
        if p.is_file() and p not in saved:
            p.unlink()
        elif p.is_dir() and p not in saved:
            shutil.rmtree(p)
    for p, content in saved.items():
        if content is None:
            p.mkdir(parents=True, exist_ok=True)
        elif not p.is_file() or p.read_bytes() != content:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content)


def input_paths(world):
    """(good inputs, damaged / wrong / impossible ones)."""
    p = world / "precious"
    return ([p / "run" / "checkpoint.npz", p / "run", p / "run" / "metrics.jsonl", p / "model.rbtw",
             p / "prime.txt", p / "text8.txt"],
            [p / "truncated.npz", p / "truncated.rbtw", p / "flipped.rbtw", p / "garbage.bin",
             p / "latin1.txt", p / "empty.txt", p / "bad.jsonl", p, p / "no-such-file",
             p / "prime.txt" / "below-a-file", Path("/sys/rbtw-fuzz"), world / "links" / "loop.rbtw"])


def output_paths(world, scratch):
    """(fresh outputs, existing files / inputs / impossible places)."""
    p = world / "precious"
    return ([scratch / "out.png", scratch / "out.rbtw", scratch / "new" / "deeper"],
            [scratch / "out.txt", p / "run" / "checkpoint.npz", p / "prime.txt", p,
             p / "prime.txt" / "below-a-file", Path("/sys/rbtw-fuzz/out"), Path("/proc/rbtw-fuzz/out"),
             world / "links" / "loop.rbtw"])


def option_values(param, paths):
    """A strategy of command-line words for one click parameter."""
    import click
    t = param.type
    if isinstance(param, click.Option) and param.is_flag:
        return st.just([param.opts[0]]) if not param.secondary_opts else \
            st.sampled_from([[param.opts[0]], [param.secondary_opts[0]]])
    if isinstance(t, click.Choice):
        values = mixed((list(t.choices), ["bogus", ""]))
    elif isinstance(t, (click.IntRange,)) or t is click.INT:
        values = mixed(INTS)
    elif isinstance(t, click.FloatRange) or t is click.FLOAT:
        values = mixed(FLOATS)
    elif isinstance(t, click.Path):
        values = mixed(tuple([str(x) for x in pool] for pool in paths))
    else:
        values = mixed(STRINGS)
    if isinstance(param, click.Argument):
        return values.map(lambda v: [v])
    return values.map(lambda v: [param.opts[0], v])


# command path -> (words appended after the fuzzed ones, option names left out)
COMMANDS = {
    ("train",): (CAP, {"--data-dir"}),
    ("eval",): (["--max-batches", "2"], set()),
    ("sample",): (["--length", "20"], set()),
    ("info",): ([], set()),
    ("export",): ([], set()),
    ("emulate",): (["--steps", "40"], {"--compare"}),
    ("plot",): ([], set()),
    ("reproduce",): ([], {"--budget", "--workers"}),
    ("sweep",): ([], {"--workers"}),               # no drawn input is a sweep file: no cluster starts
    ("demo",): (["--epochs", "0"], set()),       # only its option checks: a demo trains for minutes
    ("runs",): ([], set()),
    ("data", "list"): ([], set()),
    ("data", "download"): (["--mirror", "http://127.0.0.1:1"], {"--mirror"}),
    ("data", "import"): ([], set()),
}


def command_of(names):
    cmd = main
    for name in names:
        cmd = cmd.commands[name]
    return cmd


@st.composite
def invocations(draw, world):
    scratch = Path(tempfile.mkdtemp(dir=world))
    names = draw(st.sampled_from(sorted(COMMANDS) + [("train",)] * 4 + [("eval",), ("sample",), ("export",)]))
    tail, skip = COMMANDS[names]
    cmd = command_of(names)
    words = list(names)
    import click
    prefix = SMALL if names == ("train",) else []
    arguments = [p for p in cmd.params if isinstance(p, click.Argument)]
    options = [p for p in cmd.params if isinstance(p, click.Option) and p.name != "help" and p.opts[0] not in skip]
    chosen = draw(st.lists(st.sampled_from(options), max_size=4, unique_by=lambda p: p.name)) if options else []
    for param in arguments + chosen:
        is_output = param.name in ("out", "out_dir", "report_path")
        paths = output_paths(world, scratch) if is_output else input_paths(world)
        if names == ("data", "import") and param.name == "path":
            paths = input_paths(world)
        strategy = option_values(param, paths)
        if isinstance(param, click.Argument):
            if names[-1] in ("train",) and param.name == "task":
                strategy = mixed(([["default"]], [["mnist"], ["ptb_char"], ["text"], ["nosuch"]]))
            if names == ("data", "import") and param.name == "name":
                strategy = st.sampled_from([["text8"], ["linux"], ["mnist"], ["nosuch"]])
        words += draw(strategy)
        if isinstance(param, click.Argument) and names == ("train",):
            words += prefix
    if names == ("reproduce",):
        words += ["--data-dir", str(scratch / "empty-cache")]   # fails before any training
    if names == ("train",) and "--out" not in words:
        words += ["--out", str(scratch / "run")]
    return names, words + tail, scratch


def check_invocation(world, names, words, scratch):
    precious = world / "precious"
    before = snapshot(precious)
    result = CliRunner().invoke(main, words)
    event(f"{' '.join(names)}: exit {result.exit_code}")
    err = result.stderr
    assert "Traceback" not in result.output and "Traceback" not in err, (words, err)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{words}: {type(result.exception).__name__}: {result.exception}")
    if result.exit_code != 0:
        lines = [line for line in err.strip().splitlines() if line.strip()]
        assert lines and lines[-1].startswith("error: "), (words, err)
        assert sum(line.startswith("error: ") for line in lines) == 1, (words, err)
    after = snapshot(precious)
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    allowed = set()
    if names == ("export",) and "--force" in words and result.exit_code == 0:
        allowed = {Path(words[2])}
    if names in {("data", "import"), ("data", "list")} and "--data-dir" in words:
        data_dir = Path(words[words.index("--data-dir") + 1])
        if names == ("data", "import") and result.exit_code == 0:     # the cache is its target
            allowed = {p for p in changed if data_dir in p.parents}
        if names == ("data", "list") and "--recheck" in words:        # removes damaged prepared data
            allowed = {p for p in changed if data_dir in p.parents and p.parent.name == "prepared"}
    assert changed <= allowed, (words, sorted(map(str, changed - allowed)))
    if changed:
        restore(precious, before)
    shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(autouse=True)
def isolated(world, monkeypatch):
    """Relative default paths (runs/...) and the default data cache go to scratch."""
    monkeypatch.chdir(world)
    monkeypatch.setenv("RBTW_DATA", str(world / "default-cache"))


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_any_command_line_ends_cleanly_and_keeps_other_files(world, data):
    names, words, scratch = data.draw(invocations(world))
    check_invocation(world, names, words, scratch)


def test_full_disk_is_one_line_and_keeps_the_old_checkpoint(world, tmp_path):
    """Writes past RLIMIT_FSIZE fail with EFBIG, as on a full disk (no privileges needed)."""
    import signal
    import subprocess
    import sys
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "metrics.jsonl", "checkpoint.npz"):   # the run's own files: the fuzz
        shutil.copy2(world / "precious" / "run" / name, run / name)  # above may have added others
    before = (run / "checkpoint.npz").read_bytes()

    def limit():
        import resource
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) // 2, len(before) // 2))

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    for extra in (["--resume", "--epochs", "2"], ["--force", *TINY]):
        proc = subprocess.run([sys.executable, "-m", "rbtw.cli", "train", "default", "--out", str(run), *extra],
                              env=env, preexec_fn=limit, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and "File too large" in last and "Traceback" not in proc.stderr
        if "--resume" in extra:
            assert (run / "checkpoint.npz").read_bytes() == before
        else:   # --force replaced the old run at once; what is left is a whole checkpoint of the new one
            assert load_checkpoint(run / "checkpoint.npz").meta["step"] == 0
        assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
