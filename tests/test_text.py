"""Task text: a character LM on the user's own UTF-8 file, end to end through the CLI."""

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rbtw
from rbtw.cli import main
from rbtw.data.corpus import check_text, load_text
from rbtw.errors import UserError
from rbtw.config import TrainConfig
from rbtw.tasks import load_task_data

ALICE = Path(__file__).resolve().parents[1] / "data" / "carroll-alice.txt"
TINY = ["--hidden", "16", "--epochs", "1", "--max-batches", "2", "--eval-max-batches", "2", "--seq-len", "20",
        "--batch", "8"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def own_text():
    """About 12 kB of prose with characters outside ASCII (two- and three-byte UTF-8)."""
    prose = ALICE.read_text(encoding="utf-8")[8000:18000]
    extra = "Ünïcödé café — naïve “quotes” façade, ßtraße. " * 40
    return prose + "\n" + extra


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("text")
    path = tmp / "mine.txt"
    path.write_text(own_text(), encoding="utf-8")
    out = tmp / "run"
    result = invoke("train", "text", "--file", path, *TINY, "--quant", "binary", "--out", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("text lstm binary: test bpc ")
    return path, out


def test_the_run_remembers_the_file_and_its_bytes(trained):
    path, out = trained
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "text" and config["text_file"] == str(path.resolve())
    assert config["text_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    ckpt = rbtw.load(out / "checkpoint.npz")
    assert ckpt.vocab == sorted(set(path.read_text(encoding="utf-8"))) and ckpt.symbols == "chars"


def test_sample_eval_export_and_sample_the_export(trained, tmp_path):
    path, out = trained
    ckpt = out / "checkpoint.npz"
    sample = invoke("sample", ckpt, "--prime", "Ünïcödé ", "--length", 30, "--seed", 1)
    assert sample.exit_code == 0, sample.output
    assert sample.stdout.startswith("Ünïcödé ")

    test = json.loads(invoke("eval", ckpt, "--json").stdout)          # the file's own test split
    assert test["split"] == "test" and 0 < test["bpc"] < 8 and test["n"] == 2 * 8 * 20
    other = tmp_path / "other.txt"
    other.write_text("Alice said “café” to the naïve Mock Turtle. " * 5, encoding="utf-8")
    on_other = json.loads(invoke("eval", ckpt, "--text", other, "--json").stdout)
    n_chars = len(other.read_text(encoding="utf-8"))
    assert on_other["split"] == str(other) and on_other["n"] == (n_chars - 1) // 20 * 20

    model = tmp_path / "model.rbtw"
    # the default export: what the packed engine builds from the checkpoint
    assert invoke("export", ckpt, model).exit_code == 0
    gone = path.rename(path.with_suffix(".gone"))      # the vocabulary travels with the model
    try:
        packed = invoke("sample", model, "--prime", "naïve", "--length", 30, "--seed", 1)
    finally:
        gone.rename(path)
    assert packed.exit_code == 0 and packed.stdout.startswith("naïve")
    assert packed.stdout == invoke("sample", ckpt, "--engine", "packed", "--prime", "naïve", "--length", 30,
                                   "--seed", 1).stdout
    per_step = tmp_path / "per-step.rbtw"          # one BN table per step: the dense model's arithmetic
    assert invoke("export", ckpt, per_step, "--bn-steps", 1000).exit_code == 0
    from_export = json.loads(invoke("eval", per_step, "--json").stdout)
    assert from_export["bpc"] == pytest.approx(test["bpc"], abs=1e-3)


def test_characters_the_file_never_had_are_named(trained, tmp_path):
    _, out = trained
    assert_one_line_error(invoke("sample", out / "checkpoint.npz", "--prime", "naïve ☃ 日"),
                          "characters not in the model's vocabulary", "☃", "日")
    snow = tmp_path / "snow.txt"
    snow.write_text("Alice saw a snowman ☃ in the garden. " * 3, encoding="utf-8")
    assert_one_line_error(invoke("eval", out / "checkpoint.npz", "--text", snow),
                          "characters not in the model's vocabulary: '☃'")


def test_a_changed_file_stops_resume_and_eval(trained, tmp_path):
    path, out = trained
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("config.json", "checkpoint.npz", "metrics.jsonl"):
        (copy / name).write_bytes((out / name).read_bytes())
    original = path.read_bytes()
    resumed = invoke("train", "text", "--resume", "--out", copy)        # no --file: the run knows it
    assert resumed.exit_code == 0, resumed.output
    try:
        path.write_bytes(original + b"one more line\n")
        assert_one_line_error(invoke("train", "text", "--resume", "--out", copy), "has changed", str(path))
        assert_one_line_error(invoke("eval", copy / "checkpoint.npz"), "has changed")
    finally:
        path.write_bytes(original)


def test_split_option_cuts_the_file(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(own_text(), encoding="utf-8")
    n = len(own_text())                                   # characters
    for option, shares in (("80/10/10", (0.8, 0.1, 0.1)), ("0.7,0.2,0.1", (0.7, 0.2, 0.1))):
        result = invoke("train", "text", "--file", path, "--split", option, *TINY, "--out", tmp_path / option[:2])
        assert result.exit_code == 0, result.output
        config = TrainConfig.from_dict(json.loads((tmp_path / option[:2] / "config.json").read_text()))
        assert config.text_split == pytest.approx(list(shares))
        data = load_task_data(config)
        assert (len(data.train), len(data.valid)) == (round(n * shares[0]), round(n * shares[1]))
    assert_one_line_error(invoke("train", "text", "--file", path, "--split", "90/10"), "--split")
    assert_one_line_error(invoke("train", "text", "--file", path, "--split", "90/0/10"), "--split")


@pytest.mark.parametrize("name,content,fragment", [
    ("missing.txt", None, "no such file"),
    ("empty.txt", b"", "empty file"),
    ("image.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
    ("utf16.txt", "text".encode("utf-16"), "binary file"),
    ("latin1.txt", "café au lait".encode("latin-1"), "not valid UTF-8"),
    ("short.txt", b"just a few words", "too few for sequences of 20"),
])
def test_bad_files_are_one_line_errors_and_write_nothing(tmp_path, name, content, fragment):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    result = invoke("train", "text", "--file", path, *TINY, "--out", tmp_path / "run")
    assert_one_line_error(result, fragment, name)
    assert not (tmp_path / "run").exists()


def test_file_belongs_to_the_text_task(tmp_path):
    assert_one_line_error(invoke("train", "text", *TINY), "--file")
    assert_one_line_error(invoke("train", "default", "--file", ALICE, *TINY), "text task only")


def _refused(data):
    if not data or b"\0" in data:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


@settings(max_examples=120, deadline=None)
@given(st.binary(max_size=64) | st.text(max_size=32).map(lambda t: t.encode("utf-8")))
def test_a_file_is_refused_exactly_when_empty_binary_or_not_utf8(data):
    if _refused(data):
        with pytest.raises(UserError) as e:
            check_text(data, "f.txt")
        assert str(e.value).startswith("f.txt: ") and "\n" not in str(e.value)
    else:
        check_text(data, "f.txt")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=0, max_size=40).filter(_refused))
def test_cli_refuses_every_bad_file_in_one_line(tmp_path, data):
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    assert_one_line_error(invoke("train", "text", "--file", path, "--out", tmp_path / "run"), str(path))
    assert not (tmp_path / "run").exists()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), min_size=1, max_size=60))
