"""Calibration of the deterministic model changes only the BN statistics and the ternary
threshold, is chosen on the validation split, and its export runs the same model."""

import itertools
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rbtw
from rbtw.errors import UserError

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


def test_calibration_scores_the_whole_validation_split_unless_told(ternary, tmp_path):
    """--valid-batches defaults to the whole split, not the run's own limit (4 minibatches)."""
    from rbtw.evaluate import evaluate
    ckpt = load_checkpoint(ternary)
    config = TrainConfig.from_dict(ckpt.meta["config"])
    data, spec = load_task_data(config), ModelSpec.from_dict(ckpt.meta["spec"])
    whole = evaluate(ckpt.params, ckpt.stats, spec, data, "valid", config, max_batches=10 ** 9)
    four = evaluate(ckpt.params, ckpt.stats, spec, data, "valid", config)
    assert four["cut"] and not whole["cut"] and whole["bpc"] != four["bpc"]
    for args, expected in (([], whole), (["--valid-batches", "4"], four)):
        out = tmp_path / f"c{len(args)}.npz"
        assert invoke("calibrate", ternary, out, "--batches", "2", "--no-statistics", "--threshold", "0.5",
                      *args).exit_code == 0
        assert load_checkpoint(out).meta["calibration"]["uncalibrated"] == pytest.approx(expected["bpc"], abs=1e-12)


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
    result = invoke("calibrate", fp / "checkpoint.npz", tmp_path / "x.npz", "--threshold", "0.5")
    assert result.exit_code == 2 and "ternary weights only, not to full precision" in result.stderr
    assert not (tmp_path / "x.npz").exists()


def test_recalibrating_sets_every_candidate_threshold_the_papers_too(ternary, tmp_path):
    """A calibrated checkpoint carries its θ; calibrating it again with α/3 as a candidate must
    try α/3, not the θ it carries."""
    from rbtw.calibrate import calibrate_file
    once, twice = tmp_path / "once.npz", tmp_path / "twice.npz"
    first = calibrate_file(ternary, once, batches=3, thresholds=[0.5, 0.6], statistics=False, valid_batches=3)
    second = calibrate_file(once, twice, batches=3, thresholds=[1 / 3], statistics=False, valid_batches=3)
    paper = calibrate_file(ternary, tmp_path / "paper.npz", batches=3, thresholds=[1 / 3], statistics=False,
                           valid_batches=3)
    assert ModelSpec.from_dict(load_checkpoint(once).meta["spec"]).threshold == first["threshold"] in (0.5, 0.6)
    assert second["threshold"] is None and ModelSpec.from_dict(load_checkpoint(twice).meta["spec"]).threshold is None
    assert second["calibrated"] == paper["calibrated"] == paper["uncalibrated"]


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


# ---------------------------------------------------------------------------------------------
# the API: Model.calibrate, and one verdict on options for both surfaces

_names = itertools.count()


def test_model_calibrate_writes_what_the_cli_writes_and_opens_it(ternary, tmp_path):
    model = rbtw.load(ternary)
    assert model.calibration is None
    calibrated = model.calibrate(tmp_path / "api.npz", batches=3, thresholds=[0.5], valid_batches=2)
    assert invoke("calibrate", ternary, tmp_path / "cli.npz", "--batches", "3", "--threshold", "0.5",
                  "--valid-batches", "2").exit_code == 0
    api, cli = load_checkpoint(tmp_path / "api.npz"), load_checkpoint(tmp_path / "cli.npz")
    for name in cli.stats:
        np.testing.assert_array_equal(api.stats[name], cli.stats[name], err_msg=name)
    assert calibrated.calibration == api.meta["calibration"] == cli.meta["calibration"]
    assert calibrated.spec.threshold == 0.5 and calibrated.engine_name == "dense"
    got = calibrated.evaluate(split="valid", max_batches=2)["bpc"]
    assert got == pytest.approx(calibrated.calibration["calibrated"], rel=1e-12)
    exported = tmp_path / "m.rbtw"
    calibrated.export(exported)
    with pytest.raises(UserError, match="packed export: its statistics and threshold are fixed"):
        rbtw.load(exported).calibrate(tmp_path / "again.npz")
    assert rbtw.load(exported).calibration == calibrated.calibration      # the export says how it was made
    for path in (tmp_path / "api.npz", exported):                           # and `rbtw info` says it
        (line,) = [x for x in invoke("info", path).stdout.splitlines() if x.startswith("calibration")]
        assert "threshold 0.5·α" in line and "re-estimated over 3 training minibatches" in line, line
        assert f"-> {calibrated.calibration['calibrated']:.4f}" in line, line
    assert "calibration none" in " ".join(invoke("info", ternary).stdout.split())


