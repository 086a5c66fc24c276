"""Shared BN tables after step K (``rbtw export --bn-steps K``): pooled statistics, the engine,
the emulator and the memory reports read them."""

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from rbtw.config import TrainConfig
from rbtw.tasks import TaskData
from rbtw import export, infer
from rbtw import export_format
from rbtw.accel import design as dm
from rbtw.accel import schedule
from rbtw.accel.engine import AccelEngine
from randmodel import random_export
from rbtw.cli import main

PROP = settings(deadline=None, max_examples=40)


def test_pooled_statistics_by_hand():
    stats = {"mean_a": np.array([[5.0], [1.0], [3.0]]), "var_a": np.array([[7.0], [1.0], [1.0]]),
             "count_a": np.array([4, 4, 4])}
    p = export.pooled_statistics(stats, 1)
    # later steps N(1, 1) and N(3, 1) in equal parts: mean 2, variance 1 + 1 (spread of the means)
    np.testing.assert_array_equal(p["mean_a"], [[5.0], [2.0]])
    np.testing.assert_array_equal(p["var_a"], [[7.0], [2.0]])
    assert export.pooled_statistics(stats, 3)["mean_a"].shape == (3, 1)          # K ≥ T_max: unchanged


@PROP
@given(T=st.integers(2, 9), K=st.integers(1, 9), n=st.integers(2, 20), F=st.integers(1, 4),
       seed=st.integers(0, 2 ** 16))
