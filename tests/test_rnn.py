"""BN-LSTM and BN-GRU: finite-difference gradient checks in every mode, and agreement with a
naive per-step, per-example loop written plainly here."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import assert_grad_close, numeric_grad, random_bn_stats
from rbtw.nn import cell, gru, lstm

MODULES = {"lstm": lstm, "gru": gru}
QUANT_MODES = [("none", False), ("binary", False), ("ternary", False), ("binary", True), ("ternary", True)]


def make_layer(kind, X, H, quant_mode, stochastic, bn, seed, t_max=8):
    spec = cell.CellSpec(kind=kind, X=X, H=H, quant=quant_mode, stochastic=stochastic, bn=bn, t_max=t_max)
    rng = np.random.default_rng(seed)
    params = MODULES[kind].init_params(spec, rng, np.float64)
    # move every parameter away from its initial value so that no gradient is trivially zero
    for k, v in params.items():
        if k.startswith("W_"):
            continue
        v += rng.normal(0, 0.3, v.shape)
    stats = random_bn_stats(cell.init_stats(spec, np.float64), rng)
    return spec, params, stats


def layer_loss(kind, x, params, stats, spec, R, Rf, *, train, seed, state=None, Wq=None):
    """A scalar: Σ R ⊙ h + Σ Rf ⊙ final state, for one forward pass with the sample of ``seed``."""
    mod = MODULES[kind]
    s = {k: v.copy() for k, v in stats.items()}
    if Wq is None:
        (hs, fin), cache = mod.forward(x, params, s, spec, train=train, rng=np.random.default_rng(seed), state=state)
    else:
        (hs, fin), cache = mod.forward_quantized(x, Wq[0], Wq[1], params, s, spec, train=train, state=state)
    value = float((hs * R).sum() + sum((f * r).sum() for f, r in zip(fin, Rf)))
    return value, cache


def check_layer_gradients(kind, T, B, X, H, quant_mode, stochastic, bn, train, seed, with_state):
    spec, params, stats = make_layer(kind, X, H, quant_mode, stochastic, bn, seed)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((T, B, X))
    R = rng.standard_normal((T, B, H))
    n_state = 2 if kind == "lstm" else 1
    Rf = [rng.standard_normal((B, H)) for _ in range(n_state)]
    state = tuple(rng.standard_normal((B, H)) for _ in range(n_state)) if with_state else None

    _, cache = layer_loss(kind, x, params, stats, spec, R, Rf, train=train, seed=seed, state=state)
    dx, grads = MODULES[kind].backward(R, cache, dfinal=Rf)

    def f():
        return layer_loss(kind, x, params, stats, spec, R, Rf, train=train, seed=seed, state=state)[0]

    assert_grad_close(dx, numeric_grad(f, x), "x")
    for name, value in params.items():
        if name.startswith("W_") and quant_mode != "none":
            continue  # piecewise constant in the latent W: checked through W^q below
        if with_state and name in ("h0", "c0"):
            assert not np.any(grads[name])
            continue
        assert_grad_close(grads[name], numeric_grad(f, value), name)
    if with_state:
        for name, s in zip(("h_init", "c_init"), state):
            assert_grad_close(grads[name], numeric_grad(f, s), name)

    if quant_mode != "none":
        # the same sample as above, now as free variables: dL/dW^q is what the STE hands to W
        Wxq, Whq = cache[1], cache[2]
        Wq = (Wxq.copy(), Whq.copy())

        def fq():
            return layer_loss(kind, x, params, stats, spec, R, Rf, train=train, seed=seed, state=state, Wq=Wq)[0]

        assert abs(fq() - f()) < 1e-12
        # A zero (ternary) column gives a batch variance of exactly 0, where BN's curvature
        # (~1/sqrt(ε)) spoils finite differences; the backward formula holds at any W^q, so
        # check it at a nearby generic point.
        for W, alpha in zip(Wq, spec.alphas):
            W += rng.normal(0, 0.5 * alpha, W.shape)
        _, cache = layer_loss(kind, x, params, stats, spec, R, Rf, train=train, seed=seed, state=state, Wq=Wq)
        _, grads = MODULES[kind].backward(R, cache, dfinal=Rf)
        assert_grad_close(grads["W_x"], numeric_grad(fq, Wq[0]), "W_x^q")
        assert_grad_close(grads["W_h"], numeric_grad(fq, Wq[1]), "W_h^q")


layer_cases = settings(max_examples=6, deadline=None)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("quant_mode,stochastic", QUANT_MODES)
@pytest.mark.parametrize("bn", [True, False])
@layer_cases
@given(T=st.integers(1, 4), B=st.integers(2, 4), X=st.integers(1, 4), H=st.integers(1, 3),
       train=st.booleans(), with_state=st.booleans(), seed=st.integers(0, 2**16))
def test_layer_gradients(kind, quant_mode, stochastic, bn, T, B, X, H, train, with_state, seed):
    check_layer_gradients(kind, T, B, X, H, quant_mode, stochastic, bn, train, seed, with_state)


def test_population_statistics_cover_steps_beyond_t_max():
    spec, params, stats = make_layer("lstm", 3, 2, "ternary", False, True, 0, t_max=2)
    x = np.random.default_rng(0).standard_normal((5, 3, 3))
    check_layer_gradients("lstm", 5, 3, 3, 2, "ternary", False, True, False, 0, False)
    (hs, _), _ = lstm.forward(x, params, stats, spec, train=False)
    assert np.all(np.isfinite(hs))


# ---------------------------------------------------------------------------------------------
# A naive reference: one example and one step at a time, plain Python loops.

def sig(v):
    return 1.0 / (1.0 + math.exp(-v))


def matvec(W, v):
    """y[j] = Σ_i v[i] W[i, j], written out."""
    return [sum(v[i] * W[i][j] for i in range(len(v))) for j in range(len(W[0]))]


def batch_norm_columns(rows, gamma, beta, mean=None, var=None, eps=1e-5):
    """Normalise each column over the rows (batch) or with the given statistics."""
    B, F = len(rows), len(rows[0])
    out = [[0.0] * F for _ in range(B)]
    for j in range(F):
        col = [rows[b][j] for b in range(B)]
        m = sum(col) / B if mean is None else mean[j]
        v = sum((c - m) ** 2 for c in col) / B if var is None else var[j]
        for b in range(B):
            out[b][j] = gamma[j] * (col[b] - m) / math.sqrt(v + eps) + (0.0 if beta is None else beta[j])
    return out


def naive_lstm(x, Wx, Wh, p, bn, pop=None):
    T, B = len(x), len(x[0])
    H = len(p["h0"])
    h = [list(p["h0"]) for _ in range(B)]
    c = [list(p["c0"]) for _ in range(B)]
    out = []
    for t in range(T):
        a = [matvec(Wh, h[b]) for b in range(B)]
        bx = [matvec(Wx, x[t][b]) for b in range(B)]
        if bn:
            st = (lambda k: (pop[f"mean_{k}"][t], pop[f"var_{k}"][t])) if pop else (lambda k: (None, None))
            a = batch_norm_columns(a, p["gamma_a"], p["beta_a"], *st("a"))
            bx = batch_norm_columns(bx, p["gamma_b"], None, *st("b"))
        new_c = []
        gates = []
        for b in range(B):
            z = [a[b][j] + bx[b][j] + (0.0 if bn else p["b"][j]) for j in range(4 * H)]
            i = [sig(z[j]) for j in range(H)]
            f = [sig(z[H + j]) for j in range(H)]
            g = [math.tanh(z[2 * H + j]) for j in range(H)]
            o = [sig(z[3 * H + j]) for j in range(H)]
            new_c.append([f[j] * c[b][j] + i[j] * g[j] for j in range(H)])
            gates.append(o)
        nc = batch_norm_columns(new_c, p["gamma_c"], p["beta_c"], *st("c")) if bn else new_c
        h = [[gates[b][j] * math.tanh(nc[b][j]) for j in range(H)] for b in range(B)]
        c = new_c
        out.append(h)
    return np.array(out)


def naive_gru(x, Wx, Wh, p, bn, pop=None):
    T, B = len(x), len(x[0])
    H = len(p["h0"])
    h = [list(p["h0"]) for _ in range(B)]
    out = []
    for t in range(T):
        A = [matvec(Wh, h[b]) for b in range(B)]
        Bx = [matvec(Wx, x[t][b]) for b in range(B)]
        if bn:
            st = (lambda k: (pop[f"mean_{k}"][t], pop[f"var_{k}"][t])) if pop else (lambda k: (None, None))
            A = batch_norm_columns(A, p["gamma_a"], p["beta_a"], *st("a"))
            Bx = batch_norm_columns(Bx, p["gamma_b"], None, *st("b"))
        else:
            A = [[A[b][j] + p["b_a"][j] for j in range(3 * H)] for b in range(B)]
            Bx = [[Bx[b][j] + p["b_b"][j] for j in range(3 * H)] for b in range(B)]
        new_h = []
        for b in range(B):
            r = [sig(A[b][j] + Bx[b][j]) for j in range(H)]
            u = [sig(A[b][H + j] + Bx[b][H + j]) for j in range(H)]
            n = [math.tanh(Bx[b][2 * H + j] + r[j] * A[b][2 * H + j]) for j in range(H)]
            new_h.append([(1 - u[j]) * n[j] + u[j] * h[b][j] for j in range(H)])
        h = new_h
        out.append(h)
    return np.array(out)


NAIVE = {"lstm": naive_lstm, "gru": naive_gru}


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("quant_mode,stochastic", QUANT_MODES)
@settings(max_examples=8, deadline=None)
@given(T=st.integers(1, 4), B=st.integers(2, 4), X=st.integers(1, 4), H=st.integers(1, 3),
       bn=st.booleans(), train=st.booleans(), seed=st.integers(0, 2**16))
def test_layer_matches_naive_loop(kind, quant_mode, stochastic, T, B, X, H, bn, train, seed):
    spec, params, stats = make_layer(kind, X, H, quant_mode, stochastic, bn, seed)
    x = np.random.default_rng(seed + 7).standard_normal((T, B, X))
    (hs, fin), cache = MODULES[kind].forward(x, params, {k: v.copy() for k, v in stats.items()}, spec,
                                             train=train, rng=np.random.default_rng(seed))
    Wxq, Whq = cache[1], cache[2]
    if quant_mode != "none":
        ax, ah = spec.alphas
        assert set(np.unique(np.abs(Wxq))) <= {0.0, ax} and set(np.unique(np.abs(Whq))) <= {0.0, ah}
    pop = None if train else {k: v.tolist() for k, v in stats.items()}
    expected = NAIVE[kind](x.tolist(), Wxq.tolist(), Whq.tolist(), {k: v.tolist() for k, v in params.items()}, bn, pop)
    np.testing.assert_allclose(hs, expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fin[0], hs[-1])


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_training_updates_running_statistics_with_the_batch_moments(kind):
    spec, params, stats = make_layer(kind, 3, 2, "binary", False, True, 0, t_max=8)
    x = np.random.default_rng(1).standard_normal((3, 5, 3))
    fresh = cell.init_stats(spec, np.float64)
    (_, _), cache = MODULES[kind].forward(x, params, fresh, spec, train=True)
    b = (x.reshape(15, 3) @ cache[1]).reshape(3, 5, spec.G)
    np.testing.assert_allclose(fresh["mean_b"][:3], b.mean(axis=1))
    np.testing.assert_allclose(fresh["var_b"][:3], b.var(axis=1))
    assert list(fresh["count_a"]) == [1, 1, 1, 0, 0, 0, 0, 0]


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_weights_are_sampled_once_per_forward_pass(kind):
    """Two runs with one sample drawn up front and passed in agree with the layer's own draw."""
    spec, params, stats = make_layer(kind, 4, 3, "ternary", True, True, 5)
    x = np.random.default_rng(2).standard_normal((6, 3, 4))
    rng = np.random.default_rng(11)
    (hs, _), cache = MODULES[kind].forward(x, params, {k: v.copy() for k, v in stats.items()}, spec, train=True, rng=rng)
    Wxq, Whq = cell.quantized_weights(params, spec, train=True, rng=np.random.default_rng(11))
    np.testing.assert_array_equal(cache[1], Wxq)
    np.testing.assert_array_equal(cache[2], Whq)
    (hs2, _), _ = MODULES[kind].forward_quantized(x, Wxq, Whq, params, {k: v.copy() for k, v in stats.items()}, spec, train=True)
    np.testing.assert_array_equal(hs, hs2)


