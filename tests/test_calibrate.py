"""Calibration of the deterministic model changes only the BN statistics and the ternary
threshold, is chosen on the validation split, and its export runs the same model."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from rbtw.checkpoint import load_checkpoint
from rbtw.cli import main
from rbtw.config import TrainConfig
from rbtw.export import build_export
from rbtw.infer import PackedEngine
from rbtw.models import DenseEngine, ModelSpec
from rbtw.tasks import load_task_data

TINY = ["--hidden", "16", "--epochs", "1", "--max-batches", "6", "--eval-max-batches", "4", "--seq-len", "20",
        "--batch", "8"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def ternary(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert invoke("train", "default", *TINY, "--quant", "ternary", "--stochastic", "--out", out).exit_code == 0
    return out / "checkpoint.npz"


def test_calibration_changes_only_statistics_and_threshold_and_exports_the_same_model(ternary, tmp_path):
    out = tmp_path / "calibrated.npz"
    result = invoke("calibrate", ternary, out, "--batches", "5", "--valid-batches", "4",
                    "--threshold", "0.3333333333333333,0.5")
    assert result.exit_code == 0, result.output
    before, after = load_checkpoint(ternary), load_checkpoint(out)
    for name in before.params:                                # no parameter changes
        np.testing.assert_array_equal(before.params[name], after.params[name], err_msg=name)
    assert set(after.stats) == set(before.stats)
    assert any(not np.array_equal(before.stats[k], after.stats[k]) for k in before.stats if "mean_" in k)
    report = after.meta["calibration"]
    assert [t["threshold"] for t in report["tried"]] == [1 / 3, 0.5]
    best = min(report["tried"], key=lambda t: t["valid"])
    assert report["calibrated"] == best["valid"] <= max(t["valid"] for t in report["tried"])
    spec = ModelSpec.from_dict(after.meta["spec"])
    assert spec.threshold == report["threshold"]
    assert f"{report['calibrated']:.4f}" in result.stdout
    # the export of the calibrated checkpoint runs the same (deterministic, population) model
    config = TrainConfig.from_dict(after.meta["config"])
    export = build_export(after.meta, after.params, after.stats, bn_steps=1000)
    ids = load_task_data(config).valid[:21 * 4].reshape(4, 21).T[:20]
    dense = DenseEngine(after.params, after.stats, spec).forward(ids)[0]
    packed = PackedEngine(export).forward(ids)[0]
    np.testing.assert_allclose(packed, dense, rtol=1e-4, atol=1e-4 * np.abs(dense).max())
    evaluated = json.loads(invoke("eval", out, "--json", "--split", "valid", "--max-batches", "4").stdout)
    assert evaluated["bpc"] == pytest.approx(report["calibrated"], rel=1e-12)


@pytest.mark.parametrize("theta", [0.2, 0.5, 0.7])
def test_a_threshold_zeroes_exactly_the_weights_within_it(theta):
    from rbtw import quant
    W = np.linspace(-1, 1, 2001, dtype=np.float32)
    q = quant.quantize(W, "ternary", 0.9, threshold=theta)
    tau = np.float32(0.9 * theta)
    assert np.all((q == 0) == (np.abs(W) <= tau))
    assert np.array_equal(quant.quantize(W, "ternary", 0.9), quant.quantize(W, "ternary", 0.9, threshold=None))


def test_full_precision_has_its_statistics_reestimated_and_nothing_else(tmp_path):
    fp = tmp_path / "fp"
    assert invoke("train", "default", *TINY, "--quant", "fp", "--out", fp).exit_code == 0
    out = tmp_path / "fp-calibrated.npz"
    result = invoke("calibrate", fp / "checkpoint.npz", out, "--batches", "5", "--valid-batches", "4")
    assert result.exit_code == 0, result.output
    before, after = load_checkpoint(fp / "checkpoint.npz"), load_checkpoint(out)
    for name in before.params:
        np.testing.assert_array_equal(before.params[name], after.params[name], err_msg=name)
    assert any(not np.array_equal(before.stats[k], after.stats[k]) for k in before.stats if "mean_" in k)
    report = after.meta["calibration"]
    assert report["statistics"] and report["threshold"] is None
    assert [t["threshold"] for t in report["tried"]] == [None]
    assert after.meta["spec"] == before.meta["spec"]
    evaluated = json.loads(invoke("eval", out, "--json", "--split", "valid", "--max-batches", "4").stdout)
    assert evaluated["bpc"] == pytest.approx(report["calibrated"], rel=1e-12)
    result = invoke("calibrate", fp / "checkpoint.npz", tmp_path / "x.npz", "--no-statistics")
    assert result.exit_code == 2 and "nothing to calibrate: full precision with its statistics left alone" \
        in result.stderr


def test_the_default_threshold_search_never_stops_at_an_edge_that_won(ternary):
    """The default grid is searched on past its largest θ while that one is the best, so the
    chosen θ is the largest tried only at the cap."""
    from rbtw.calibrate import THRESHOLD_MAX, THRESHOLDS, calibrate
    ckpt = load_checkpoint(ternary)
    config = TrainConfig.from_dict(ckpt.meta["config"])
    data = load_task_data(config)
    for statistics in (False, True):
        *_, report = calibrate(ckpt, data, config, batches=3, statistics=statistics, valid_batches=3)
        tried = [t["threshold"] for t in report["tried"]]
        assert tried[:len(THRESHOLDS)] == list(THRESHOLDS)
        assert all(b == pytest.approx(a + 0.1) for a, b in zip(tried[len(THRESHOLDS) - 1:], tried[len(THRESHOLDS):]))
        best = min(report["tried"], key=lambda t: t["valid"])
        assert report["calibrated"] == best["valid"]
        assert best["threshold"] != tried[-1] or tried[-1] == pytest.approx(THRESHOLD_MAX)
        # every extension step was taken because the step before it was the best so far
        for i in range(len(THRESHOLDS), len(tried)):
            assert report["tried"][i - 1]["valid"] == min(t["valid"] for t in report["tried"][:i])


def test_calibration_refuses_what_has_nothing_to_calibrate_and_its_own_input(ternary, tmp_path):
    fp = tmp_path / "fp"
    assert invoke("train", "default", *TINY, "--quant", "fp", "--no-bn", "--out", fp).exit_code == 0
    result = invoke("calibrate", fp / "checkpoint.npz", tmp_path / "x.npz")
    assert result.exit_code == 2 and "nothing to calibrate: full precision without BN" in result.stderr
    assert not (tmp_path / "x.npz").exists()
    result = invoke("calibrate", ternary.parent / "checkpoint.npz", tmp_path / "z.npz", "--no-statistics",
                    "--threshold", "0.5")
    assert result.exit_code == 0, result.output                # ternary: the threshold is left to choose
    result = invoke("calibrate", ternary, ternary)
    assert result.exit_code == 2 and "input of this command" in result.stderr
    result = invoke("calibrate", ternary, tmp_path / "y.npz", "--threshold", "1.5")
    assert result.exit_code == 2 and "(0, 1)" in result.stderr