def test_any_text_loads_as_its_characters_and_decodes_back(tmp_path, text):
    path = tmp_path / "t.txt"
    path.write_bytes(text.encode("utf-8"))
    if len(set(text)) < 2:                      # one symbol repeated: nothing to predict
        with pytest.raises(UserError, match="nothing for a model to predict"):
            load_text(path)
        return
    corpus = load_text(path)
    ids = list(corpus.train) + list(corpus.valid) + list(corpus.test)
    assert corpus.vocab == sorted(set(text)) and len(ids) == len(text)
    assert corpus.decode(ids) == text
    assert corpus.info["sha256"] == hashlib.sha256(text.encode("utf-8")).hexdigest()
    as_bytes = load_text(path, symbols="bytes")         # how models were made before characters
    assert as_bytes.decode(list(as_bytes.train) + list(as_bytes.valid) + list(as_bytes.test)) == text


def test_samples_are_the_files_characters_and_length_counts_characters(trained):
    path, out = trained
    chars = set(path.read_text(encoding="utf-8"))
    model = rbtw.load(out / "checkpoint.npz")
    for seed in range(3):
        text = model.sample("naïve ", length=300, temperature=1.5, seed=seed)
        assert len(text) == len("naïve ") + 300 and set(text) <= chars and "\ufffd" not in text
    printed = invoke("sample", out / "checkpoint.npz", "--prime", "ß", "--length", 50, "--seed", 1).stdout
    assert len(printed.rstrip("\n")) >= 51 and set(printed) <= chars | {"\n"}


