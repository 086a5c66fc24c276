"""rbtw.generate.draw: tokens follow softmax(logits / temperature)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from rbtw.generate import draw


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_draws_follow_the_softmax(temperature):
    logits = np.array([2.0, -1.0, 0.5, 0.0, 3.0, -40.0], np.float32)
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    rng = np.random.default_rng(7)
    n = 40_000
    counts = np.bincount([draw(logits, rng, temperature) for _ in range(n)], minlength=p.size)
    keep = p * n >= 5                                           # chi-square needs expected counts >= 5
    observed = np.append(counts[keep], counts[~keep].sum())
    expected = np.append(p[keep], p[~keep].sum()) * n
    assert stats.chisquare(observed, expected).pvalue > 1e-4   # fails for a wrong distribution
    assert counts[5] == 0 or p[5] * n > 1e-3                    # exp(-43) never drawn


@settings(max_examples=200, deadline=None)
@given(logits=st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=1, max_size=30),
       temperature=st.floats(1e-3, 1e3), seed=st.integers(0, 2**32 - 1))
def test_draw_returns_a_valid_id_with_positive_probability(logits, temperature, seed):
    logits = np.array(logits, np.float32)
    i = draw(logits, np.random.default_rng(seed), temperature)
    assert 0 <= i < logits.size
    z = logits.astype(np.float64) / temperature
    assert np.exp(z[i] - z.max()) > 0                           # never an id of weight 0


def test_temperature_zero_is_argmax_and_same_seed_same_token():
    logits = np.array([0.1, 5.0, 4.9], np.float32)
    assert draw(logits, np.random.default_rng(0), 0.0) == 1
    a = [draw(logits, np.random.default_rng(s), 1.0) for s in range(50)]
    b = [draw(logits, np.random.default_rng(s), 1.0) for s in range(50)]
    assert a == b and len(set(a)) > 1
