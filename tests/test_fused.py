"""The fused (Numba) BN-LSTM and BN-GRU agree with the NumPy reference: outputs, final state, running
statistics and every gradient, in float64 (to rounding) and float32; one-hot inputs as a row
gather agree with the dense one-hot matrix."""

import numpy as np
import pytest

from gradcheck import random_bn_stats
from rbtw import models
from rbtw.nn import cell, embedding, fused_common, gru, lstm

QUANT = [("none", False), ("binary", False), ("ternary", False), ("binary", True), ("ternary", True)]
TOL = {np.float64: 1e-10, np.float32: 1e-4}


MODULES = {"lstm": lstm, "gru": gru}


def make(dt, bn, quant, stochastic, X, H, seed, t_max=4, kind="lstm"):
    spec = cell.CellSpec(kind=kind, X=X, H=H, quant=quant, stochastic=stochastic, bn=bn, t_max=t_max)
    rng = np.random.default_rng(seed)
    params = MODULES[kind].init_params(spec, rng, dt)
    for k, v in params.items():
        if not k.startswith("W_"):
            v += rng.normal(0, 0.3, v.shape).astype(dt)
    stats = random_bn_stats(cell.init_stats(spec, dt), rng)
    return spec, params, stats, rng


def run_both(x, Wq, params, stats, spec, train, state, R, Rf, batch_stats=False, t0=0):
    mod = MODULES[spec.kind]
    out = []
    for fk in (False, True):
        s = {k: v.copy() for k, v in stats.items()}
        (hs, fin), cache = mod.forward_quantized(x, Wq[0], Wq[1], params, s, spec, train=train, state=state,
                                                 batch_stats=batch_stats, t0=t0, fused_kernels=fk)
        dx, g = mod.backward(R, cache, dfinal=Rf)
        out.append(dict(hs=hs, h=fin[0], c=fin[-1], dx=dx, **{"stat " + k: v for k, v in s.items()},
                        **{"grad " + k: v for k, v in g.items()}))
    return out


def assert_same(ref, got, tol):
    assert set(ref) == set(got)
    for k in ref:
        r = np.asarray(ref[k], dtype=np.float64)
        g = np.asarray(got[k], dtype=np.float64)
        scale = max(1.0, float(np.abs(r).max(initial=0.0)))
        assert float(np.abs(g - r).max(initial=0.0)) <= tol * scale, k
        assert got[k].dtype == ref[k].dtype, k


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("dt", [np.float64, np.float32])
@pytest.mark.parametrize("bn", [True, False])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("with_state", [True, False])
@pytest.mark.parametrize("quant,stochastic", QUANT)
def test_fused_matches_reference(kind, dt, bn, train, with_state, quant, stochastic):
    T, B, X, H = 6, 5, 4, 3                       # T > t_max: shared last row of the statistics
    spec, params, stats, rng = make(dt, bn, quant, stochastic, X, H, seed=3, kind=kind)
    Wq = cell.quantized_weights(params, spec, train=True, rng=rng)
    x = rng.standard_normal((T, B, X)).astype(dt)
    n_state = 2 if kind == "lstm" else 1
    state = tuple(rng.standard_normal((B, H)).astype(dt) for _ in range(n_state)) if with_state else None
    R = rng.standard_normal((T, B, H)).astype(dt)
    Rf = [rng.standard_normal((B, H)).astype(dt) for _ in range(n_state)]
    ref, got = run_both(x, Wq, params, stats, spec, train, state, R, Rf)
    assert_same(ref, got, TOL[dt])


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("dt", [np.float64, np.float32])
def test_fused_batch_statistics_in_evaluation_and_offset(kind, dt):
    spec, params, stats, rng = make(dt, True, "binary", True, 3, 4, seed=5, kind=kind)
    Wq = cell.quantized_weights(params, spec, train=True, rng=rng)
    x = rng.standard_normal((3, 4, 3)).astype(dt)
    R = rng.standard_normal((3, 4, 4)).astype(dt)
    for train, batch_stats in ((False, True), (False, False), (True, False)):
        ref, got = run_both(x, Wq, params, stats, spec, train, None, R, None, batch_stats=batch_stats, t0=2)
        assert_same(ref, got, TOL[dt])


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("dt", [np.float64, np.float32])
def test_onehot_input_is_a_row_gather(kind, dt):
    spec, params, stats, rng = make(dt, True, "ternary", False, 7, 3, seed=1, kind=kind)
    mod = MODULES[kind]
    Wq = cell.quantized_weights(params, spec, train=True, rng=rng)
    ids = rng.integers(0, 7, size=(4, 5))
    R = rng.standard_normal((4, 5, 3)).astype(dt)
    results = []
    for x in (embedding.onehot(ids, 7, dt), embedding.OneHot(ids, 7, dt)):
        s = {k: v.copy() for k, v in stats.items()}
        (hs, _), cache = mod.forward_quantized(x, Wq[0], Wq[1], params, s, spec, train=True)
        dx, g = mod.backward(R, cache)
        results.append((hs, g))
    (hs0, g0), (hs1, g1) = results
    np.testing.assert_allclose(hs1, hs0, rtol=TOL[dt], atol=TOL[dt])
    for k in g0:
        np.testing.assert_allclose(g1[k], g0[k], rtol=TOL[dt], atol=TOL[dt], err_msg=k)
    with pytest.raises(ValueError):
        embedding.OneHot(ids + 7, 7)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_char_model_fused_matches_reference(monkeypatch, kind):
    spec = models.ModelSpec(kind="char", n_in=6, n_out=6, cell=kind, hidden=5, layers=2, quant="binary",
                            stochastic=True, t_max=3)
    params, stats = models.init(spec, np.random.default_rng(0), np.float64)
    ids = np.random.default_rng(1).integers(0, 6, size=(5, 4))
    out = []
    for fk in (True, False):
        if not fk:
            monkeypatch.setattr(MODULES[kind], "forward_fused", MODULES[kind].forward_reference)
        s = {k: v.copy() for k, v in stats.items()}
        value, grads, _ = models.loss_and_grads(params, s, spec, ids, ids, rng=np.random.default_rng(2))
        out.append((value, grads, s))
    (v0, g0, s0), (v1, g1, s1) = out
    assert v0 == pytest.approx(v1, rel=1e-12)
    for k in g0:
        np.testing.assert_allclose(g0[k], g1[k], rtol=1e-9, atol=1e-12, err_msg=k)
    for k in s0:
        np.testing.assert_allclose(s0[k], s1[k], rtol=1e-12, err_msg=k)


