"""The per-minibatch warm-down: its shape, its domain, and what the trainer applies."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, strategies as st

from rbtw import optim, train
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
                                         ("lr_warmdown_to", 2.0)])
def test_warmdown_options_outside_their_domain_are_user_errors(field, value):
    with pytest.raises(UserError):
        train.TrainConfig(**{field: value}).validate()


def test_trainer_applies_the_warmdown_per_minibatch(tmp_path):
    text = ALICE.read_text(encoding="utf-8")[:6000]
    vocab = sorted(set(text))
    ids = np.array([vocab.index(c) for c in text], dtype=np.int32)
    data = train.TaskData("char", ids[:5000], ids[5000:5500], ids[5500:], vocab=vocab)
    config = train.TrainConfig(hidden=8, seq_len=20, batch=8, epochs=2, max_batches=10, lr=1e-2,
                               lr_warmdown="linear", lr_warmdown_frac=0.5, lr_warmdown_to=0.1, log_every=1)
    train.Run(config, tmp_path, data=data, log=lambda line: None).run()
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    rates = [e["lr"] for e in events if e["event"] == "train"]
    expected = [1e-2 * optim.warmdown("linear", s, 20, 0.5, 0.1) for s in range(20)]
    np.testing.assert_allclose(rates, expected, rtol=1e-12)
    assert rates[9] == 1e-2 and rates[-1] == pytest.approx(1e-3)
