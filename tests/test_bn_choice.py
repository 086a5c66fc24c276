"""Exports choose their BN tables by measurement (rbtw.export.export_checkpoint).

The default K is the smallest number of per-step tables whose validation metric is within
rbtw.export.TOLERANCE of one table per step; ``rbtw info`` shows what the export costs; an
explicit ``--bn-steps`` that costs more warns.  On sequential MNIST (whose statistics differ
from pixel row to pixel row) sharing the tables wrecks the model, so the default keeps one
per step; on a character LM one or two tables suffice.
"""

import math
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import rbtw
from rbtw import export
from rbtw.checkpoint import load_checkpoint
from rbtw.cli import main
from rbtw.export_format import read_export


@settings(max_examples=200, deadline=None)
@given(t_max=st.integers(2, 800), threshold=st.integers(1, 900), tolerance=st.sampled_from([0.005, 0.1]))
def test_the_search_finds_the_smallest_k_of_a_falling_cost_in_few_measurements(t_max, threshold, tolerance):
    asked = []

    def cost(K):                       # falls as K grows: within the tolerance from the threshold on
        asked.append(K)
        return 0.0 if K >= threshold else 1.0

    K = export.smallest_within(cost, t_max, tolerance)
    assert K == (threshold if threshold <= t_max // 2 else None)
    assert len(asked) <= 2 + math.ceil(math.log2(max(t_max, 2)))


def test_the_cost_counts_worse_as_positive_in_every_metric():
    assert export.cost_of("bpc", 1.51, 1.50) == pytest.approx(0.01)
    assert export.cost_of("perplexity", 101.0, 100.0) == pytest.approx(0.01)
    assert export.cost_of("accuracy", 0.60, 0.65) == pytest.approx(0.05)


TINY = dict(task="default", hidden=16, seq_len=20, batch=8, epochs=2, max_batches=8, eval_max_batches=2,
            quant="ternary", stochastic=True, log_every=1000)


@pytest.fixture(scope="module")
def char_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bn-choice") / "char"
    return rbtw.fit(out=out, log=lambda line: None, **TINY)


def _measured(ckpt, K):
    """The validation metric of the export with K tables, measured as the default measures it."""
    from rbtw.models import ModelSpec
    measure, _ = export._measurer(ckpt, ModelSpec.from_dict(ckpt.meta["spec"]), None)
    return measure, measure.cost(K)


def test_a_char_lm_gets_the_smallest_k_within_the_tolerance(char_run, tmp_path):
    ckpt = load_checkpoint(char_run.checkpoint)
    default = export.export_checkpoint(ckpt)
    choice, K = default.manifest["bn_choice"], default.manifest["bn_steps"]
    assert choice["how"] == "measured" and choice["metric"] == "bpc" and choice["tolerance"] == 0.005
    assert choice["predictions"] >= 8 * 20
    measure, cost = _measured(ckpt, K)
    assert cost == pytest.approx(choice["cost"]) and cost <= 0.005
    assert K is not None and K <= ckpt.meta["config"]["seq_len"] // 2
    if K > 1:
        assert measure.cost(K - 1) > 0.005 or measure.cost(1) > 0.005
    path = tmp_path / "m.rbtw"
    rbtw.load(char_run.checkpoint).export(path)
    info = CliRunner().invoke(main, ["info", str(path)])
    assert info.exit_code == 0 and "chosen by measurement: valid bpc" in info.stdout
    assert read_export(path).arrays["rnn0.scale_h"].shape[0] == K + 1


def test_an_explicit_k_is_measured_and_warns_when_it_costs_too_much(char_run, tmp_path, monkeypatch):
    ckpt = load_checkpoint(char_run.checkpoint)
    given_ = export.export_checkpoint(ckpt, 1)
    assert given_.manifest["bn_choice"]["how"] == "given" and given_.manifest["bn_steps"] == 1
    # a tolerance below any cost, so that K = 1 costs "too much" whatever this tiny run learned
    monkeypatch.setitem(export.TOLERANCE, "bpc", given_.manifest["bn_choice"]["cost"] - 0.001)
    model = rbtw.load(char_run.checkpoint)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.export(tmp_path / "k1.rbtw", bn_steps=1)
    said = [str(w.message) for w in caught if "than one BN table per step" in str(w.message)]
    assert len(said) == 1 and said[0].startswith("bn_steps=1 is")           # the API's own name
    assert "with bn_steps=None rbtw chooses K" in said[0] and "--bn-steps" not in said[0]
    result = CliRunner().invoke(main, ["export", str(char_run.checkpoint), str(tmp_path / "k1-cli.rbtw"),
                                       "--bn-steps", "1"])
    assert result.exit_code == 0 and "warning: --bn-steps 1 is" in result.stderr
    assert "without --bn-steps rbtw chooses K" in result.stderr
    monkeypatch.undo()
    quiet = CliRunner().invoke(main, ["export", str(char_run.checkpoint), str(tmp_path / "k1-quiet.rbtw"),
                                      "--bn-steps", "1"])
    assert quiet.exit_code == 0
    assert ("warning:" in quiet.stderr) == (given_.manifest["bn_choice"]["cost"] > export.TOLERANCE["bpc"])
    exact = export.export_checkpoint(ckpt, 10 ** 6)
    assert exact.manifest["bn_steps"] is None and exact.manifest["bn_choice"] == {"how": "exact"}


def test_without_its_data_an_export_keeps_one_table_per_step_and_says_why(tmp_path):
    from rbtw import train as train_module
    from rbtw.config import TrainConfig
    from rbtw.tasks import TaskData
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 5, size=4000).astype(np.int32)
    data = TaskData("char", ids[:3000], ids[3000:3500], ids[3500:], vocab=list("abcde"))
    config = TrainConfig(task="ptb_char", hidden=8, seq_len=10, batch=4, epochs=1, max_batches=2,
                         eval_max_batches=1, log_every=1000)
    train_module.Run(config, tmp_path / "run", data=data, log=lambda line: None).run()
    ex = export.export_checkpoint(load_checkpoint(tmp_path / "run" / "checkpoint.npz"),
                                  data_dir=tmp_path / "no-data")
    assert ex.manifest["bn_steps"] is None and ex.manifest["bn_choice"]["how"] == "unmeasured"
    assert "no validation data" in ex.manifest["bn_choice"]["reason"]


