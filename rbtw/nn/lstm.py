"""BN-LSTM over a whole sequence, with quantized weights and full backpropagation through time.

Dimensions: T time, B batch, X input, H hidden, G = 4H gate rows in the order i, f, g, o.

    b_t = x_t W_x^q                  (B, G)   all steps in one product
    a_t = h_{t-1} W_h^q              (B, G)
    z_t = BN_t(a_t; γ_a, β_a) + BN_t(b_t; γ_b, 0)      β_a carries the gate bias
    i, f, o = σ(z_i), σ(z_f), σ(z_o);   g = tanh(z_g)
    c_t = f ⊙ c_{t-1} + i ⊙ g                          the un-normalised c is carried
    h_t = o ⊙ tanh(BN_t(c_t; γ_c, β_c))

With ``spec.bn`` false (the BinaryConnect-style baseline): z_t = a_t + b_t + b and
h_t = o ⊙ tanh(c_t).

W^q is drawn once per forward pass (rbtw.nn.cell.quantized_weights).  The gradient returned for
"W_x" and "W_h" is dL/dW^q, which the straight-through estimator applies to the latent W.
h0 and c0 are learned vectors used when no initial state is passed in.

Initial values (official code): γ = 0.1 for all three BNs, β = 0 except the forget-gate slice
of β_a (or of b without BN), which is 1; W_x and W_h (semi-)orthogonal; h0 = c0 = 0.

Two implementations with one interface: the fused one (default, float32 and float64; Numba
kernels in rbtw.nn.lstm_fused, BLAS for the products, every cache preallocated once per pass) and
the plain NumPy reference (``forward_reference`` / ``backward_reference``, step by step, kept as
the specification the fused path is tested against).  :func:`backward` follows whichever
forward made the cache.  Inputs may be a (T, B, X) array or an rbtw.nn.embedding.OneHot.
"""

import numpy as np

from rbtw.nn import bn as bn_
from rbtw.nn import workspace
from rbtw.nn.cell import (FusedCache, at_step, bn_step, input_grads, input_products, moment_buffers,
                          orthogonal, quantized_weights, sigmoid, step_inputs, update_running_stats)
from rbtw.nn.fused_common import Input, Mode
from rbtw.nn.lstm_fused import LSTMGrads, LSTMParams, LSTMStep, lstm_step_backward, lstm_step_forward


def init_params(spec, rng, dtype=np.float32, gamma0=0.1):
    """Parameters of a BN-LSTM layer described by ``spec`` (a CellSpec with kind "lstm")."""
    X, H, G = spec.X, spec.H, spec.G
    forget = np.zeros(G, dtype=dtype)
    forget[H:2 * H] = 1.0
    params = {
        "W_x": orthogonal((X, G), rng, dtype),  # (X, 4H)
        "W_h": orthogonal((H, G), rng, dtype),  # (H, 4H)
        "h0": np.zeros(H, dtype=dtype),
        "c0": np.zeros(H, dtype=dtype),
    }
    if spec.bn:
        params.update(
            gamma_a=np.full(G, gamma0, dtype=dtype),
            beta_a=forget,
            gamma_b=np.full(G, gamma0, dtype=dtype),
            gamma_c=np.full(H, gamma0, dtype=dtype),
            beta_c=np.zeros(H, dtype=dtype),
        )
    else:
        params["b"] = forget
    return params