def test_float32_is_the_default_and_stays_float32():
    spec = cell.CellSpec(kind="lstm", X=3, H=4, quant="binary", bn=True)
    params = lstm.init_params(spec, np.random.default_rng(0))
    stats = cell.init_stats(spec)
    assert all(v.dtype == np.float32 for v in params.values())
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    (hs, fin), cache = lstm.forward(x, params, stats, spec, train=True)
    dx, grads = lstm.backward(np.ones_like(hs), cache)
    assert hs.dtype == np.float32 and dx.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())


def test_initial_values_follow_the_official_code():
    spec = cell.CellSpec(kind="lstm", X=5, H=3, bn=True)
    p = lstm.init_params(spec, np.random.default_rng(0))
    for k in ("gamma_a", "gamma_b", "gamma_c"):
        assert np.allclose(p[k], 0.1)
    assert np.all(p["beta_a"][3:6] == 1) and not np.any(np.delete(p["beta_a"], range(3, 6)))
    assert not np.any(p["beta_c"]) and not np.any(p["h0"]) and not np.any(p["c0"])
    np.testing.assert_allclose(p["W_h"] @ p["W_h"].T, np.eye(3), atol=1e-6)
    assert spec.alphas == pytest.approx((0.5 * np.sqrt(6 / 17), 0.5 * np.sqrt(6 / 15)))