@pytest.mark.slow
def test_sequential_mnist_keeps_its_per_step_tables(tmp_path):
    """The issue's case: a ternary sMNIST model exported with one shared table lost most of
    its accuracy without a word; the measured default keeps what the checkpoint computes."""
    from rbtw.data import load_mnist
    try:
        load_mnist()
    except rbtw.UserError as e:
        pytest.skip(f"MNIST is not in the data cache ({e}); rbtw data import mnist PATH")
    result = rbtw.fit(task="mnist", preset="quick", quant="ternary", stochastic=True, hidden=32, pixels_per_step=8,
                      epochs=1, max_batches=150, eval_max_batches=10, out=tmp_path / "run", log=lambda line: None)
    ckpt = load_checkpoint(result.checkpoint)
    default = export.export_checkpoint(ckpt)
    choice = default.manifest["bn_choice"]
    assert choice["how"] == "measured" and choice["cost"] <= 0.005
    one = export.export_checkpoint(ckpt, 1)
    assert one.manifest["bn_choice"]["cost"] > 0.05          # one shared table: many points lost
    dense = rbtw.load(result.checkpoint).evaluate(max_batches=10)["accuracy"]
    packed = rbtw.load(result.checkpoint, engine="packed").evaluate(max_batches=10)["accuracy"]
    assert abs(packed - dense) <= 0.005                      # the test split agrees too
