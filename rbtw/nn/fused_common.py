"""What the fused LSTM and GRU step kernels share: argument groups, tanh and σ, the pieces of
batch normalisation, and the input term of a step.

Dimensions: B batch, G gate columns (4H LSTM, 3H GRU), F any feature count, V vocabulary
(one-hot inputs), N = T·B rows.

Argument groups (named tuples; Numba passes them to nopython code as typed tuples):

    BNStep(mean, var, inv)    one BN at one step, each (F,): mean and var are written (batch
                              statistics) or read (population); inv receives 1/sqrt(σ² + ε)
    Input(ids, Wxq, braw)     the input term of one step: ids (B,) one-hot rows of W_x^q (V, G),
                              or ids empty and braw (B, G) = x_t W_x^q
    Mode(bn, batch, eps)      BN on, batch (not population) statistics, BN's ε

The BN pieces, for u (B, F):

    BN:        x̂ = (u − μ)·s,  s = 1/sqrt(σ² + ε),  y = γ x̂ + β
    BN back:   du = s·(γ dy − mean_B(γ dy) − x̂·mean_B(γ dy ⊙ x̂))     (batch statistics)
               du = s·γ dy                                           (population statistics)

float32 uses a vectorisable rational approximation of tanh (Eigen's, a few ulp); float64 uses
math.tanh, so the float64 path agrees with the NumPy reference to rounding.

No loop writes to the array it reads from when the two come in as separate arguments (an
in-place loop fails LLVM's runtime alias check and runs scalar), and the per-step work is split
into small loops over few arrays, which vectorise.  Evidence: bench/results/kernels_evidence.md
§step-kernels.
"""

import math
from collections import namedtuple

import numpy as np
from numba import njit, types
from numba.extending import overload

JIT = dict(cache=True, error_model="numpy", nogil=True)

BNStep = namedtuple("BNStep", "mean var inv")
Input = namedtuple("Input", "ids Wxq braw")
Mode = namedtuple("Mode", "bn batch eps")


# ------------------------------------------------------------------------------------------
# tanh and σ, specialised by precision


def tanh_(x):  # pragma: no cover - replaced by the overload inside jitted code
    return math.tanh(x)


def sigmoid_(x):  # pragma: no cover
    return 0.5 * (1.0 + math.tanh(0.5 * x))


@njit(inline="always", error_model="numpy", cache=True)
def _tanh_f32(x):
    """Eigen's float tanh: odd rational 13/6 on x clamped to ±7.905; x itself below 4e-4."""
    c = np.float32(7.90531110763549805)
    y = min(max(x, -c), c)
    y2 = y * y
    p = y2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
    p = p * y2 + np.float32(-8.60467152213735e-11)
    p = p * y2 + np.float32(5.12229709037114e-08)
    p = p * y2 + np.float32(1.48572235717979e-05)
    p = p * y2 + np.float32(6.37261928875436e-04)
    p = p * y2 + np.float32(4.89352455891786e-03)
    p = p * y
    q = y2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
    q = q * y2 + np.float32(2.26843463243900e-03)
    q = q * y2 + np.float32(4.89352518554385e-03)
    return x if abs(x) < np.float32(0.0004) else p / q


@overload(tanh_, jit_options=dict(error_model="numpy"))
def _ov_tanh(x):
    if x == types.float32:
        return lambda x: _tanh_f32(x)
    return lambda x: math.tanh(x)


@overload(sigmoid_, jit_options=dict(error_model="numpy"))
def _ov_sigmoid(x):
    if x == types.float32:
        def sig32(x):
            return np.float32(0.5) + np.float32(0.5) * _tanh_f32(np.float32(0.5) * x)
        return sig32
    return lambda x: 0.5 * (1.0 + math.tanh(0.5 * x))


@njit(**JIT)
def tanh_array(x, out):
    """out = tanh(x) element-wise (the kernels' tanh, for tests)."""
    xf, of = x.reshape(-1), out.reshape(-1)
    for k in range(xf.size):
        of[k] = tanh_(xf[k])


# ------------------------------------------------------------------------------------------
# batch normalisation pieces


@njit(**JIT)
def moments(u, mean, var):
    """Batch mean and biased variance of u (B, F) into mean, var (F,)."""
    B, F = u.shape
    mean[:] = 0
    var[:] = 0
    for b in range(B):
        for j in range(F):
            mean[j] += u[b, j]
    for j in range(F):
        mean[j] /= B
    for b in range(B):
        for j in range(F):
            d = u[b, j] - mean[j]
            var[j] += d * d
    for j in range(F):
        var[j] /= B


