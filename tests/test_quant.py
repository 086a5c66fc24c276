"""Quantizers: alphabets, thresholds, unbiased sampling, reproducibility, straight-through."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats

from rbtw import quant

floats = st.floats(-3, 3, allow_nan=False, width=64)
matrices = hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, max_side=12), elements=floats)
alphas = st.floats(0.01, 2.0)
prop = settings(max_examples=60, deadline=None)


@prop
@given(W=matrices, alpha=alphas, stochastic=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_binary_values_are_plus_minus_alpha(W, alpha, stochastic, seed):
    Wq = quant.quantize(W, "binary", alpha, stochastic=stochastic, rng=np.random.default_rng(seed))
    assert Wq.shape == W.shape
    assert np.all((Wq == alpha) | (Wq == -alpha))


@prop
@given(W=matrices, alpha=alphas, stochastic=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_ternary_values_are_in_minus_zero_plus_alpha(W, alpha, stochastic, seed):
    Wq = quant.quantize(W, "ternary", alpha, stochastic=stochastic, rng=np.random.default_rng(seed))
    assert np.all((Wq == alpha) | (Wq == -alpha) | (Wq == 0))


@prop
@given(W=matrices, alpha=alphas)
def test_deterministic_binary_sign_agrees_with_W(W, alpha):
    Wq = quant.quantize(W, "binary", alpha)
    assert np.all((Wq > 0) == (W >= 0))


@prop
@given(W=matrices, alpha=alphas)
def test_deterministic_ternary_thresholds_at_a_third_of_alpha(W, alpha):
    Wq = quant.quantize(W, "ternary", alpha)
    assert np.all(Wq[W > alpha / 3] == alpha)
    assert np.all(Wq[W < -alpha / 3] == -alpha)
    assert np.all(Wq[(W >= -alpha / 3) & (W <= alpha / 3)] == 0)
    nonzero = Wq != 0
    assert np.all(np.sign(Wq[nonzero]) == np.sign(W[nonzero]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("a", [0.3, 0.1, 0.2, 1.0, 0.0542, 0.5 * np.sqrt(6 / (50 + 4000))])
def test_ternary_threshold_edges(dtype, a):
    # zero on the closed interval [−τ, τ], τ = α/3 in W's dtype; the next values out are ±1
    tau = dtype(a / 3)
    W = np.array([tau, -tau, np.nextafter(tau, dtype(1)), -np.nextafter(tau, dtype(1)),
                  np.nextafter(tau, dtype(0)), -np.nextafter(tau, dtype(0)), 0.0], dtype=dtype)
    np.testing.assert_array_equal(quant.quantize(W, "ternary", a) / dtype(a), [0, 0, 1, -1, 0, 0, 0])


@prop
@given(W=hnp.arrays(st.sampled_from([np.float32, np.float64]), hnp.array_shapes(min_dims=2, max_dims=2, max_side=8),
                    elements=st.floats(-3, 3, width=32)), alpha=alphas, mode=st.sampled_from(["binary", "ternary"]))
def test_deterministic_rules_are_odd_off_zero(W, alpha, mode):
    # Q(−W) = −Q(W) for every W ≠ 0 (binary maps 0 to +α), in float32 as in float64
    Wq, Wn = quant.quantize(W, mode, alpha), quant.quantize(-W, mode, alpha)
    off = W != 0
    np.testing.assert_array_equal(Wn[off], -Wq[off])
    if mode == "ternary":
        assert np.all(Wq[W == 0] == 0)


@pytest.mark.parametrize("mode", ["binary", "ternary"])
def test_stochastic_sample_means_match_clipped_W(mode):
    """Each entry's sample mean over n draws is within a binomial confidence bound of clip(W)."""
    alpha = 0.25
    W = np.linspace(-1.5 * alpha, 1.5 * alpha, 41)
    n = 4000
    rng = np.random.default_rng(123)
    draws = np.stack([quant.quantize(W, mode, alpha, stochastic=True, rng=rng) for _ in range(n)])
    target = np.clip(W, -alpha, alpha)
    np.testing.assert_allclose(quant.expected(W, mode, alpha), target)
    # Count of "+α" (binary) or of "non-zero" (ternary) draws is Binomial(n, p).
    if mode == "binary":
        counts = (draws > 0).sum(axis=0)
        p = np.clip((W / alpha + 1) / 2, 0, 1)
    else:
        counts = (draws != 0).sum(axis=0)
        p = np.clip(np.abs(W) / alpha, 0, 1)
        assert np.all(np.sign(draws[:, W != 0]) * np.sign(W[W != 0]) >= 0)
    for k in range(W.size):
        if 0 < p[k] < 1:
            assert stats.binomtest(int(counts[k]), n, p[k]).pvalue > 1e-4, (k, counts[k], p[k])
        else:
            assert counts[k] == n * p[k]
    z = stats.norm.ppf(1 - 1e-4)
    sd = alpha * np.sqrt(np.maximum(1e-12, 1 - (target / alpha) ** 2 if mode == "binary" else np.abs(target) / alpha - (target / alpha) ** 2))
    assert np.all(np.abs(draws.mean(axis=0) - target) <= z * sd / np.sqrt(n) + 1e-12)


@prop
@given(W=matrices, alpha=alphas, mode=st.sampled_from(["binary", "ternary"]), seed=st.integers(0, 2**32 - 1))
def test_same_seed_same_sample(W, alpha, mode, seed):
    a = quant.quantize(W, mode, alpha, stochastic=True, rng=np.random.default_rng(seed))
    b = quant.quantize(W, mode, alpha, stochastic=True, rng=np.random.default_rng(seed))
    np.testing.assert_array_equal(a, b)


def test_stochastic_needs_a_generator():
    with pytest.raises(ValueError):
        quant.quantize(np.zeros((2, 2)), "binary", 0.1, stochastic=True)


@prop
@given(G=matrices)
def test_straight_through_passes_gradient_unchanged(G):
    assert quant.ste_backward(G) is G


def test_none_mode_is_identity_and_bad_mode_rejected():
    W = np.arange(6.0).reshape(2, 3)
    assert quant.quantize(W, "none", 0.1) is W
    with pytest.raises(ValueError):
        quant.quantize(W, "quaternary", 0.1)


def test_default_alpha_rule():
    assert quant.default_alpha(50, 4000) == pytest.approx(0.5 * np.sqrt(6 / 4050))


@prop
@given(W=matrices, alpha=alphas, mode=st.sampled_from(["binary", "ternary"]))
def test_integer_levels_round_trip(W, alpha, mode):
    Wq = quant.quantize(W, mode, alpha)
    Q = quant.integer_levels(Wq, alpha)
    assert Q.dtype == np.int8
    np.testing.assert_array_equal(alpha * Q.astype(np.float64), Wq)


def test_eval_weights_modes():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((5, 5)) * 0.2
    a = 0.1
    det = quant.eval_weights(W, "ternary", a, "deterministic", stochastic=True)
    np.testing.assert_array_equal(det, quant.quantize(W, "ternary", a))
    np.testing.assert_array_equal(quant.eval_weights(W, "ternary", a, "expected", stochastic=True), np.clip(W, -a, a))
    s = quant.eval_weights(W, "ternary", a, "sampled", stochastic=True, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(s, quant.quantize(W, "ternary", a, stochastic=True, rng=np.random.default_rng(3)))
    # a deterministically trained model has nothing to sample from
    np.testing.assert_array_equal(quant.eval_weights(W, "binary", a, "sampled", stochastic=False), quant.quantize(W, "binary", a))