def test_a_prime_character_the_file_lacks_is_refused_even_when_its_bytes_occur(tmp_path):
    # "ũ" is C5 A9 in UTF-8: "ł" (C5 82) and "é" (C3 A9) bring both bytes, not the character
    path = tmp_path / "t.txt"
    path.write_text(("Łódź, café and łódka. " * 40 + "\n") * 3, encoding="utf-8")
    out = tmp_path / "run"
    assert invoke("train", "text", "--file", path, *TINY, "--out", out).exit_code == 0
    assert_one_line_error(invoke("sample", out / "checkpoint.npz", "--prime", "ũ"),
                          "characters not in the model's vocabulary: 'ũ'")


@pytest.mark.parametrize("content", ["a" * 5000, "☃" * 3000])
def test_a_file_of_one_repeated_character_is_refused(tmp_path, content):
    path = tmp_path / "one.txt"
    path.write_text(content, encoding="utf-8")
    assert_one_line_error(invoke("train", "text", "--file", path, *TINY, "--out", tmp_path / "run"),
                          "repeated", "nothing for a model to predict")
    assert not (tmp_path / "run").exists()


def test_a_byte_level_checkpoint_made_before_characters_still_loads_samples_resumes(trained, tmp_path):
    """A text model from before characters: its vocabulary is the file's bytes and its meta has
    no "symbols".  It loads, samples, evaluates on its own split and resumes as bytes, as before."""
    from rbtw import train as train_module
    from rbtw.checkpoint import load_checkpoint, save_checkpoint
    path, _ = trained
    config = TrainConfig(task="text", text_file=str(path), hidden=16, seq_len=20, batch=8, epochs=1,
                         max_batches=2, eval_max_batches=2, log_every=1000)
    data = load_task_data(config, symbols="bytes")
    out = tmp_path / "old"
    train_module.Run(config, out, data=data, log=lambda line: None).run()
    ckpt = load_checkpoint(out / "checkpoint.npz")
    del ckpt.meta["symbols"]                                       # as rbtw wrote it before
    save_checkpoint(out / "checkpoint.npz", ckpt.meta, ckpt.params, ckpt.stats, ckpt.optimizer, ckpt.extra)
    model = rbtw.load(out / "checkpoint.npz")
    assert model.symbols == "bytes" and "".join(model.vocab).encode("latin-1") == bytes(sorted(set(path.read_bytes())))
    assert model.sample("naïve", length=40, seed=1).startswith("naïve")
    assert model.evaluate(max_batches=1)["n"] == 8 * 20            # its own split, read as bytes
    resumed = invoke("train", "text", "--resume", "--out", out, "--epochs", 2)
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(out / "checkpoint.npz").meta["vocab"] == ckpt.meta["vocab"]
