import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rbtw import optim


def adam_by_hand(w, grads, lr, b1=0.9, b2=0.999, eps=1e-8, clip=None):
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mhat = m / (1 - b1**t)
        vhat = v / (1 - b2**t)
        # official form: lr·sqrt(1-b2^t)/(1-b1^t) · m / (sqrt(v) + eps) == lr·mhat/(sqrt(vhat) + eps·sqrt(1-b2^t)^-1 ...)
        step = lr * math.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
        assert np.allclose(step, lr * mhat / (np.sqrt(vhat) + eps / math.sqrt(1 - b2**t)))
        if clip is not None:
            step = np.clip(step, -clip, clip)
        w = w - step
    return w


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), steps=st.integers(1, 6), clip=st.one_of(st.none(), st.floats(1e-4, 1e-2)))
def test_adam_matches_the_formula(seed, steps, clip):
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal(5)
    grads = [rng.standard_normal(5) for _ in range(steps)]
    params = {"W": w0.copy()}
    opt = optim.Adam(lr=1e-2, clip=None if clip is None else {"W": clip})
    for g in grads:
        opt.step(params, {"W": g})
    np.testing.assert_allclose(params["W"], adam_by_hand(w0, grads, 1e-2, clip=clip), rtol=1e-12)


def test_adam_step_clip_bounds_every_element_but_not_the_weight():
    params = {"W": np.array([5.0, -5.0, 0.0])}
    opt = optim.Adam(lr=1.0, clip={"W": 0.01})
    opt.step(params, {"W": np.array([1.0, -1.0, 0.0])})
    np.testing.assert_allclose(params["W"], [4.99, -4.99, 0.0])


def test_adam_reset_every_n_steps_and_state_round_trip():
    opt = optim.Adam(lr=0.1, reset_every=3)
    params = {"W": np.zeros(2)}
    for _ in range(3):
        opt.step(params, {"W": np.ones(2)})
    assert opt.t == 3
    opt.step(params, {"W": np.ones(2)})
    assert opt.t == 1 and np.allclose(opt.m["W"], 0.1)
    other = optim.Adam(lr=0.1, reset_every=3)
    other.load_state_dict({k: np.array(v) for k, v in opt.state_dict().items()})
    p1, p2 = {"W": np.zeros(2)}, {"W": np.zeros(2)}
    for g in (np.array([1.0, 2.0]), np.array([-1.0, 0.5])):
        opt.step(p1, {"W": g})
        other.step(p2, {"W": g})
    np.testing.assert_array_equal(p1["W"], p2["W"])


def test_adam_minimises_a_quadratic():
    rng = np.random.default_rng(0)
    target = rng.standard_normal(10)
    params = {"W": np.zeros(10)}
    opt = optim.Adam(lr=0.05)
    for _ in range(2000):
        opt.step(params, {"W": 2 * (params["W"] - target)})
    np.testing.assert_allclose(params["W"], target, atol=1e-3)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), max_norm=st.floats(0.01, 10))
def test_global_norm_clipping(seed, max_norm):
    rng = np.random.default_rng(seed)
    grads = {"a": rng.standard_normal(3), "b": rng.standard_normal((2, 2))}
    norm = math.sqrt((grads["a"] ** 2).sum() + (grads["b"] ** 2).sum())
    clipped, before = optim.clip_by_global_norm(grads, max_norm)
    assert before == pytest.approx(norm)
    assert optim.global_norm(clipped) == pytest.approx(min(norm, max_norm))
    np.testing.assert_allclose(clipped["a"] * norm, grads["a"] * optim.global_norm(clipped), rtol=1e-9)


def test_sgd_step_with_clipping():
    params = {"W": np.array([1.0, 1.0])}
    optim.SGD(lr=20, clip_norm=0.25).step(params, {"W": np.array([3.0, 4.0])})
    np.testing.assert_allclose(params["W"], [1 - 20 * 0.15, 1 - 20 * 0.2])


def test_schedules():
    assert optim.geometric(2e-3, 1e-3, 200, 0) == 2e-3
    assert optim.geometric(2e-3, 1e-3, 200, 199) == pytest.approx(1e-3)
    assert optim.geometric(2e-3, 1e-3, 3, 1) == pytest.approx(2e-3 * 0.5**0.5)
    plateau = optim.Plateau(20.0)
    assert [plateau.update(v) for v in (5.0, 4.0, 4.5, 3.0, 3.0)] == [20, 20, 5, 5, 1.25]
