"""BN-GRU over a whole sequence, with quantized weights and full backpropagation through time.

Dimensions: T time, B batch, X input, H hidden, G = 3H gate rows in the order r, u, n.

One fused recurrent product per step ("linear before reset", as cuDNN does):

    A_t = BN_t(h_{t-1} W_h^q; γ_a, β_a)      (B, 3H)
    B_t = BN_t(x_t W_x^q; γ_b, 0)            (B, 3H)    all steps in one product
    r = σ(A_r + B_r),  u = σ(A_u + B_u),  n = tanh(B_n + r ⊙ A_n)
    h_t = (1 − u) ⊙ n + u ⊙ h_{t-1}

With ``spec.bn`` false: A_t = h_{t-1} W_h^q + b_a and B_t = x_t W_x^q + b_b.

Gradients for "W_x", "W_h" are dL/dW^q (straight-through estimator).  h0 is a learned vector
used when no initial state is passed in.  Initial values: γ = 0.1, β = 0, orthogonal weights.

The fused implementation (default; rbtw.nn.gru_fused kernels around BLAS products, caches
allocated once) and the NumPy reference (``forward_reference`` / ``backward_reference``) share
one interface; :func:`backward` follows whichever forward made the cache.
"""

import numpy as np

from rbtw.nn import bn as bn_
from rbtw.nn import workspace
from rbtw.nn.cell import (FusedCache, at_step, bn_step, input_grads, input_products, moment_buffers,
                          orthogonal, quantized_weights, sigmoid, step_inputs, update_running_stats)
from rbtw.nn.fused_common import Input, Mode
from rbtw.nn.gru_fused import GRUGrads, GRUParams, GRUStep, gru_step_backward, gru_step_forward


def init_params(spec, rng, dtype=np.float32, gamma0=0.1):
    """Parameters of a BN-GRU layer described by ``spec`` (a CellSpec with kind "gru")."""
    X, H, G = spec.X, spec.H, spec.G
    params = {
        "W_x": orthogonal((X, G), rng, dtype),  # (X, 3H)
        "W_h": orthogonal((H, G), rng, dtype),  # (H, 3H)
        "h0": np.zeros(H, dtype=dtype),
    }
    if spec.bn:
        params.update(
            gamma_a=np.full(G, gamma0, dtype=dtype),
            beta_a=np.zeros(G, dtype=dtype),
            gamma_b=np.full(G, gamma0, dtype=dtype),
        )
    else:
        params["b_a"] = np.zeros(G, dtype=dtype)
        params["b_b"] = np.zeros(G, dtype=dtype)
    return params


def forward(x, params, stats, spec, *, train, rng=None, state=None, weights="deterministic",
            batch_stats=False, t0=0):
    """Run the layer over x (T, B, X); arguments as for rbtw.nn.lstm.forward.

    ``state`` is an optional (h,) with h (B, H).  Returns (h (T, B, H), (h_T,)), cache.
    """
    Wxq, Whq = quantized_weights(params, spec, train=train, rng=rng, weights=weights)
    return forward_quantized(x, Wxq, Whq, params, stats, spec, train=train, state=state,
                             batch_stats=batch_stats, t0=t0)


def forward_quantized(x, Wxq, Whq, params, stats, spec, *, train, state=None, batch_stats=False, t0=0,
                      fused_kernels=True):
    """The layer with its quantized weights given: see :func:`forward`.

    ``fused_kernels`` false runs :func:`forward_reference` instead.
    """
    run = forward_fused if fused_kernels else forward_reference
    return run(x, Wxq, Whq, params, stats, spec, train=train, state=state, batch_stats=batch_stats, t0=t0)


def backward(dhs, cache, dfinal=None):
    """Backpropagation through time; dfinal is an optional (dh_T,).

    Returns dx (T, B, X) (None for a OneHot input) and grads keyed like the parameters
    ("W_x", "W_h" are dL/dW^q; with an initial state passed in, "h_init" (B, H) instead of "h0").
    """
    if isinstance(cache[-1], FusedCache):
        return backward_fused(dhs, cache, dfinal)
    return backward_reference(dhs, cache, dfinal)