def _cli_value(values):
    return ",".join(repr(v) for v in values)


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batches=st.sampled_from([1, 2, 0, -3]),
       thresholds=st.sampled_from([None, [0.5], [0.2, 0.45], [], [0.0], [1.0], [0.3, 1.5], [math.nan], [-0.2],
                                   [math.inf]]),
       valid_batches=st.sampled_from([None, 1, 0, -1]),
       statistics=st.booleans())
def test_the_api_and_the_cli_give_one_verdict_on_every_option(ternary, tmp_path, batches, thresholds, valid_batches,
                                                               statistics):
    n = next(_names)
    api_out, cli_out = tmp_path / f"api{n}.npz", tmp_path / f"cli{n}.npz"
    try:
        rbtw.load(ternary).calibrate(api_out, batches=batches, thresholds=thresholds, statistics=statistics,
                                     valid_batches=valid_batches)
        api_refused = None
    except UserError as e:
        api_refused = str(e)
        assert "\n" not in api_refused
    args = ["calibrate", ternary, cli_out, "--batches", batches]
    args += [] if thresholds is None else ["--threshold", _cli_value(thresholds)]
    args += [] if valid_batches is None else ["--valid-batches", valid_batches]
    args += [] if statistics else ["--no-statistics"]
    result = invoke(*args)
    assert result.exit_code in (0, 2), result.output
    want = batches >= 1 and (valid_batches is None or valid_batches >= 1) and (
        thresholds is None or (len(thresholds) > 0 and all(0 < t < 1 for t in thresholds)))
    assert (api_refused is None) == (result.exit_code == 0) == want, (api_refused, result.stderr)
    assert api_out.exists() == cli_out.exists() == want


@pytest.mark.parametrize("options, fragment", [
    (dict(batches=True), "batches (--batches) must be a whole number"),
    (dict(batches=2.5), "batches (--batches) must be a whole number"),
    (dict(valid_batches="3"), "valid_batches (--valid-batches) must be a whole number"),
    (dict(thresholds="0.5"), "must be a list of numbers"),
    (dict(thresholds=[True]), "every θ lies in (0, 1)"),
    (dict(statistics=1), "statistics must be true or false"),
])
def test_the_api_refuses_values_of_the_wrong_type_in_one_line(ternary, tmp_path, options, fragment):
    with pytest.raises(UserError) as e:
        rbtw.load(ternary).calibrate(tmp_path / "x.npz", **options)
    assert fragment in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "x.npz").exists()


def test_statistics_reestimated_under_given_weights_are_those_the_weights_produce(ternary):
    from rbtw.calibrate import reestimate_statistics
    from rbtw.models import draw_weights
    ckpt = load_checkpoint(ternary)
    config = TrainConfig.from_dict(ckpt.meta["config"])
    spec = ModelSpec.from_dict(ckpt.meta["spec"])
    data = load_task_data(config)
    own = reestimate_statistics(ckpt.params, ckpt.stats, spec, data, config, batches=3)
    qw = draw_weights(ckpt.params, spec, train=False, weights="deterministic")
    given = reestimate_statistics(ckpt.params, ckpt.stats, spec, data, config, batches=3, qweights=qw)
    for k in own:                                   # the deterministic weights, passed in: the same
        np.testing.assert_array_equal(given[k], own[k], err_msg=k)
    other = {k: -w for k, w in qw.items()}          # other weights: other statistics
    flipped = reestimate_statistics(ckpt.params, ckpt.stats, spec, data, config, batches=3, qweights=other)
    assert any(not np.array_equal(flipped[k], own[k]) for k in own if "mean_" in k)
