"""The Python API (rbtw.api): load, sample, evaluate, train; the README's example runs as written."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import rbtw
from rbtw import api
from rbtw.cli import main
from rbtw.errors import UserError
from rbtw.runlock import RunBusy, RunLock

README = Path(__file__).resolve().parents[1] / "README.md"
TINY = dict(task="default", hidden=16, seq_len=20, batch=8, epochs=2, max_batches=2, eval_max_batches=2,
            log_every=1000)


def quiet(line):
    pass


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "run"
    return rbtw.fit(quant="ternary", out=out, log=quiet, **TINY)


@pytest.fixture(scope="module")
def exported(run):
    path = run.run_dir / "model.rbtw"
    size = rbtw.load(run.checkpoint).export(path)
    assert size == path.stat().st_size
    return path


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


# --- the package -------------------------------------------------------------------------------

def test_import_rbtw_loads_neither_numpy_nor_numba():
    code = ("import sys, rbtw; print(json.dumps(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('numpy', 'numba', 'click') or m in ('rbtw.train', 'rbtw.models'))))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout) == []


def test_everything_in_all_resolves_and_the_training_module_keeps_its_name():
    for name in rbtw.__all__:
        assert getattr(rbtw, name) is not None
    from rbtw import train as train_module
    import rbtw.train as same
    assert train_module is same and hasattr(train_module, "Run")
    assert rbtw.fit is rbtw.api.fit
    assert rbtw.TrainConfig is train_module.TrainConfig
    with pytest.raises(AttributeError):
        rbtw.no_such_thing


def test_readme_example_runs_as_written(tmp_path, monkeypatch, capsys):
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, str(README), "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    result, model, packed = namespace["result"], namespace["model"], namespace["packed"]
    assert printed[0].startswith("bpc ") and len(result.epochs) == result.config.epochs == 2
    assert printed[1].startswith("Alice ")
    assert (tmp_path / "runs" / "api-example" / "model.rbtw").is_file()
    assert model.engine_name == "dense" and packed.engine_name == "packed"
    calibrated = namespace["calibrated"]
    assert printed[3] == f"{calibrated.calibration['threshold']} {calibrated.calibration['calibrated']}"
    assert calibrated.spec.threshold == calibrated.calibration["threshold"]
    assert printed[4] == f"ternary {packed.evaluate(max_batches=2)['bpc']}"


# --- train -------------------------------------------------------------------------------------

def test_train_result_matches_the_metrics_log(run):
    records = [json.loads(line) for line in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
    test = [r for r in records if r["event"] == "test"][-1]
    assert run.metric == "bpc" and run.test_metric == test["test_bpc"] == run.test["bpc"]
    assert [e["epoch"] for e in run.epochs] == [0, 1]
    assert run.config.quant == "ternary" and run.checkpoint.is_file()


def test_train_refuses_an_existing_run_and_resume_continues_it(run):
    before = run.checkpoint.read_bytes()
    with pytest.raises(UserError, match="resume=True"):
        rbtw.fit(out=run.run_dir, log=quiet, **TINY)
    assert run.checkpoint.read_bytes() == before
    with pytest.raises(UserError, match="own configuration"):
        rbtw.fit(out=run.run_dir, resume=True, hidden=8)
    again = rbtw.fit(out=run.run_dir, resume=True, log=quiet)   # already finished: test again
    assert again.test == run.test and again.config == run.config


def test_train_holds_the_run_lock(tmp_path):
    with RunLock(tmp_path / "busy"):
        with pytest.raises(RunBusy):
            rbtw.fit(out=tmp_path / "busy", log=quiet, **TINY)
    assert not (tmp_path / "busy" / "checkpoint.npz").exists()


def test_config_from_a_trainconfig_a_dict_fields_or_a_preset():
    base = rbtw.TrainConfig(**TINY)
    assert api.make_config(base, hidden=24).hidden == 24 and base.hidden == 16
    assert api.make_config(dict(TINY), quant="binary").quant == "binary"
    quick = api.make_config(None, "quick", task="ptb_char", hidden=40)
    assert (quick.hidden, quick.max_batches) == (40, 150)
    with pytest.raises(UserError, match="nosuch"):
        api.make_config(nosuch=1)
    with pytest.raises(UserError, match="nosuch"):
        api.make_config(base, nosuch=1)
    with pytest.raises(UserError, match="out="):
        rbtw.fit(base)


# --- load, sample, evaluate --------------------------------------------------------------------

def test_sample_is_reproducible_and_is_what_the_cli_prints(run, exported):
    for path in (run.checkpoint, exported):
        model = rbtw.load(path)
        text = model.sample("Alice ", length=25, temperature=0.7, seed=4)
        assert text.startswith("Alice ") and text == model.sample("Alice ", 25, 0.7, 4)
        printed = cli("sample", path, "--prime", "Alice ", "--length", 25, "--temperature", 0.7, "--seed", 4)
        assert printed.stdout == text + "\n"
    assert rbtw.load(run.checkpoint).sample("Alice ", length=25, temperature=0, seed=1) == \
        rbtw.load(run.checkpoint).sample("Alice ", length=25, temperature=0, seed=2)   # argmax


def test_evaluate_is_what_the_cli_reports(run, exported):
    for path in (run.checkpoint, exported):
        result = rbtw.load(path).evaluate(split="valid", max_batches=2)
        printed = json.loads(cli("eval", path, "--split", "valid", "--max-batches", 2, "--json").stdout)
        assert printed == result and result["n"] == 2 * 8 * 20


def test_evaluate_a_text_equals_evaluating_its_ids_and_the_packed_engines_agree(run, exported):
    text = "Alice was beginning to get very tired of sitting by her sister on the bank"
    dense = rbtw.load(run.checkpoint)
    ids = dense.encode(text)
    by_text, by_ids = dense.evaluate(text), dense.evaluate(list(ids))
    assert by_text == by_ids and by_text["n"] == (len(ids) - 1) // 20 * 20     # segments of T = 20
    assert dense.evaluate("Alice was")["n"] == 8             # shorter than T: one segment of it all
    assert by_text["bpc"] == pytest.approx(by_text["loss"] / np.log(2))
    per_step = run.run_dir / "per-step.rbtw"              # one BN table per step: the dense model's
    dense.export(per_step, bn_steps=dense.spec.t_max)
    packed = rbtw.load(per_step).evaluate(text)
    assert packed["bpc"] == pytest.approx(by_text["bpc"], abs=1e-3)
    from rbtw.checkpoint import load_checkpoint
    from rbtw.export import export_checkpoint  # Model.export's default is rbtw export's
    from rbtw.export_format import read_export
    default = export_checkpoint(load_checkpoint(run.checkpoint))
    assert read_export(exported).manifest["bn_steps"] == default.manifest["bn_steps"]
    assert read_export(exported).manifest["bn_choice"]["how"] == "measured"
    # a checkpoint's packed engine is its default export's: the same tables, the same figures
    on_the_fly = rbtw.load(run.checkpoint, engine="packed")
    assert on_the_fly.evaluate(text) == rbtw.load(exported).evaluate(text)
    for name, arr in read_export(exported).arrays.items():
        np.testing.assert_array_equal(on_the_fly.engine.export.arrays[name], arr, err_msg=name)


def test_an_export_reports_the_settings_the_packed_engine_runs(tmp_path):
    """A run evaluated with sampled weights and batch statistics still runs, in its export,
    deterministic weights with population statistics, and says so (API and ``rbtw eval``)."""
    trained = rbtw.fit(quant="ternary", stochastic=True, eval_weights="sampled", eval_stats="batch",
                       out=tmp_path / "run", log=quiet, **dict(TINY, epochs=1))
    assert rbtw.load(trained.checkpoint).evaluate(split="valid", max_batches=1)["eval_weights"] == "sampled"
    path = tmp_path / "model.rbtw"
    rbtw.load(trained.checkpoint).export(path)
    for model in (rbtw.load(path), rbtw.load(trained.checkpoint, engine="packed")):
        assert (model.config.eval_weights, model.config.eval_stats) == ("deterministic", "population")
        result = model.evaluate(split="valid", max_batches=1)
        assert (result["eval_weights"], result["eval_stats"]) == ("deterministic", "population")
    out = cli("eval", path, "--split", "valid", "--max-batches", "1")
    assert out.exit_code == 0 and "weights deterministic, population statistics" in out.output


def test_evaluation_says_when_the_runs_limit_cut_it_and_a_given_text_is_scored_whole(run, exported):
    """The run (TINY) evaluates 2 minibatches: its split's score says so; a given text is all
    scored, in whole windows of T, whatever the run's limit (API and ``rbtw eval``)."""
    model = rbtw.load(run.checkpoint)
    assert model.evaluate()["max_batches"] == 2 and model.evaluate()["n"] == 2 * 8 * 20
    assert model.evaluate(max_batches=1)["max_batches"] == 1
    whole = model.evaluate(max_batches=0)             # 0: the whole split, whatever the run's limit
    assert whole["max_batches"] is None and whole["n"] > 2 * 8 * 20
    assert "minibatches only" not in cli("eval", run.checkpoint, "--max-batches", "0").output
    text = "Alice was beginning to get very tired of sitting by her sister on the bank. " * 30
    T = model.config.seq_len
    for m in (model, rbtw.load(exported)):
        result = m.evaluate(text)
        assert result["max_batches"] is None and result["n"] == (len(text) - 1) // T * T > 2 * 8 * T
    out = cli("eval", run.checkpoint)
    assert out.exit_code == 0 and "first 2 minibatches only" in out.output
    out = cli("eval", run.checkpoint, "--max-batches", "1")
    assert out.exit_code == 0 and "first 1 minibatch only" in out.output
    given = run.run_dir.parent / "alice.txt"
    given.write_text(text, encoding="utf-8")
    out = cli("eval", exported, "--text", given)
    assert out.exit_code == 0 and "minibatches only" not in out.output
    assert f"over {(len(text) - 1) // T * T:,} predictions" in out.output


