"""The per-minibatch warm-down: its shape, its domain, and what the trainer applies."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, strategies as st

from rbtw.config import TrainConfig
from rbtw.tasks import TaskData
from rbtw import optim, train
from rbtw.checkpoint import load_checkpoint
from rbtw.errors import UserError

ALICE = Path(__file__).resolve().parents[1] / "data" / "carroll-alice.txt"


@given(kind=st.sampled_from(["cosine", "linear"]), total=st.integers(1, 5000),
       frac=st.floats(0.01, 1.0), to=st.floats(0.0, 1.0))
def test_warmdown_is_flat_then_falls_monotonically_to_its_end_factor(kind, total, frac, to):
    f = np.array([optim.warmdown(kind, s, total, frac, to) for s in range(total)])
    assert f[-1] == pytest.approx(to, abs=1e-12)
    assert np.all(np.diff(f) <= 1e-12) and np.all(f >= to - 1e-12) and np.all(f <= 1.0)
    s0 = (1 - frac) * total
    before = np.arange(total) + 1 <= s0
    assert np.all(f[before] == 1.0)


def test_warmdown_values():
    # 100 minibatches, the last 20 decay: s0 = 80; minibatch 89 is halfway (p = 10/20)
    assert optim.warmdown("cosine", 89, 100, 0.2, 0.0) == pytest.approx(0.5)
    assert optim.warmdown("linear", 89, 100, 0.2, 0.1) == pytest.approx(1 - 0.9 * 0.5)
    assert optim.warmdown("cosine", 84, 100, 0.2, 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert optim.warmdown("none", 99, 100, 0.2, 0.0) == 1.0


@pytest.mark.parametrize("field,value", [("lr_warmdown", "exp"), ("lr_warmdown_frac", 0.0),
                                         ("lr_warmdown_frac", 1.5), ("lr_warmdown_to", -0.1),
                                         ("lr_warmdown_to", 2.0), ("lr_warmdown_epochs", 0),
                                         ("lr_warmdown_epochs", -3)])
def test_warmdown_options_outside_their_domain_are_user_errors(field, value):
    with pytest.raises(UserError):
        TrainConfig(**{field: value}).validate()


def _alice_task():
    text = ALICE.read_text(encoding="utf-8")[:6000]
    vocab = sorted(set(text))
    ids = np.array([vocab.index(c) for c in text], dtype=np.int32)
    return TaskData("char", ids[:5000], ids[5000:5500], ids[5500:], vocab=vocab)


def test_trainer_applies_the_warmdown_per_minibatch(tmp_path):
    data = _alice_task()
    config = TrainConfig(hidden=8, seq_len=20, batch=8, epochs=2, max_batches=10, lr=1e-2,
                               lr_warmdown="linear", lr_warmdown_frac=0.5, lr_warmdown_to=0.1, log_every=1)
    train.Run(config, tmp_path, data=data, log=lambda line: None).run()
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    rates = [e["lr"] for e in events if e["event"] == "train"]
    expected = [1e-2 * optim.warmdown("linear", s, 20, 0.5, 0.1) for s in range(20)]
    np.testing.assert_allclose(rates, expected, rtol=1e-12)
    assert rates[9] == 1e-2 and rates[-1] == pytest.approx(1e-3)


def test_a_branch_continues_exactly_like_a_run_started_with_its_schedule(tmp_path):
    data = _alice_task()
    base = dict(hidden=8, seq_len=20, batch=8, max_batches=4, lr=1e-2, quant="ternary", stochastic=True,
                log_every=1)
    direct = TrainConfig(epochs=5, lr_warmdown="cosine", lr_warmdown_frac=0.4, **base)
    train.Run(direct, tmp_path / "direct", data=data, log=lambda line: None).run()
    train.Run(TrainConfig(epochs=3, **base), tmp_path / "prefix", data=data, log=lambda line: None).run()
    train.branch(tmp_path / "prefix", tmp_path / "branch", epochs=5, lr_warmdown="cosine", lr_warmdown_frac=0.4)
    branched = train.Run(None, tmp_path / "branch", data=data, resume=True, log=lambda line: None)
    assert branched.config == direct
    branched.run()
    for kept in ("checkpoint.npz", "best.npz"):      # the best validation point too, prefix included
        a = load_checkpoint(tmp_path / "direct" / kept)
        b = load_checkpoint(tmp_path / "branch" / kept)
        assert a.meta["step"] == b.meta["step"]
        for name in a.params:
            np.testing.assert_array_equal(a.params[name], b.params[name], err_msg=f"{kept} {name}")
    log = [json.loads(line) for line in (tmp_path / "branch" / "metrics.jsonl").read_text().splitlines()]
    assert [e["event"] for e in log].count("test") == 1 and [e["event"] for e in log].count("epoch") == 5


def test_a_branch_may_not_rewrite_the_past(tmp_path):
    data = _alice_task()
    cfg = TrainConfig(hidden=8, seq_len=20, batch=8, max_batches=4, epochs=3, log_every=100)
    train.Run(cfg, tmp_path / "prefix", data=data, log=lambda line: None).run()
    for changes in (dict(epochs=4, lr_warmdown="cosine", lr_warmdown_frac=0.5),  # decay would start at 8 < 12
                    dict(epochs=2), dict(hidden=16)):
        with pytest.raises(UserError):
            train.branch(tmp_path / "prefix", tmp_path / "b", **changes)
    assert not (tmp_path / "b" / "checkpoint.npz").exists()


@given(epochs=st.integers(2, 30), lr=st.floats(1e-4, 1.0), ratio=st.floats(0.01, 0.99))
def test_adam_rate_decays_geometrically_from_lr_at_the_first_epoch_to_lr_end_at_the_last(epochs, lr, ratio):
    c = TrainConfig(epochs=epochs, lr=lr, lr_end=lr * ratio)
    rates = [optim.epoch_rate(c, e, sgd_rate=None) for e in range(epochs + 2)]
    assert rates[0] == lr and rates[epochs - 1] == pytest.approx(lr * ratio, rel=1e-12)
    for e in range(epochs):
        assert rates[e] == pytest.approx(lr * ratio ** (e / (epochs - 1)), rel=1e-12)
    assert rates[epochs] == rates[epochs + 1] == rates[epochs - 1]     # extended runs keep the end rate


def test_a_branch_may_not_change_the_rate_of_the_last_minibatch_trained(tmp_path):
    data = _alice_task()
    cfg = TrainConfig(hidden=8, seq_len=20, batch=8, max_batches=4, epochs=2, log_every=100)
    train.Run(cfg, tmp_path / "prefix", data=data, log=lambda line: None).run()
    done = 8
    # a warm-down over 3 epochs whose first changed rate is exactly the last minibatch trained (7)
    frac = next(f / 1000 for f in range(1, 1000)
                if optim.first_rate_change(cfg, TrainConfig(**dict(cfg.to_dict(), epochs=3, lr_warmdown="linear",
                                                                    lr_warmdown_frac=f / 1000)), 4, done) == done - 1)
    with pytest.raises(UserError, match="minibatch 7"):
        train.branch(tmp_path / "prefix", tmp_path / "b", epochs=3, lr_warmdown="linear", lr_warmdown_frac=frac)
    assert not (tmp_path / "b" / "checkpoint.npz").exists()


@given(kind=st.sampled_from(["cosine", "linear"]), n=st.integers(1, 50), span=st.integers(1, 6),
       extra=st.integers(0, 4), frac=st.floats(0.01, 1.0), to=st.floats(0.0, 1.0))
def test_a_warmdown_span_shorter_than_the_run_holds_its_end_rate(kind, n, span, extra, frac, to):
    """Within its span the factor is the warm-down of a run that long; after it, its last factor (``to``)."""
    short = TrainConfig(epochs=span, lr_warmdown=kind, lr_warmdown_frac=frac, lr_warmdown_to=to)
    longer = TrainConfig(epochs=span + extra, lr_warmdown=kind, lr_warmdown_frac=frac,
                               lr_warmdown_to=to, lr_warmdown_epochs=span)
    for step in range((span + extra) * n):
        factor = optim.warmdown_factor(longer, n, step)
        if step < span * n:
            assert factor == optim.warmdown_factor(short, n, step)
        else:
            assert factor == optim.warmdown_factor(short, n, span * n - 1) == pytest.approx(to, abs=1e-12)


def _events(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_extending_a_finished_warmdown_run_continues_at_its_end_rate(tmp_path):
    """--resume --epochs E+k after a warm-down: the first E epochs keep their rates and the
    added ones run at the end rate, exactly as a run planned that way from the start."""
    data = _alice_task()
    base = dict(hidden=8, seq_len=20, batch=8, max_batches=4, lr=1e-2, quant="ternary", stochastic=True,
                lr_warmdown="cosine", lr_warmdown_frac=0.5, lr_warmdown_to=0.1, log_every=1)
    quiet = dict(data=data, log=lambda line: None)
    train.Run(TrainConfig(epochs=2, **base), tmp_path / "run", **quiet).run()
    extended = train.Run(TrainConfig(epochs=4, **base), tmp_path / "run", resume=True, **quiet)
    assert extended.config.lr_warmdown_epochs == 2 and extended.config.epochs == 4
    extended.run()
    planned = TrainConfig(epochs=4, lr_warmdown_epochs=2, **base)
    train.Run(planned, tmp_path / "planned", **quiet).run()
    rates = [e["lr"] for e in _events(tmp_path / "run") if e["event"] == "train"]
    assert rates == [e["lr"] for e in _events(tmp_path / "planned") if e["event"] == "train"]
    assert len(rates) == 16 and rates[7] == pytest.approx(1e-3) and set(rates[8:]) == {rates[7]}
    assert rates[:8] == [1e-2 * optim.warmdown("cosine", s, 8, 0.5, 0.1) for s in range(8)]
    a = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    b = load_checkpoint(tmp_path / "planned" / "checkpoint.npz")
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name], err_msg=name)
    assert [e["event"] for e in _events(tmp_path / "run")].count("test") == 1


def test_a_branch_may_end_the_warmdown_earlier_than_its_epochs(tmp_path):
    """A finished warm-down run branched to more epochs with its span pinned is allowed; the
    same branch without the pin would re-raise the rate of trained minibatches and is refused."""
    data = _alice_task()
    cfg = TrainConfig(hidden=8, seq_len=20, batch=8, max_batches=4, epochs=2, log_every=100,
                            lr_warmdown="linear", lr_warmdown_frac=0.5)
    train.Run(cfg, tmp_path / "prefix", data=data, log=lambda line: None).run()
    with pytest.raises(UserError, match="minibatch 4"):
        train.branch(tmp_path / "prefix", tmp_path / "b", epochs=3)
    new = train.branch(tmp_path / "prefix", tmp_path / "b", epochs=3, lr_warmdown_epochs=2)
    assert new.lr_warmdown_epochs == 2
