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
"""

import numpy as np

from rbtw.nn import bn as bn_
from rbtw.nn.cell import bn_step, input_products, orthogonal, quantized_weights, sigmoid


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


def forward_quantized(x, Wxq, Whq, params, stats, spec, *, train, state=None, batch_stats=False, t0=0):
    """The layer with its quantized weights given: see :func:`forward`."""
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


def backward(dhs, cache, dfinal=None):
    """Backpropagation through time.

    dhs: (T, B, H) gradient of the loss w.r.t. every h_t; dfinal: optional (dh_T, dc_T).
    Returns dx (T, B, X) and grads keyed like the parameters ("W_x", "W_h" are dL/dW^q).
    When an initial state was passed in, grads also hold "h_init" and "c_init" (B, H)
    instead of "h0", "c0".
    """
    x, Wxq, Whq, params, spec, cache_b, steps, had_state = cache
    T, B, X = x.shape
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
    grads["W_x"] = x.reshape(T * B, X).T @ db2
    dx = (db2 @ Wxq.T).reshape(T, B, X)
    if had_state:
        grads["h_init"], grads["c_init"] = dh_next, dc_next
    else:
        grads["h0"] += dh_next.sum(axis=0)
        grads["c0"] += dc_next.sum(axis=0)
    return dx, grads