def forward(x, params, stats, spec, *, train, rng=None, state=None, weights="deterministic",
            batch_stats=False, t0=0):
    """Run the layer over x (T, B, X).

    train        batch statistics + running-statistics update (in place) + training weights
    rng          numpy Generator for stochastic quantization
    state        optional (h, c), each (B, H), instead of the learned h0, c0
    weights      evaluation weights: "deterministic" | "sampled" | "expected"
    batch_stats  evaluate with the batch's own statistics instead of the population's
    t0           time index of x[0] (selects rows of the population statistics)

    Returns (h (T, B, H), (h_T, c_T)), cache.
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
    """Backpropagation through time.

    dhs: (T, B, H) gradient of the loss w.r.t. every h_t; dfinal: optional (dh_T, dc_T).
    Returns dx (T, B, X) (None for a OneHot input) and grads keyed like the parameters
    ("W_x", "W_h" are dL/dW^q).  When an initial state was passed in, grads also hold "h_init"
    and "c_init" (B, H) instead of "h0", "c0".
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

    if state is None:
        h = np.broadcast_to(params["h0"], (B, H)).copy()
        c = np.broadcast_to(params["c0"], (B, H)).copy()
    else:
        h, c = (np.array(s, copy=True) for s in state)
    hs = np.empty((T, B, H), dtype=x.dtype)
    steps = []
    for t in range(T):
        a = h @ Whq  # (B, 4H)
        if spec.bn:
            na, cache_a = bn_step(a, "a", t0 + t, params, stats, spec, use_batch, train)
        else:
            na, cache_a = a + params["b"], None
        z = na + nb[t]
        i = sigmoid(z[:, :H])
        f = sigmoid(z[:, H:2 * H])
        g = np.tanh(z[:, 2 * H:3 * H])
        o = sigmoid(z[:, 3 * H:])
        c_new = f * c + i * g
        if spec.bn:
            nc, cache_c = bn_step(c_new, "c", t0 + t, params, stats, spec, use_batch, train)
        else:
            nc, cache_c = c_new, None
        tc = np.tanh(nc)
        h_new = o * tc
        steps.append((h, c, i, f, g, o, tc, cache_a, cache_c))
        h, c = h_new, c_new
        hs[t] = h
    cache = (x, Wxq, Whq, params, spec, cache_b, steps, state is not None)
    return (hs, (h, c)), cache


def backward_reference(dhs, cache, dfinal=None):
    """Backward of :func:`forward_reference`: see :func:`backward`."""
    x, Wxq, Whq, params, spec, cache_b, steps, had_state = cache
    T, B, _ = x.shape
    H = spec.H
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    dnb = np.empty((T, B, spec.G), dtype=dhs.dtype)
    dh_next = np.zeros((B, H), dtype=dhs.dtype)
    dc_next = np.zeros((B, H), dtype=dhs.dtype)
    if dfinal is not None:
        dh_next = dh_next + dfinal[0]
        dc_next = dc_next + dfinal[1]
    for t in reversed(range(T)):
        h_prev, c_prev, i, f, g, o, tc, cache_a, cache_c = steps[t]
        dh = dhs[t] + dh_next
        do = dh * tc
        dnc = dh * o * (1.0 - tc * tc)
        if spec.bn:
            dc, dgc, dbc = bn_.backward(dnc, cache_c)
            grads["gamma_c"] += dgc
            grads["beta_c"] += dbc
        else:
            dc = dnc
        dc = dc + dc_next
        dz = np.concatenate([
            dc * g * i * (1.0 - i),          # d z_i
            dc * c_prev * f * (1.0 - f),     # d z_f
            dc * i * (1.0 - g * g),          # d z_g
            do * o * (1.0 - o),              # d z_o
        ], axis=1)                           # (B, 4H)
        dc_next = dc * f
        dnb[t] = dz
        if spec.bn:
            da, dga, dba = bn_.backward(dz, cache_a)
            grads["gamma_a"] += dga
            grads["beta_a"] += dba
        else:
            da = dz
            grads["b"] += dz.sum(axis=0)
        grads["W_h"] += h_prev.T @ da
        dh_next = da @ Whq.T

    if spec.bn:
        db, dgb, _ = bn_.backward(dnb, cache_b)
        grads["gamma_b"] += dgb
    else:
        db = dnb
    db2 = db.reshape(T * B, spec.G)
    grads["W_x"], dx = input_grads(x, db2, Wxq)
    if had_state:
        grads["h_init"], grads["c_init"] = dh_next, dc_next
    else:
        grads["h0"] += dh_next.sum(axis=0)
        grads["c0"] += dc_next.sum(axis=0)
    return dx, grads


# ---------------------------------------------------------------------------------------------
# The fused implementation


def _vectors(params, spec, dt):
    """LSTMParams as contiguous dt arrays; empty stand-ins without BN (β_a is then b)."""
    def get(name, n):
        return np.ascontiguousarray(params[name], dtype=dt) if name in params else np.zeros(n, dt)
    G = spec.G
    beta_a = get("beta_a", G) if spec.bn else get("b", G)
    return LSTMParams(get("gamma_a", 0), beta_a, get("gamma_b", 0), get("gamma_c", 0), get("beta_c", 0))


