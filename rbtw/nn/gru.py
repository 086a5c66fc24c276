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
"""

import numpy as np

from rbtw.nn import bn as bn_
from rbtw.nn.cell import bn_step, input_grads, input_products, orthogonal, quantized_weights, sigmoid


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


def forward_quantized(x, Wxq, Whq, params, stats, spec, *, train, state=None, batch_stats=False, t0=0):
    """The layer with its quantized weights given: see :func:`forward`."""
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


def backward(dhs, cache, dfinal=None):
    """Backpropagation through time; dfinal is an optional (dh_T,).

    Returns dx (T, B, X) and grads keyed like the parameters ("W_x", "W_h" are dL/dW^q; with an
    initial state passed in, "h_init" (B, H) instead of "h0").
    """
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