def test_float32_tanh_approximation():
    x = np.linspace(-12, 12, 200001, dtype=np.float32)
    y = np.empty_like(x)
    fused_common.tanh_array(x, y)
    assert np.abs(y - np.tanh(x)).max() < 1e-6
    assert np.all(np.abs(y) <= 1)
    z = np.empty(3)
    fused_common.tanh_array(np.array([-1.0, 0.0, 2.0]), z)
    np.testing.assert_array_equal(z, np.tanh([-1.0, 0.0, 2.0]))


def test_workspace_reuses_only_unreferenced_arrays():
    from rbtw.nn import workspace
    a = workspace.empty((3, 5), np.float32)
    b = workspace.empty((3, 5), np.float32)
    assert a is not b                                  # a is still held
    view = a[1:]
    del a
    c = workspace.empty((3, 5), np.float32)
    assert c is not view.base                          # a view keeps its base out of circulation
    del view, b
    d = workspace.empty((3, 5), np.float32)
    assert d.shape == (3, 5) and d.dtype == np.float32


def test_two_live_passes_do_not_share_buffers():
    """A second forward pass before the first one's backward must not overwrite its caches."""
    spec, params, stats, rng = make(np.float32, True, "binary", True, 4, 3, seed=9)
    Wq = cell.quantized_weights(params, spec, train=True, rng=rng)
    x1, x2 = (rng.standard_normal((5, 4, 4)).astype(np.float32) for _ in range(2))
    R = rng.standard_normal((5, 4, 3)).astype(np.float32)
    (h1, _), c1 = lstm.forward_quantized(x1, Wq[0], Wq[1], params, {k: v.copy() for k, v in stats.items()}, spec, train=True)
    h1_copy = h1.copy()
    _, g1 = lstm.backward(R, c1)
    (h2, _), c2 = lstm.forward_quantized(x2, Wq[0], Wq[1], params, {k: v.copy() for k, v in stats.items()}, spec, train=True)
    np.testing.assert_array_equal(h1, h1_copy)
    _, g1_again = lstm.backward(R, c1)
    for k in g1:
        np.testing.assert_array_equal(g1[k], g1_again[k])