def test_errors_the_caller_can_fix(run, exported):
    model = rbtw.load(run.checkpoint)
    with pytest.raises(UserError, match="characters not in the model's vocabulary: '☃'"):
        model.sample("Alice ☃")
    with pytest.raises(UserError, match="two tokens"):
        model.evaluate("A")
    with pytest.raises(UserError, match=r"\[0, "):
        model.evaluate([0, len(model.vocab)])
    with pytest.raises(UserError, match="packed engine only"):
        rbtw.load(exported, engine="dense")
    with pytest.raises(UserError, match="deterministic weights"):
        rbtw.load(run.checkpoint, engine="packed", weights="sampled")
    with pytest.raises(UserError, match="no such checkpoint"):
        rbtw.load(run.run_dir / "nothing.npz")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(sorted(set("Alice’s “Wonderland” — café, naïve; ßtraße ☃ 日本"))), max_size=30))
def test_encode_decode_round_trip_on_a_byte_vocabulary(chars):
    vocab = [chr(b) for b in sorted(set("Alice’s “Wonderland” — café, naïve; ßtraße ☃ 日本".encode()))]
    text = "".join(chars)
    ids = api.encode(text, vocab, "char")
    assert len(ids) == len(text.encode("utf-8"))
    assert api.decode(ids, vocab, "char") == text


