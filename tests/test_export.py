"""Packed export and the packed engine: format checks, and agreement with the dense engine."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rbtw.config import TrainConfig
from rbtw.evaluate import evaluate_engine
from rbtw.tasks import TaskData
from rbtw import export, infer, models, train
from rbtw import export_format
from rbtw.checkpoint import load_checkpoint
from rbtw.cli import main
from rbtw.errors import UserError
from rbtw.generate import generate

ALICE = Path(__file__).resolve().parents[1] / "data" / "carroll-alice.txt"


@pytest.fixture(scope="module")
def alice():
    text = ALICE.read_text(encoding="utf-8")[:20000]
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    ids = np.array([index[c] for c in text], dtype=np.int32)
    return TaskData("char", ids[:16000], ids[16000:18000], ids[18000:], vocab=vocab)


def word_data():
    rng = np.random.default_rng(5)
    vocab = [f"w{k}" for k in range(40)]
    stream = rng.integers(0, 40, size=3000).astype(np.int32)
    return TaskData("word", stream[:2000], stream[2000:2500], stream[2500:], vocab=vocab)


def classify_data():
    rng = np.random.default_rng(6)
    xs = rng.random((60, 784), dtype=np.float32)
    ys = rng.integers(0, 10, size=60)
    return TaskData("classify", (xs[:40], ys[:40]), (xs[40:50], ys[40:50]), (xs[50:], ys[50:]),
                          n_in=49, n_out=10)


def trained(tmp_path, data, **kw):
    base = dict(task="default", hidden=24, seq_len=30, batch=16, epochs=2, max_batches=6, lr=1e-2,
                log_every=1000)
    base.update(kw)
    if base["task"] == "mnist":
        del base["seq_len"]                       # sMNIST's steps come from pixels_per_step
    run = train.Run(TrainConfig(**base), tmp_path, data=data, log=lambda line: None)
    run.run()
    return load_checkpoint(tmp_path / "checkpoint.npz"), run


CASES = [
    dict(quant="binary", stochastic=True),
    dict(quant="ternary", stochastic=True),
    dict(quant="ternary", stochastic=False, cell="gru"),
    dict(quant="binary", stochastic=False, bn=False),
    dict(quant="ternary", cell="gru", bn=False),
    dict(quant="none"),
    dict(quant="binary", layers=2),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_packed_engine_equals_dense_engine_on_a_trained_char_model(alice, tmp_path, case):
    ckpt, run = trained(tmp_path, alice, **case)
    path = tmp_path / "model.rbtw"
    size = export_format.write_export(path, export.build_export(ckpt.meta, ckpt.params, ckpt.stats,
                                                                   bn_steps=export.PER_STEP))
    assert size == path.stat().st_size
    packed = infer.PackedEngine(export_format.read_export(path))
    dense = models.DenseEngine(ckpt.params, ckpt.stats, run.spec)
    ids = np.random.default_rng(0).integers(0, len(alice.vocab), size=(45, 5))  # beyond T_max = 30
    a, sa = packed.forward(ids)
    b, sb = dense.forward(ids)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())
    for x, y in zip(sa[-1], sb[-1]):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)
    ev_p = evaluate_engine(packed, alice, "valid", run.config)
    ev_d = evaluate_engine(dense, alice, "valid", run.config)
    assert ev_p["bpc"] == pytest.approx(ev_d["bpc"], rel=1e-5)
    prime = [1, 2, 3]
    assert generate(packed, prime, 40, rng=np.random.default_rng(1)) == generate(dense, prime, 40, rng=np.random.default_rng(1))


@pytest.mark.parametrize("kind", ["word", "classify"])
def test_packed_engine_equals_dense_engine_for_word_lm_and_classifier(tmp_path, kind):
    if kind == "word":
        data = word_data()
        ckpt, run = trained(tmp_path, data, task="ptb_word", emb=8, dropout=0.2, quant="ternary",
                            stochastic=True, seq_len=10, batch=8)
        inputs = np.random.default_rng(1).integers(0, 40, size=(12, 8))
    else:
        data = classify_data()
        ckpt, run = trained(tmp_path, data, task="mnist", pixels_per_step=49, quant="binary", batch=8,
                            stochastic=True)
        inputs = np.random.default_rng(1).random((16, 8, 49)).astype(np.float32)
    packed = infer.PackedEngine(export.build_export(ckpt.meta, ckpt.params, ckpt.stats, bn_steps=export.PER_STEP))
    dense = models.DenseEngine(ckpt.params, ckpt.stats, run.spec)
    a, sa = packed.forward(inputs)
    b, sb = dense.forward(inputs)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())
    if kind == "word":  # carried state
        a2, _ = packed.forward(inputs, sa, t0=0)
        b2, _ = dense.forward(inputs, sb, t0=0)
        np.testing.assert_allclose(a2, b2, rtol=1e-5, atol=1e-5 * np.abs(b2).max())
    metric = "perplexity" if kind == "word" else "accuracy"
    assert evaluate_engine(packed, data, "test", run.config)[metric] == pytest.approx(
        evaluate_engine(dense, data, "test", run.config)[metric], rel=1e-5)


def test_binary_weights_take_one_bit_and_ternary_two(alice, tmp_path):
    for quant, bits in (("binary", 1), ("ternary", 2)):
        ckpt, run = trained(tmp_path / quant, alice, quant=quant, hidden=64)
        ex = export.build_export(ckpt.meta, ckpt.params, ckpt.stats)
        words = {name: -(-m["cols"] // 64) for name, m in ex.manifest["matrices"].items()}
        expected = sum(bits * m["rows"] * words[n] * 8 for n, m in ex.manifest["matrices"].items())
        assert export_format.size_breakdown(ex)["weights"] == expected
        ah = ex.alpha("rnn0.W_h")
        assert ah == pytest.approx(run.spec.cell_spec(0).alphas[1])


@pytest.fixture(scope="module")
def export_file(alice, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    ckpt, _ = trained(tmp, alice, quant="ternary", stochastic=True)
    path = tmp / "model.rbtw"
    export_format.write_export(path, export.build_export(ckpt.meta, ckpt.params, ckpt.stats))
    return path


def damaged_copies(path, tmp_path):
    blob = bytearray(path.read_bytes())
    header = 8 + 4 + 32
    n = int.from_bytes(blob[8:12], "little")
    yield "truncated", bytes(blob[: len(blob) - 100]), "truncated"
    last = bytearray(blob)
    last[-1] ^= 0xFF
    yield "data byte", bytes(last), "does not match its checksum"
    man = bytearray(blob)
    man[header + n // 2] ^= 0x01
    yield "manifest byte", bytes(man), "manifest does not match"
    yield "magic", b"NOTPACKD" + bytes(blob[8:]), "not an rbtw packed export"
    yield "empty", b"", "not an rbtw packed export"


def test_damaged_exports_give_clear_errors(export_file, tmp_path):
    for what, content, message in damaged_copies(export_file, tmp_path):
        bad = tmp_path / f"{what}.rbtw"
        bad.write_bytes(content)
        with pytest.raises(UserError, match=message):
            export_format.read_export(bad)


def test_version_is_checked(export_file, tmp_path):
    ex = export_format.read_export(export_file)
    ex.manifest["version"] = export_format.VERSION + 1
    export_format.write_export(tmp_path / "future.rbtw", ex)
    with pytest.raises(UserError, match="version"):
        export_format.read_export(tmp_path / "future.rbtw")


def test_export_cli_info_reports_the_size_on_disk(alice, tmp_path):
    ckpt_dir = tmp_path / "run"
    trained(ckpt_dir, alice, quant="binary", stochastic=True)
    out = tmp_path / "m.rbtw"
    runner = CliRunner()
    result = runner.invoke(main, ["export", str(ckpt_dir / "checkpoint.npz"), str(out)])
    assert result.exit_code == 0, result.output
    info = runner.invoke(main, ["info", str(out)])
    assert info.exit_code == 0
    assert f"size on disk  {out.stat().st_size:,} bytes" in info.stdout
    assert "binary" in info.stdout
    bad = tmp_path / "bad.rbtw"
    bad.write_bytes(out.read_bytes()[:-10])
    for command in (["info", str(bad)], ["eval", str(bad)], ["sample", str(bad)]):
        r = runner.invoke(main, command)
        assert r.exit_code == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    r = runner.invoke(main, ["eval", "--engine", "packed", "--eval-stats", "batch", str(ckpt_dir / "checkpoint.npz")])
    assert r.exit_code == 2 and "population statistics only" in r.stderr
    r = runner.invoke(main, ["sample", "--engine", "dense", str(out)])
    assert r.exit_code == 2 and "packed engine only" in r.stderr


def test_cli_eval_and_sample_agree_across_engines(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    r = runner.invoke(main, ["train", "default", "--hidden", "16", "--epochs", "1", "--max-batches", "3",
                             "--eval-max-batches", "3", "--seq-len", "20", "--batch", "8", "--quant", "binary",
                             "--stochastic", "--out", str(out)])
    assert r.exit_code == 0, r.output
    ckpt = str(out / "checkpoint.npz")
    # K = T_max: one BN table per step, the dense model's arithmetic; no K: the default export,
    # which is also what the packed engine builds from a checkpoint
    assert runner.invoke(main, ["export", ckpt, str(tmp_path / "m.rbtw"), "--bn-steps", "20"]).exit_code == 0
    assert runner.invoke(main, ["export", ckpt, str(tmp_path / "default.rbtw")]).exit_code == 0
    engines = (["--engine", "dense", ckpt], [str(tmp_path / "m.rbtw")], ["--engine", "packed", ckpt],
               [str(tmp_path / "default.rbtw")])
    results = []
    for args in engines:
        r = runner.invoke(main, ["eval", "--json", "--max-batches", "3", *args])
        assert r.exit_code == 0, r.output
        results.append(json.loads(r.stdout))
    assert [r["engine"] for r in results] == ["dense", "packed", "packed", "packed"]
    assert results[1]["bpc"] == pytest.approx(results[0]["bpc"], rel=1e-5)
    assert results[3]["bpc"] == results[2]["bpc"]
    texts = [runner.invoke(main, ["sample", "--prime", "The ", "--length", "60", *args]).stdout for args in engines]
    assert texts[0] == texts[1] and texts[2] == texts[3]
