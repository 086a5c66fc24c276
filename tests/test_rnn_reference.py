"""The NumPy reference backward of the BN-LSTM and BN-GRU checked against finite differences
directly (float64, fused_kernels=False: no fused code involved), gate by gate; and the fused
LSTM's input gradient dx against the reference, tight, with dense inputs and stacked layers."""

import numpy as np
import pytest

from gradcheck import assert_grad_close, numeric_grad, random_bn_stats
from rbtw.nn import cell, gru, lstm

MODULES = {"lstm": lstm, "gru": gru}
GATES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "u", "n")}


def _layer(kind, X, H, bn, seed):
    spec = cell.CellSpec(kind=kind, X=X, H=H, quant="none", bn=bn, t_max=8)
    rng = np.random.default_rng(seed)
    params = MODULES[kind].init_params(spec, rng, np.float64)
    for v in params.values():
        v += rng.normal(0, 0.4, v.shape)              # no parameter at a special value
    stats = random_bn_stats(cell.init_stats(spec, np.float64), rng)
    Wxq = rng.normal(0, 0.6, (X, spec.G))             # dense free weights: every gate active
    Whq = rng.normal(0, 0.6, (H, spec.G))
    return spec, params, stats, Wxq, Whq


def _run(kind, x, Wxq, Whq, params, stats, spec, *, train, state, fused):
    s = {k: v.copy() for k, v in stats.items()}
    return MODULES[kind].forward_quantized(x, Wxq, Whq, params, s, spec, train=train, state=state,
                                           fused_kernels=fused)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("bn,train", [(True, True), (True, False), (False, False)])
@pytest.mark.parametrize("with_state", [False, True])
def test_reference_backward_against_finite_differences(kind, bn, train, with_state):
    T, B, X, H = 3, 3, 2, 3
    spec, params, stats, Wxq, Whq = _layer(kind, X, H, bn, seed=7)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((T, B, X))
    R = rng.standard_normal((T, B, H))
    n_state = 2 if kind == "lstm" else 1
    Rf = [rng.standard_normal((B, H)) for _ in range(n_state)]
    state = tuple(rng.normal(0, 0.5, (B, H)) for _ in range(n_state)) if with_state else None

    def f():
        (hs, fin), _ = _run(kind, x, Wxq, Whq, params, stats, spec, train=train, state=state, fused=False)
        return float((hs * R).sum() + sum((a * r).sum() for a, r in zip(fin, Rf)))

    _, cache = _run(kind, x, Wxq, Whq, params, stats, spec, train=train, state=state, fused=False)
    assert not isinstance(cache[-1], MODULES[kind].FusedCache)
    dx, grads = MODULES[kind].backward(R, cache, dfinal=Rf)
    assert_grad_close(dx, numeric_grad(f, x), "x")
    # every gate's rows of W_h, W_x and of the gate-wide vectors, one by one
    gate_wide = [n for n in ("gamma_a", "beta_a", "gamma_b", "b", "b_a", "b_b") if n in params]
    numeric = {"W_x": numeric_grad(f, Wxq), "W_h": numeric_grad(f, Whq)}
    numeric.update({n: numeric_grad(f, params[n]) for n in gate_wide})
    for j, gate in enumerate(GATES[kind]):
        cols = slice(j * H, (j + 1) * H)
        for name, num in numeric.items():
            assert np.abs(num[..., cols]).max() > 1e-6, f"{name}[{gate}] carries no gradient"
            assert_grad_close(grads[name][..., cols], num[..., cols], f"{name}[{gate}]")
    for name in params:
        if name not in numeric and not (with_state and name in ("h0", "c0")):
            assert_grad_close(grads[name], numeric_grad(f, params[name]), name)
    if with_state:
        for name, s in zip(("h_init", "c_init"), state):
            assert_grad_close(grads[name], numeric_grad(f, s), name)


def _stack(kind, x, layers, R, *, train, fused):
    """Two stacked layers on dense x; loss Σ R ⊙ h of the top layer.  Returns dx, grads."""
    caches, h = [], x
    for spec, params, stats, Wxq, Whq in layers:
        (h, _), c = _run(kind, h, Wxq, Whq, params, stats, spec, train=train, state=None, fused=fused)
        caches.append(c)
    dh, out = R, []
    for c in reversed(caches):
        dh, grads = MODULES[kind].backward(dh, c)
        out.append(grads)
    return dh, out


@pytest.mark.parametrize("train", [True, False])
def test_fused_lstm_dx_equals_the_reference_tightly_through_stacked_layers(train):
    T, B, X, H = 6, 4, 5, 7
    layers = [_layer("lstm", X, H, True, seed=1), _layer("lstm", H, H, True, seed=2)]
    rng = np.random.default_rng(3)
    x = rng.standard_normal((T, B, X))                # dense inputs
    R = rng.standard_normal((T, B, H))
    dx_f, g_f = _stack("lstm", x, layers, R, train=train, fused=True)
    dx_r, g_r = _stack("lstm", x, layers, R, train=train, fused=False)
    assert dx_f.dtype == np.float64
    np.testing.assert_allclose(dx_f, dx_r, rtol=1e-11, atol=1e-13 * np.abs(dx_r).max())
    for a, b in zip(g_f, g_r):
        for name in ("W_x", "W_h"):
            np.testing.assert_allclose(a[name], b[name], rtol=1e-11, atol=1e-13 * np.abs(b[name]).max())

    def f():
        h = x
        for spec, params, stats, Wxq, Whq in layers:
            (h, _), _ = _run("lstm", h, Wxq, Whq, params, stats, spec, train=train, state=None, fused=True)
        return float((h * R).sum())

    assert_grad_close(dx_f, numeric_grad(f, x), "x through two layers")