def test_word_vocabulary_maps_unknown_words_to_unk_when_it_has_one():
    vocab = ["<unk>", "the", "cat"]
    assert api.encode("the dog cat", vocab, "word") == [1, 0, 2]
    with pytest.raises(UserError, match="dog"):
        api.encode("the dog", ["the", "cat"], "word")
    assert api.decode([1, 2], vocab, "word") == "the cat"


def test_a_word_model_samples_words_and_scores_a_short_text(tmp_path):
    from rbtw import train as train_module
    from rbtw.tasks import TaskData
    rng = np.random.default_rng(5)
    vocab = ["<unk>"] + [f"w{k}" for k in range(29)]
    stream = rng.integers(0, 30, size=3000).astype(np.int32)
    data = TaskData("word", stream[:2400], stream[2400:2700], stream[2700:], vocab=vocab)
    config = rbtw.TrainConfig(task="ptb_word", hidden=8, emb=8, seq_len=10, batch=4, epochs=1, max_batches=2,
                              eval_max_batches=1, log_every=1000)
    train_module.Run(config, tmp_path, data=data, log=quiet).run()
    model = rbtw.load(tmp_path / "checkpoint.npz")
    assert model.metric == "perplexity" and model.vocab == vocab
    text = model.sample("w1 w2", length=5, seed=0)
    assert text.startswith("w1 w2 ") and len(text.split()) == 7 and set(text.split()) <= set(vocab)
    result = model.evaluate("w1 w2 nosuchword w3 w4")          # 5 words: B shrinks to 2 columns
    assert result["n"] == 2 and result["perplexity"] == pytest.approx(np.exp(result["loss"]))