@njit(**JIT)
def normalise(u, mean, var, eps, inv, xhat):
    """inv = 1/sqrt(var + eps) (F,); xhat = (u − mean)·inv (B, F) (may alias u)."""
    B, F = u.shape
    for j in range(F):
        inv[j] = 1.0 / math.sqrt(var[j] + eps)
    for b in range(B):
        for j in range(F):
            xhat[b, j] = (u[b, j] - mean[j]) * inv[j]


@njit(**JIT)
def standardise(u, mode, stats, xhat):
    """x̂ = (u − μ)/sqrt(σ² + ε) into xhat (B, F); μ, σ² of this batch into ``stats`` (a BNStep)
    when mode.batch, else read from it."""
    if mode.batch:
        moments(u, stats.mean, stats.var)
    normalise(u, stats.mean, stats.var, mode.eps, stats.inv, xhat)


@njit(**JIT)
def bn_backward_rows(dy, xhat, gamma, inv, batch, du, dparams, scratch):
    """BN backward for one step: dy, xhat (B, F) -> du (B, F); dparams = (dγ, dβ) (F,) are
    accumulated; scratch = (s1, s2) (F,).  du may alias dy, but then the loop does not vectorise.

    With s1 = Σ_B dy, s2 = Σ_B dy ⊙ x̂:  dγ += s2, dβ += s1 and
    du = γ s (dy − s1/B − x̂ s2/B)   (batch statistics),   du = γ s dy   (population).
    """
    dgamma, dbeta = dparams
    s1, s2 = scratch
    B, F = dy.shape
    s1[:] = 0
    s2[:] = 0
    for b in range(B):
        for j in range(F):
            g = dy[b, j]
            s1[j] += g
            s2[j] += g * xhat[b, j]
    for j in range(F):
        dgamma[j] += s2[j]
        dbeta[j] += s1[j]
    if batch:
        for j in range(F):
            s1[j] /= B
            s2[j] /= B
        for b in range(B):
            for j in range(F):
                du[b, j] = gamma[j] * inv[j] * (dy[b, j] - s1[j] - xhat[b, j] * s2[j])
    else:
        for b in range(B):
            for j in range(F):
                du[b, j] = gamma[j] * inv[j] * dy[b, j]


@njit(**JIT)
def update_running(mean_pop, var_pop, count, t0, means, variances, momentum):
    """Blend the moments of steps t0.. (T, F) into the population rows (last row shared),
    in order; the first update of a row copies (see rbtw.nn.bn.update_stats)."""
    last = mean_pop.shape[0] - 1
    for k in range(means.shape[0]):
        row = min(t0 + k, last)
        if count[row] == 0:
            mean_pop[row, :] = means[k]
            var_pop[row, :] = variances[k]
        else:
            for j in range(means.shape[1]):
                mean_pop[row, j] = (1 - momentum) * mean_pop[row, j] + momentum * means[k, j]
                var_pop[row, j] = (1 - momentum) * var_pop[row, j] + momentum * variances[k, j]
        count[row] += 1


# ------------------------------------------------------------------------------------------
# the input term


@njit(**JIT)
def scatter_rows(ids, src, out):
    """out[ids[n]] += src[n] for n < N: ids (N,), src (N, G), out (V, G)."""
    for n in range(ids.shape[0]):
        v = ids[n]
        for j in range(src.shape[1]):
            out[v, j] += src[n, j]


@njit(**JIT)
def input_step(inp, mode, bn_b, scratch, xb):
    """The input term of one step into xb (B, G): x̂_b with BN, else b itself.

    b is gathered from the rows inp.ids (B,) of W_x^q into ``scratch`` (B, G) when ids is not
    empty (one-hot input), else it is inp.braw = x_t W_x^q.  bn_b: the BNStep of b.  (Source
    and destination differ: in-place loops do not vectorise.)
    """
    B, G = xb.shape
    src = inp.braw
    if inp.ids.shape[0] > 0:
        for b in range(B):
            row = inp.ids[b]
            for j in range(G):
                scratch[b, j] = inp.Wxq[row, j]
        src = scratch
    if mode.bn:
        standardise(src, mode, bn_b, xb)
    else:
        xb[:, :] = src