def forward_fused(x, Wxq, Whq, params, stats, spec, *, train, state=None, batch_stats=False, t0=0):
    """:func:`forward_quantized` with the Numba step kernels; see rbtw.nn.lstm_fused.

    Cache (a FusedCache):
        hcat, ccat (T+1, B, H)  h_{-1..T-1}, c_{-1..T-1} and the final state (row 0: initial state)
        xb (T, B, G)            x̂_b (BN) or x W_x^q (no BN)
        xa (T, B, G)            x̂_a;  gates (T, B, G) i, f, g, o after their nonlinearity
        xc, tc (T, B, H)        x̂_c and tanh(BN(c))
        inv_a, inv_b (T, G), inv_c (T, H)   1/sqrt(σ² + ε) of each step
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
    bn_c = moment_buffers(stats, spec, "c", T, H, t0, use_batch, dt)

    hcat = workspace.empty((T + 1, B, H), dt)
    ccat = workspace.empty((T + 1, B, H), dt)
    hcat[0], ccat[0] = (params["h0"], params["c0"]) if state is None else state
    gates = workspace.empty((T, B, G), dt)
    tc = workspace.empty((T, B, H), dt)
    xa = workspace.empty((T, B, G) if bn else (T, 0, 0), dt)
    xc = workspace.empty((T, B, H) if bn else (T, 0, 0), dt)
    a = workspace.empty((B, G), dt)
    z = workspace.empty((B, G), dt)                                          # scratch
    for t in range(T):
        np.matmul(hcat[t], Whq, out=a)                                       # (B, G)
        out = LSTMStep(xb[t], xa[t], gates[t], ccat[t + 1], xc[t], tc[t], hcat[t + 1])
        lstm_step_forward(a, ccat[t], Input(ids[t], Wxq, braw[t]), p, mode,
                          at_step(bn_a, t), at_step(bn_b, t), at_step(bn_c, t), out, z)
    if bn and train:
        for key, moments in (("b", bn_b), ("a", bn_a), ("c", bn_c)):
            update_running_stats(stats, key, t0, moments, spec)
    store = FusedCache(hcat=hcat, ccat=ccat, xb=xb, xa=xa, gates=gates, xc=xc, tc=tc, inv_a=bn_a.inv,
                       inv_b=bn_b.inv, inv_c=bn_c.inv, batch=use_batch, had_state=state is not None, dt=dt)
    cache = (x, Wxq, Whq, params, spec, store)
    return (hcat[1:], (hcat[T].copy(), ccat[T].copy())), cache


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
    dgamma_a, dgamma_b, dgamma_c, dbeta_c = (grads[k] if bn else zero
                                             for k in ("gamma_a", "gamma_b", "gamma_c", "beta_c"))
    dbeta_a = grads["beta_a"] if bn else grads["b"]

    db = workspace.empty((T, B, G), dt)   # dL/d(x_t W_x^q)
    da = workspace.empty((T, B, G), dt)   # dL/da_t
    dh_next = np.zeros((B, H), dt)
    dc_next = np.zeros((B, H), dt)
    if dfinal is not None:
        dh_next += dfinal[0]
        dc_next += dfinal[1]
    scratch = (workspace.empty((B, G), dt), workspace.empty((B, H), dt), workspace.empty((B, H), dt),
               np.empty(G, dt), np.empty(G, dt), np.empty(G, dt))            # dz, dnc, dc, s1..s3
    WhqT = np.ascontiguousarray(Whq.T)                                        # (G, H)
    for t in reversed(range(T)):
        saved = LSTMStep(s.xb[t], s.xa[t], s.gates[t], s.ccat[t + 1], s.xc[t], s.tc[t], s.hcat[t + 1])
        step_grads = LSTMGrads(da[t], db[t], dgamma_a, dbeta_a, dgamma_b, dgamma_c, dbeta_c)
        lstm_step_backward(dhs[t], (dh_next, dc_next), s.ccat[t], saved, (s.inv_a[t], s.inv_b[t], s.inv_c[t]),
                           p, mode, step_grads, scratch)
        np.matmul(da[t], WhqT, out=dh_next)                                   # (B, H)

    grads["W_h"] = s.hcat[:T].reshape(T * B, H).T @ da.reshape(T * B, G)     # one GEMM
    del da
    grads["W_x"], dx = input_grads(x, db.reshape(T * B, G), Wxq)
    if s.had_state:
        grads["h_init"], grads["c_init"] = dh_next, dc_next
    else:
        grads["h0"] += dh_next.sum(axis=0)
        grads["c0"] += dc_next.sum(axis=0)
    return dx, grads
