"""Batch normalisation with separate statistics for every time step.

Dimensions: T time, B batch, F features.  Arrays are (B, F) for one step or (T, B, F) for a
whole sequence; statistics are per step, (F,) or (T, F).

    BN_t(u; γ, β) = γ ⊙ (u − μ_t) / sqrt(σ²_t + ε) + β

Training uses the batch moments of step t (mean and *biased* variance over the B axis) and
updates the running (population) statistics of that step:

    μ_pop[t] ← (1 − m)·μ_pop[t] + m·μ_t,   σ²_pop[t] ← (1 − m)·σ²_pop[t] + m·σ²_t,   m = 0.05

The very first update of a row copies the batch moments (so a short run is not biased toward
the initial values).  Population statistics have shape (T_max, F); steps t ≥ T_max share the
last row, both when they are updated and when they are read.

Backward with batch statistics (x̂ = normalised u, N = B):

    du = (1/σ) · (dx̂ − mean_B(dx̂) − x̂ · mean_B(dx̂ ⊙ x̂)),   dx̂ = γ ⊙ dy

and with fixed (population) statistics simply du = γ ⊙ dy / σ.
"""

import numpy as np

EPS = 1e-5
MOMENTUM = 0.05


def init_stats(t_max, F, dtype=np.float32):
    """Population statistics: mean 0, variance 1, and an update count per time step."""
    return {
        "mean": np.zeros((t_max, F), dtype=dtype),
        "var": np.ones((t_max, F), dtype=dtype),
        "count": np.zeros(t_max, dtype=np.int64),
    }


def moments(u):
    """Mean and biased variance over the batch axis: u (..., B, F) -> (..., F), (..., F)."""
    mean = u.mean(axis=-2)
    var = ((u - mean[..., None, :]) ** 2).mean(axis=-2)
    return mean, var


def step_rows(stats, t0, T):
    """Rows of the population table used by steps t0 .. t0+T-1 (clipped to the last row)."""
    t_max = stats["mean"].shape[0]
    return np.minimum(np.arange(t0, t0 + T), t_max - 1)


def population(stats, t0, T):
    """Population (mean, var) for steps t0 .. t0+T-1: two (T, F) arrays."""
    rows = step_rows(stats, t0, T)
    return stats["mean"][rows], stats["var"][rows]


def update_stats(stats, t, mean, var, momentum=MOMENTUM):
    """Blend one step's batch moments (F,) into row t of the population statistics, in place."""
    row = min(t, stats["mean"].shape[0] - 1)
    if stats["count"][row] == 0:
        stats["mean"][row] = mean
        stats["var"][row] = var
    else:
        stats["mean"][row] = (1 - momentum) * stats["mean"][row] + momentum * mean
        stats["var"][row] = (1 - momentum) * stats["var"][row] + momentum * var
    stats["count"][row] += 1


def update_stats_seq(stats, t0, means, variances, momentum=MOMENTUM):
    """Blend the moments of steps t0 .. t0+T-1, each (T, F), into the population statistics."""
    for k in range(means.shape[0]):
        update_stats(stats, t0 + k, means[k], variances[k], momentum)


def forward(u, gamma, beta, mean, var, *, batch, eps=EPS):
    """y = γ ⊙ (u − μ)/sqrt(σ² + ε) + β.

    u: (..., B, F); gamma, beta: (F,) (beta may be None: no shift); mean, var: (..., F).
    ``batch`` says whether mean/var are this batch's own moments (they then carry gradient).
    Returns y (..., B, F) and the cache for :func:`backward`.
    """
    inv_std = 1.0 / np.sqrt(var + eps)                       # (..., F)
    xhat = (u - mean[..., None, :]) * inv_std[..., None, :]  # (..., B, F)
    y = gamma * xhat
    if beta is not None:
        y = y + beta
    return y, (xhat, gamma, inv_std, batch)


def backward(dy, cache):
    """Gradients of :func:`forward`: returns du (..., B, F), dgamma (F,), dbeta (F,)."""
    xhat, gamma, inv_std, batch = cache
    F = dy.shape[-1]
    dgamma = (dy * xhat).reshape(-1, F).sum(axis=0)
    dbeta = dy.reshape(-1, F).sum(axis=0)
    dxhat = dy * gamma
    if batch:
        mean_d = dxhat.mean(axis=-2, keepdims=True)
        mean_dx = (dxhat * xhat).mean(axis=-2, keepdims=True)
        du = (dxhat - mean_d - xhat * mean_dx) * inv_std[..., None, :]
    else:
        du = dxhat * inv_std[..., None, :]
    return du, dgamma, dbeta


def layer_forward(u, params, stats, *, train, batch_stats=False, t0=0, eps=EPS, momentum=MOMENTUM):
    """Per-time-step BN over a whole sequence as a layer.

    u: (T, B, F); params: {"gamma": (F,), "beta": (F,)}; stats: see :func:`init_stats`.
    train=True normalises with batch moments and updates ``stats`` in place; otherwise the
    population statistics of steps t0.. are used, unless ``batch_stats`` asks for the batch's.
    """
    use_batch = train or batch_stats
    if use_batch:
        mean, var = moments(u)
        if train:
            update_stats_seq(stats, t0, mean, var, momentum)
    else:
        mean, var = population(stats, t0, u.shape[0])
    y, cache = forward(u, params["gamma"], params.get("beta"), mean, var, batch=use_batch, eps=eps)
    return y, cache


def layer_backward(dy, cache):
    """Backward of :func:`layer_forward`: returns du and {"gamma": ..., "beta": ...}."""
    du, dgamma, dbeta = backward(dy, cache)
    return du, {"gamma": dgamma, "beta": dbeta}