def test_pooled_statistics_are_the_moments_of_the_pooled_samples(T, K, n, F, seed):
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((T, n, F)) * rng.uniform(0.1, 3, (T, 1, F)) + rng.normal(0, 2, (T, 1, F))
    stats = {"mean_b": u.mean(axis=1), "var_b": u.var(axis=1), "count_b": np.ones(T, np.int64)}
    p = export.pooled_statistics(stats, K)
    if K >= T:
        np.testing.assert_array_equal(p["mean_b"], stats["mean_b"])
        return
    later = u[K:].reshape(-1, F)                                       # every sample of steps ≥ K
    np.testing.assert_allclose(p["mean_b"][K], later.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(p["var_b"][K], later.var(axis=0), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(p["var_b"][:K], stats["var_b"][:K])


def test_rows_never_updated_stay_out_of_the_pool():
    stats = {"mean_c": np.array([[0.0], [2.0], [4.0], [0.0]]), "var_c": np.array([[1.0], [1.0], [1.0], [1.0]]),
             "count_c": np.array([9, 9, 9, 0])}
    p = export.pooled_statistics(stats, 1)
    np.testing.assert_allclose(p["mean_c"][1], [3.0])
    np.testing.assert_allclose(p["var_c"][1], [2.0])


@pytest.mark.parametrize("cell_kind", ["lstm", "gru"])
@pytest.mark.parametrize("K", [1, 3, 7])
def test_engine_runs_per_step_rows_then_the_shared_row(cell_kind, K):
    T_max, T = 8, 12
    full = random_export(np.random.default_rng(1), t_max=T_max, cell=cell_kind, layers=2)
    short = random_export(np.random.default_rng(1), t_max=T_max, cell=cell_kind, layers=2, bn_steps=K)
    assert short.arrays["rnn1.scale_h"].shape[0] == K + 1 and short.manifest["bn_steps"] == K
    ids = np.random.default_rng(2).integers(0, 12, size=(T, 3))
    a, _ = infer.PackedEngine(full).forward(ids)
    b, _ = infer.PackedEngine(short).forward(ids)
    np.testing.assert_array_equal(a[:K], b[:K])                  # steps < K: the same tables
    if K < T_max - 1:
        assert not np.allclose(a[K:], b[K:])                     # later steps: the shared one
    else:                                                        # one later step: its own row
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_equal_later_statistics_give_the_per_step_export():
    # when the statistics of every step ≥ K are the same, sharing them changes nothing
    rng = np.random.default_rng(3)
    ex = random_export(rng, t_max=6, layers=1)
    from rbtw.models import ModelSpec, init
    spec = ModelSpec.from_dict(ex.spec)
    params, stats = init(spec, np.random.default_rng(4))
    for name, v in stats.items():
        if "var_" in name:
            v[:] = rng.uniform(0.5, 2, v.shape[1])
        elif "mean_" in name:
            v[:] = rng.normal(0, 1, v.shape[1])
        else:
            v[:] = 5
    meta = {"spec": ex.spec, "config": ex.manifest["config"]}
    full = export.build_export(meta, params, stats, bn_steps=export.PER_STEP)
    short = export.build_export(meta, params, stats, bn_steps=2)
    ids = rng.integers(0, 12, size=(9, 2))
    np.testing.assert_allclose(infer.PackedEngine(short).forward(ids)[0], infer.PackedEngine(full).forward(ids)[0],
                               rtol=1e-5, atol=1e-6)
    assert export.build_export(meta, params, stats, bn_steps=6).manifest["bn_steps"] is None   # K ≥ T_max


@pytest.mark.parametrize("cell_kind", ["lstm", "gru"])
def test_emulator_reads_shared_tables(cell_kind):
    ex = random_export(np.random.default_rng(5), t_max=8, cell=cell_kind, bn_steps=2, quant="ternary")
    x = np.random.default_rng(6).integers(0, 12, size=(10, 3))
    d = dm.preset("ternary")
    a, _ = AccelEngine(ex, d).forward_fixed(x)
    b, _ = AccelEngine(ex, d, reference=True).forward_fixed(x)
    assert np.array_equal(a, b)
    out, _ = AccelEngine(ex, d).forward(x)
    ref, _ = infer.PackedEngine(ex).forward(x)
    assert np.abs(out - ref).max() < 0.05 * max(1.0, np.abs(ref).max())
    c = schedule.costs(ex, d)
    H, G = 16, (4 if cell_kind == "lstm" else 3) * 16
    per_row = (2 * G + H) * d.scale_bits + (G + H) * d.pp_bits if cell_kind == "lstm" else 2 * G * (d.scale_bits + d.pp_bits)
    assert c["table_bits"] == 3 * per_row                         # K + 1 = 3 rows
    assert c["output_bits"] == 32 * (16 * 12 + 12)                # out.W (H, V) and out.b, float32
    assert c["model_bits"] == c["weight_bits"] + c["table_bits"] + c["output_bits"]
    n = G * (16 + 12)
    assert c["model_bits_fp32"] - c["model_bits"] == (32 - d.weight_bits) * n


def test_binary_h1000_export_is_ten_times_smaller_than_its_fp32_weights(tmp_path):
    ex = random_export(np.random.default_rng(0), hidden=1000, n_in=50, quant="binary", t_max=100, bn_steps=5)
    size = export_format.write_export(tmp_path / "h1000.rbtw", ex)
    fp32_weights = 4 * 4000 * (1000 + 50)
    assert fp32_weights / size >= 10, (size, fp32_weights)
    parts = export_format.size_breakdown(ex)
    assert parts["bn_tables"] == 6 * (9000 + 5000) * 4            # K + 1 rows of 2G + H scales, G + H shifts
    assert parts["weights"] == 4000 * 16 * 8 + 4000 * 1 * 8       # 1000 and 50 columns in 64-bit words
    assert parts["output"] == 4 * (1000 * 50 + 50)


def test_cli_export_bn_steps_and_info(tmp_path):
    ex = random_export(np.random.default_rng(7), t_max=10, quant="binary")
    runner = CliRunner()
    path = tmp_path / "m.rbtw"
    export_format.write_export(path, ex)
    r = runner.invoke(main, ["info", str(path)])
    assert r.exit_code == 0, r.output
    assert "10 rows: one row per step" in r.stdout and "whole-model memory" in r.stdout
    total = sum(export_format.size_breakdown(ex).values())
    assert f"this export          {total / 1024:12,.1f} KiB" in r.stdout
    fp32 = export_format.whole_model_bytes(ex, 32)
    assert f"(this export is {fp32 / total:.1f}x smaller)" in r.stdout


def test_cli_export_bn_steps_on_a_trained_checkpoint(tmp_path):
    from pathlib import Path

    from rbtw import train
    text = (Path(__file__).resolve().parents[1] / "data" / "carroll-alice.txt").read_text(encoding="utf-8")[:8000]
    vocab = sorted(set(text))
    ids = np.array([vocab.index(c) for c in text], dtype=np.int32)
    data = TaskData("char", ids[:6000], ids[6000:7000], ids[7000:], vocab=vocab)
    config = TrainConfig(task="default", hidden=16, seq_len=20, batch=8, epochs=1, max_batches=3,
                               quant="binary", stochastic=True, log_every=1000)
    train.Run(config, tmp_path, data=data, log=lambda line: None).run()
    runner = CliRunner()
    out = tmp_path / "k4.rbtw"
    r = runner.invoke(main, ["export", str(tmp_path / "checkpoint.npz"), str(out), "--bn-steps", "4"])
    assert r.exit_code == 0, r.output
    assert "5 rows: steps 0–3 per step, one shared row after" in r.stdout
    ex = export_format.read_export(out)
    assert ex.manifest["bn_steps"] == 4 and ex.arrays["rnn0.scale_c"].shape == (5, 16)
    info = runner.invoke(main, ["info", str(out)])
    assert info.exit_code == 0 and "5 rows" in info.stdout
    r = runner.invoke(main, ["export", str(tmp_path / "checkpoint.npz"), str(tmp_path / "default.rbtw")])
    assert r.exit_code == 0, r.output
    # trained on a slice of the corpus: its vocabulary is not the default corpus's, so nothing
    # measures K and the default is the safe one, a table per step (T_max is 20), said so
    default = export_format.read_export(tmp_path / "default.rbtw")
    assert default.arrays["rnn0.scale_h"].shape[0] == 20 and default.manifest["bn_choice"]["how"] == "unmeasured"
    assert "not measured: the data set's vocabulary is not the model's" in runner.invoke(
        main, ["info", str(tmp_path / "default.rbtw")]).stdout
    for bad in ("0", "-1", "x"):
        r = runner.invoke(main, ["export", str(tmp_path / "checkpoint.npz"), str(out), "--bn-steps", bad])
        assert r.exit_code == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
