"""Gradient checks (float64 finite differences) of the simple layers and of per-step BN."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import assert_grad_close, numeric_grad
from rbtw.nn import bn, dropout, embedding, linear, loss

small = settings(max_examples=15, deadline=None)


@small
@given(N=st.integers(1, 5), I=st.integers(1, 5), O=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_linear_gradients(N, I, O, seed):
    rng = np.random.default_rng(seed)
    p = linear.init_params(I, O, rng, np.float64)
    p["b"] = rng.standard_normal(O)
    x = rng.standard_normal((N, I))
    R = rng.standard_normal((N, O))

    def f():
        return float((linear.forward(x, p)[0] * R).sum())

    y, cache = linear.forward(x, p)
    dx, grads = linear.backward(R, cache)
    assert_grad_close(dx, numeric_grad(f, x), "x")
    for k in p:
        assert_grad_close(grads[k], numeric_grad(f, p[k]), k)


@small
@given(T=st.integers(1, 4), B=st.integers(1, 4), V=st.integers(2, 6), E=st.integers(1, 4),
       seed=st.integers(0, 2**16))
def test_embedding_gradients(T, B, V, E, seed):
    rng = np.random.default_rng(seed)
    p = embedding.init_params(V, E, rng, np.float64)
    ids = rng.integers(0, V, size=(T, B))
    R = rng.standard_normal((T, B, E))

    def f():
        return float((embedding.forward(ids, p)[0] * R).sum())

    _, cache = embedding.forward(ids, p)
    _, grads = embedding.backward(R, cache)
    assert_grad_close(grads["E"], numeric_grad(f, p["E"]), "E")


def test_onehot_has_one_one_per_row_and_rejects_bad_ids():
    ids = np.array([[0, 2], [1, 1]])
    oh = embedding.onehot(ids, 3)
    assert oh.shape == (2, 2, 3)
    assert np.all(oh.sum(axis=-1) == 1)
    assert np.all(np.argmax(oh, axis=-1) == ids)
    np.testing.assert_raises(ValueError, embedding.onehot, np.array([3]), 3)


@small
@given(N=st.integers(1, 6), C=st.integers(2, 6), masked=st.booleans(), seed=st.integers(0, 2**16))
def test_softmax_cross_entropy_gradient_and_value(N, C, masked, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((N, C)) * 3
    y = rng.integers(0, C, size=N)
    mask = None
    if masked:
        mask = (rng.random(N) < 0.6).astype(np.float64)
        mask[0] = 1.0
    value, cache = loss.forward(logits, y, mask)
    m = np.ones(N) if mask is None else mask
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = -(m * np.log(p[np.arange(N), y])).sum() / m.sum()
    assert abs(value - expected) < 1e-10
    num = numeric_grad(lambda: loss.forward(logits, y, mask)[0], logits)
    assert_grad_close(loss.backward(cache), num, "logits")


def test_softmax_uniform_logits_give_log_classes():
    value, _ = loss.forward(np.zeros((4, 7)), np.array([0, 1, 2, 3]))
    assert abs(value - np.log(7)) < 1e-12


@small
@given(p=st.floats(0.0, 0.9), seed=st.integers(0, 2**16))
def test_dropout_scales_kept_units_and_backward_matches(p, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((50, 20))
    y, cache = dropout.forward(x, p, train=True, rng=np.random.default_rng(seed))
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p))
    R = rng.standard_normal(x.shape)
    num = numeric_grad(lambda: float((dropout.forward(x, p, train=True, rng=np.random.default_rng(seed))[0] * R).sum()), x)
    assert_grad_close(dropout.backward(R, cache), num, "x")
    assert dropout.forward(x, p, train=False)[0] is x


def test_dropout_keep_rate_is_statistically_right():
    from scipy import stats
    x = np.ones(20000)
    y, _ = dropout.forward(x, 0.3, train=True, rng=np.random.default_rng(1))
    kept = int((y != 0).sum())
    assert stats.binomtest(kept, x.size, 0.7).pvalue > 1e-4


@small
@given(T=st.integers(1, 3), B=st.integers(2, 5), F=st.integers(1, 4), train=st.booleans(),
       seed=st.integers(0, 2**16))
def test_bn_layer_gradients(T, B, F, train, seed):
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((T, B, F)) * 2 + 1
    params = {"gamma": rng.uniform(0.5, 1.5, F), "beta": rng.standard_normal(F)}
    stats = bn.init_stats(T + 1, F, np.float64)
    stats["mean"][:] = rng.standard_normal((T + 1, F))
    stats["var"][:] = rng.uniform(0.5, 2, (T + 1, F))
    R = rng.standard_normal((T, B, F))

    def f():
        # a copy of the statistics, so the finite differences do not move them
        s = {k: v.copy() for k, v in stats.items()}
        return float((bn.layer_forward(u, params, s, train=train)[0] * R).sum())

    _, cache = bn.layer_forward(u, params, {k: v.copy() for k, v in stats.items()}, train=train)
    du, grads = bn.layer_backward(R, cache)
    assert_grad_close(du, numeric_grad(f, u), "u")
    for k in params:
        assert_grad_close(grads[k], numeric_grad(f, params[k]), k)


@small
@given(T=st.integers(1, 4), B=st.integers(2, 16), F=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_bn_training_output_is_standardised_per_step(T, B, F, seed):
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((T, B, F)) * rng.uniform(0.5, 5, F) + rng.standard_normal(F) * 3
    params = {"gamma": np.ones(F), "beta": np.zeros(F)}
    eps = 1e-12
    y, _ = bn.layer_forward(u, params, bn.init_stats(T, F, np.float64), train=True, eps=eps)
    np.testing.assert_allclose(y.mean(axis=1), 0.0, atol=1e-9)
    # y = (u − μ)/sqrt(σ² + ε) has variance σ²/(σ² + ε) exactly: 1 only when σ² ≫ ε.  Two nearly
    # equal rows (B = 2, seed 252: σ² = 3e-9) give 0.99967, which is right, not a miss of 1.
    s2 = u.var(axis=1)
    np.testing.assert_allclose(y.var(axis=1), s2 / (s2 + eps), rtol=1e-9)
    wide = s2 > 1e-3                                  # ε/σ² < 1e-9: standardised to 1
    np.testing.assert_allclose(y.var(axis=1)[wide], 1.0, rtol=1e-8)


def test_bn_running_statistics_converge_to_the_data():
    rng = np.random.default_rng(0)
    T, B, F = 3, 64, 4
    mu = np.array([[1.0, -2.0, 0.5, 3.0], [0.0, 0.0, 0.0, 0.0], [-1.0, 4.0, 2.0, 0.0]])
    sd = np.array([[1.0, 2.0, 0.5, 3.0], [1.0, 1.0, 1.0, 1.0], [2.0, 0.1, 1.0, 5.0]])
    stats = bn.init_stats(T, F, np.float64)
    params = {"gamma": np.ones(F), "beta": np.zeros(F)}
    for _ in range(400):
        u = rng.standard_normal((T, B, F)) * sd[:, None, :] + mu[:, None, :]
        bn.layer_forward(u, params, stats, train=True)
    np.testing.assert_allclose(stats["mean"], mu, atol=0.1 * sd.max())
    np.testing.assert_allclose(stats["var"], sd**2 * (B - 1) / B, rtol=0.15)
    assert np.all(stats["count"] == 400)


def test_bn_update_rule_is_the_exponential_average():
    stats = bn.init_stats(2, 1, np.float64)
    bn.update_stats(stats, 0, np.array([2.0]), np.array([3.0]))
    assert stats["mean"][0, 0] == 2.0 and stats["var"][0, 0] == 3.0  # first update copies
    bn.update_stats(stats, 0, np.array([4.0]), np.array([1.0]))
    assert np.isclose(stats["mean"][0, 0], 0.95 * 2 + 0.05 * 4)
    assert np.isclose(stats["var"][0, 0], 0.95 * 3 + 0.05 * 1)
    bn.update_stats(stats, 7, np.array([5.0]), np.array([5.0]))  # t >= T_max -> last row
    assert stats["mean"][1, 0] == 5.0 and stats["count"][1] == 1


@small
@given(B=st.integers(2, 8), F=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_bn_eval_rows_are_independent_of_each_other(B, F, seed):
    rng = np.random.default_rng(seed)
    T = 3
    stats = bn.init_stats(2, F, np.float64)  # T > T_max: the last row serves later steps
    stats["mean"][:] = rng.standard_normal((2, F))
    stats["var"][:] = rng.uniform(0.5, 2, (2, F))
    params = {"gamma": rng.standard_normal(F), "beta": rng.standard_normal(F)}
    u = rng.standard_normal((T, B, F))
    y_all, _ = bn.layer_forward(u, params, stats, train=False)
    other = u.copy()
    other[:, 1:] = rng.standard_normal((T, B - 1, F)) * 10
    y_other, _ = bn.layer_forward(other, params, stats, train=False)
    y_one, _ = bn.layer_forward(u[:, :1], params, stats, train=False)
    np.testing.assert_allclose(y_all[:, 0], y_other[:, 0])
    np.testing.assert_allclose(y_all[:, :1], y_one)
    expected_last = params["gamma"] * (u[2, 0] - stats["mean"][1]) / np.sqrt(stats["var"][1] + bn.EPS) + params["beta"]
    np.testing.assert_allclose(y_all[2, 0], expected_last)