@pytest.mark.parametrize("kind,X,H,alpha_x,alpha_h", [
    # α = ½·sqrt(6 / (fan_in + G)), G = 4H (LSTM) or 3H (GRU); the figures worked out by hand
    ("lstm", 50, 1000, 0.5 * math.sqrt(6 / 4050), 0.5 * math.sqrt(6 / 5000)),   # 0.01924, 0.01732
    ("gru", 50, 1000, 0.5 * math.sqrt(6 / 3050), 0.5 * math.sqrt(6 / 4000)),    # 0.02218, 0.01936
    ("gru", 7, 5, 0.5 * math.sqrt(6 / 22), 0.5 * math.sqrt(6 / 20)),           # 0.26112, 0.27386
])
@pytest.mark.parametrize("quant_mode", ["binary", "ternary"])
def test_alpha_in_numbers(kind, X, H, alpha_x, alpha_h, quant_mode):
    spec = cell.CellSpec(kind=kind, X=X, H=H, quant=quant_mode)
    assert spec.alphas == pytest.approx((alpha_x, alpha_h), rel=1e-12)
    # and the forward pass uses them: the deterministic weights are ±α (0 for small ternary ones)
    params = MODULES[kind].init_params(spec, np.random.default_rng(0), np.float64)
    for Wq, a in zip(cell.quantized_weights(params, spec, train=False), (alpha_x, alpha_h)):
        assert np.all(np.isclose(np.abs(Wq), a, rtol=1e-12, atol=0) | (Wq == 0))
        assert np.abs(Wq).max() == pytest.approx(a, rel=1e-12)