def forward_reference(x, Wxq, Whq, params, stats, spec, *, train, state=None, batch_stats=False, t0=0):
    """The NumPy reference of :func:`forward_quantized`: one step at a time."""
    T, B, _ = x.shape
    H = spec.H
    use_batch = train or batch_stats
    nb, cache_b = input_products(x, Wxq, params, stats, spec, use_batch, train, t0)
    if not spec.bn:
        nb = nb + params["b_b"]

    if state is None:
        h = np.broadcast_to(params["h0"], (B, H)).copy()
    else:
        h = np.array(state[0], copy=True)
    hs = np.empty((T, B, H), dtype=x.dtype)
    steps = []
    for t in range(T):
        a = h @ Whq  # (B, 3H)
        if spec.bn:
            A, cache_a = bn_step(a, "a", t0 + t, params, stats, spec, use_batch, train)
        else:
            A, cache_a = a + params["b_a"], None
        Bt = nb[t]
        r = sigmoid(A[:, :H] + Bt[:, :H])
        u = sigmoid(A[:, H:2 * H] + Bt[:, H:2 * H])
        A_n = A[:, 2 * H:]
        n = np.tanh(Bt[:, 2 * H:] + r * A_n)
        h_new = (1.0 - u) * n + u * h
        steps.append((h, r, u, n, A_n, cache_a))
        h = h_new
        hs[t] = h
    cache = (x, Wxq, Whq, params, spec, cache_b, steps, state is not None)
    return (hs, (h,)), cache


def backward_reference(dhs, cache, dfinal=None):
    """Backward of :func:`forward_reference`: see :func:`backward`."""
    x, Wxq, Whq, params, spec, cache_b, steps, had_state = cache
    T, B, _ = x.shape
    H = spec.H
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    dnb = np.empty((T, B, spec.G), dtype=dhs.dtype)
    dh_next = np.zeros((B, H), dtype=dhs.dtype)
    if dfinal is not None:
        dh_next = dh_next + dfinal[0]
    for t in reversed(range(T)):
        h_prev, r, u, n, A_n, cache_a = steps[t]
        dh = dhs[t] + dh_next
        dn = dh * (1.0 - u)
        dzu = dh * (h_prev - n) * u * (1.0 - u)
        dzn = dn * (1.0 - n * n)
        dzr = dzn * A_n * r * (1.0 - r)
        dB = np.concatenate([dzr, dzu, dzn], axis=1)        # (B, 3H)
        dA = np.concatenate([dzr, dzu, dzn * r], axis=1)    # (B, 3H)
        dnb[t] = dB
        if spec.bn:
            da, dga, dba = bn_.backward(dA, cache_a)
            grads["gamma_a"] += dga
            grads["beta_a"] += dba
        else:
            da = dA
            grads["b_a"] += dA.sum(axis=0)
        grads["W_h"] += h_prev.T @ da
        dh_next = dh * u + da @ Whq.T

    if spec.bn:
        db, dgb, _ = bn_.backward(dnb, cache_b)
        grads["gamma_b"] += dgb
    else:
        db = dnb
        grads["b_b"] += dnb.reshape(T * B, spec.G).sum(axis=0)
    db2 = db.reshape(T * B, spec.G)
    grads["W_x"], dx = input_grads(x, db2, Wxq)
    if had_state:
        grads["h_init"] = dh_next
    else:
        grads["h0"] += dh_next.sum(axis=0)
    return dx, grads


# ---------------------------------------------------------------------------------------------
# The fused implementation


def _vectors(params, spec, dt):
    """GRUParams as contiguous dt arrays (β_a or b_a, and b_b); empty stand-ins where absent."""
    def get(name, n=0):
        return np.ascontiguousarray(params[name], dtype=dt) if name in params else np.zeros(n, dt)
    if spec.bn:
        return GRUParams(get("gamma_a"), get("beta_a"), get("gamma_b"), get("b_b"))
    return GRUParams(get("gamma_a"), get("b_a"), get("gamma_b"), get("b_b"))


def forward_fused(x, Wxq, Whq, params, stats, spec, *, train, state=None, batch_stats=False, t0=0):
    """:func:`forward_quantized` with the Numba step kernels (rbtw.nn.gru_fused).

    Cache (FusedCache): hcat (T+1, B, H) h_{-1..T-1} and h_T; xb, xa, gates (T, B, G) x̂_b
    (or b), x̂_a, [r u n]; An (T, B, H) A_n; inv_a, inv_b (T, G).
    """
    T, B = x.shape[:2]
    H, G = spec.H, spec.G
    dt = np.result_type(x.dtype, Whq.dtype)
    Whq = np.ascontiguousarray(Whq, dtype=dt)
    Wxq = np.ascontiguousarray(Wxq, dtype=dt)
    use_batch = train or batch_stats
    bn = spec.bn
    mode = Mode(bn, use_batch, float(spec.eps))
    p = _vectors(params, spec, dt)

    xb = workspace.empty((T, B, G), dt)                                      # x̂_b (T, B, G)
    ids, braw = step_inputs(x, Wxq, dt)
    bn_b = moment_buffers(stats, spec, "b", T, G, t0, use_batch, dt)
    bn_a = moment_buffers(stats, spec, "a", T, G, t0, use_batch, dt)

    hcat = workspace.empty((T + 1, B, H), dt)
    hcat[0] = params["h0"] if state is None else state[0]
    gates = workspace.empty((T, B, G), dt)
    An = workspace.empty((T, B, H), dt)
    xa = workspace.empty((T, B, G) if bn else (T, 0, 0), dt)
    a = workspace.empty((B, G), dt)
    z = workspace.empty((B, G), dt)                                          # scratch
    for t in range(T):
        np.matmul(hcat[t], Whq, out=a)                                       # (B, G)
        out = GRUStep(xb[t], xa[t], gates[t], An[t], hcat[t + 1])
        gru_step_forward(a, hcat[t], Input(ids[t], Wxq, braw[t]), p, mode, at_step(bn_a, t),
                         at_step(bn_b, t), out, z)
    if bn and train:
        for key, moments in (("b", bn_b), ("a", bn_a)):
            update_running_stats(stats, key, t0, moments, spec)
    store = FusedCache(hcat=hcat, xb=xb, xa=xa, gates=gates, An=An, inv_a=bn_a.inv, inv_b=bn_b.inv,
                       batch=use_batch, had_state=state is not None, dt=dt)
    cache = (x, Wxq, Whq, params, spec, store)
    return (hcat[1:], (hcat[T].copy(),)), cache


def backward_fused(dhs, cache, dfinal=None):
    """Backward of :func:`forward_fused`: see :func:`backward`."""
    x, Wxq, Whq, params, spec, s = cache
    T, B = x.shape[:2]
    H, G, dt, bn = spec.H, spec.G, s.dt, spec.bn
    dhs = np.ascontiguousarray(dhs, dtype=dt)
    p = _vectors(params, spec, dt)
    mode = Mode(bn, s.batch, float(spec.eps))
    grads = {k: np.zeros(v.shape, dt) for k, v in params.items()}
    zero = np.zeros(0, dt)
    if bn:
        dgamma_a, dbeta_a, dgamma_b, dbias_b = grads["gamma_a"], grads["beta_a"], grads["gamma_b"], zero
    else:
        dgamma_a, dbeta_a, dgamma_b, dbias_b = zero, grads["b_a"], zero, grads["b_b"]

    db = workspace.empty((T, B, G), dt)   # dL/d(x_t W_x^q)
    da = workspace.empty((T, B, G), dt)   # dL/da_t
    dh_next = np.zeros((B, H), dt)        # da_{t+1} W_h^qᵀ (+ dL/dh_T at the start)
    dhu = np.zeros((B, H), dt)            # dh_{t+1} ⊙ u_{t+1}
    if dfinal is not None:
        dh_next += dfinal[0]
    scratch = (workspace.empty((B, G), dt), workspace.empty((B, G), dt),
               np.empty(G, dt), np.empty(G, dt), np.empty(G, dt))            # dA, dB, s1..s3
    WhqT = np.ascontiguousarray(Whq.T)                                        # (G, H)
    for t in reversed(range(T)):
        saved = GRUStep(s.xb[t], s.xa[t], s.gates[t], s.An[t], s.hcat[t + 1])
        step_grads = GRUGrads(da[t], db[t], dgamma_a, dbeta_a, dgamma_b, dbias_b)
        gru_step_backward(dhs[t], (dh_next, dhu), s.hcat[t], saved, (s.inv_a[t], s.inv_b[t]), p, mode,
                          step_grads, scratch)
        np.matmul(da[t], WhqT, out=dh_next)                                   # (B, H)

    grads["W_h"] = s.hcat[:T].reshape(T * B, H).T @ da.reshape(T * B, G)     # one GEMM
    del da
    grads["W_x"], dx = input_grads(x, db.reshape(T * B, G), Wxq)
    dh0 = dh_next + dhu
    if s.had_state:
        grads["h_init"] = dh0
    else:
        grads["h0"] += dh0.sum(axis=0)
    return dx, grads
