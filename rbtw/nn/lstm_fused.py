"""Numba kernels for the BN-LSTM: one fused element-wise pass per time step, forward and backward.

Dimensions: T time, B batch, H hidden, G = 4H gate columns (i, f, g, o), F any feature count,
V vocabulary (one-hot inputs), N = T·B rows.

What stays in BLAS (called from rbtw.nn.lstm, into preallocated buffers):
    a_t = h_{t-1} W_h^q              (B, G)   one GEMM per step
    dh_{t-1} ← da_t W_h^qᵀ           (B, H)   one GEMM per step (the kernel adds dL/dh from above)
    dW_h^q = Σ_t h_{t-1}ᵀ da_t       one GEMM over all N rows after the loop
    b = x W_x^q, dW_x^q = xᵀ db      one GEMM each (a row gather / scatter-add for one-hot x)

Everything else is here, writing into caches and scratch buffers allocated once per pass (none
per step): per-step batch moments, BN apply, gates, cell update, the BN of c, h; and in reverse
the gate derivatives and the three BN backwards:

    BN:        x̂ = (u − μ)·s,  s = 1/sqrt(σ² + ε),  y = γ x̂ + β
    BN back:   du = s·(γ dy − mean_B(γ dy) − x̂·mean_B(γ dy ⊙ x̂))     (batch statistics)
               du = s·γ dy                                           (population statistics)
    gates:     z = γ_a x̂_a + β_a + γ_b x̂_b;  i, f, o = σ(z);  g = tanh(z)
    cell:      c_t = f c_{t-1} + i g;  h_t = o tanh(γ_c x̂_c + β_c)

Without BN (``bn`` false): z = a + b + β_a (β_a is then the plain bias) and h_t = o tanh(c_t).

float32 uses a vectorisable rational approximation of tanh (Eigen's, a few ulp); float64 uses
math.tanh, so the float64 path agrees with the NumPy reference to rounding.

Performance notes: no loop writes to the array it reads from when the two come in as separate
arguments (an in-place loop fails LLVM's runtime alias check and runs scalar, ~8× slower), and
the per-step work is split into small loops over few arrays, which vectorise (AVX-512 here).
"""

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

JIT = dict(cache=True, error_model="numpy", nogil=True)


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
def bn_backward_rows(dy, xhat, gamma, inv, batch, du, dgamma, dbeta, s1, s2):
    """BN backward for one step: dy, xhat (B, F) -> du (B, F); dγ, dβ (F,) are accumulated;
    s1, s2 (F,) scratch.  du may alias dy, but then the loop does not vectorise.

    With s1 = Σ_B dy, s2 = Σ_B dy ⊙ x̂:  dγ += s2, dβ += s1 and
    du = γ s (dy − s1/B − x̂ s2/B)   (batch statistics),   du = γ s dy   (population).
    """
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
# one-hot inputs


@njit(**JIT)
def scatter_rows(ids, src, out):
    """out[ids[n]] += src[n] for n < N: ids (N,), src (N, G), out (V, G)."""
    for n in range(ids.shape[0]):
        v = ids[n]
        for j in range(src.shape[1]):
            out[v, j] += src[n, j]


# ------------------------------------------------------------------------------------------
# LSTM step


@njit(**JIT)
def input_step(ids, Wxq, braw, scratch, xb, bn, batch, eps, mean_b, var_b, inv_b):
    """The input term of one step into xb (B, G): x̂_b with BN, else b itself.

    b is gathered from the rows ids (B,) of W_x^q into ``scratch`` when ids is not empty
    (one-hot input), else it is braw = x_t W_x^q.  mean_b, var_b are written (batch) or read
    (population).  (Source and destination differ: in-place loops do not vectorise.)
    """
    B, G = xb.shape
    src = braw
    if ids.shape[0] > 0:
        for b in range(B):
            row = ids[b]
            for j in range(G):
                scratch[b, j] = Wxq[row, j]
        src = scratch
    if bn:
        if batch:
            moments(src, mean_b, var_b)
        normalise(src, mean_b, var_b, eps, inv_b, xb)
    else:
        xb[:, :] = src


@njit(**JIT)
def gate_inputs(gates, xa, xb, gamma_a, beta_a, gamma_b):
    """gates = γ_a x̂_a + β_a + γ_b x̂_b: all (B, G), vectors (G,)."""
    B, G = gates.shape
    for b in range(B):
        for j in range(G):
            gates[b, j] = gamma_a[j] * xa[b, j] + beta_a[j] + gamma_b[j] * xb[b, j]


@njit(**JIT)
def gate_inputs_plain(gates, a, xb, bias):
    """gates = a + b + bias without BN."""
    B, G = gates.shape
    for b in range(B):
        for j in range(G):
            gates[b, j] = a[b, j] + bias[j] + xb[b, j]


@njit(**JIT)
def lstm_nonlinearities(z, gates):
    """gates (B, 4H) = σ(z) on i, f, o and tanh(z) on g."""
    B, G = gates.shape
    H = G // 4
    for b in range(B):
        for j in range(2 * H):
            gates[b, j] = sigmoid_(z[b, j])
        for j in range(2 * H, 3 * H):
            gates[b, j] = tanh_(z[b, j])
        for j in range(3 * H, G):
            gates[b, j] = sigmoid_(z[b, j])


@njit(**JIT)
def cell_update(gates, c_prev, c_new):
    """c_t = f ⊙ c_{t-1} + i ⊙ g: gates (B, 4H), c (B, H)."""
    B, H = c_new.shape
    for b in range(B):
        for j in range(H):
            c_new[b, j] = gates[b, H + j] * c_prev[b, j] + gates[b, j] * gates[b, 2 * H + j]


@njit(**JIT)
def tanh_affine(xc, gamma, beta, tc):
    """tc = tanh(γ x̂ + β): (B, H)."""
    B, H = tc.shape
    for b in range(B):
        for j in range(H):
            tc[b, j] = tanh_(gamma[j] * xc[b, j] + beta[j])


@njit(**JIT)
def tanh_plain(c, tc):
    B, H = tc.shape
    for b in range(B):
        for j in range(H):
            tc[b, j] = tanh_(c[b, j])


@njit(**JIT)
def hidden_out(gates, tc, h_new):
    """h_t = o ⊙ tc."""
    B, H = h_new.shape
    for b in range(B):
        for j in range(H):
            h_new[b, j] = gates[b, 3 * H + j] * tc[b, j]


@njit(**JIT)
def lstm_step_forward(a, ids, Wxq, braw, xb, gamma_a, beta_a, gamma_b, c_prev, gamma_c, beta_c, bn,
                      batch, eps, mean_a, var_a, inv_a, mean_b, var_b, inv_b, mean_c, var_c, inv_c,
                      xa, gates, c_new, xc, tc, h_new, z):
    """One LSTM step after a = h_{t-1} W_h^q (B, G).

    ids, Wxq, braw: the input term, see :func:`input_step`; xb (B, G) receives x̂_b (or b
    without BN).  mean/var_a, _b (G,), mean/var_c (H,) are written (batch) or read
    (population); inv_* receive 1/sqrt(σ² + ε).  Writes xa (B, G) x̂_a, gates (B, G)
    [i f g o], c_new (B, H), xc (B, H) x̂_c, tc (B, H) tanh(BN(c)), h_new (B, H); z (B, G) is
    scratch.
    """
    input_step(ids, Wxq, braw, z, xb, bn, batch, eps, mean_b, var_b, inv_b)
    if bn:
        if batch:
            moments(a, mean_a, var_a)
        normalise(a, mean_a, var_a, eps, inv_a, xa)
        gate_inputs(z, xa, xb, gamma_a, beta_a, gamma_b)
    else:
        gate_inputs_plain(z, a, xb, beta_a)
    lstm_nonlinearities(z, gates)
    cell_update(gates, c_prev, c_new)
    if bn:
        if batch:
            moments(c_new, mean_c, var_c)
        normalise(c_new, mean_c, var_c, eps, inv_c, xc)
        tanh_affine(xc, gamma_c, beta_c, tc)
    else:
        tanh_plain(c_new, tc)
    hidden_out(gates, tc, h_new)


@njit(**JIT)
def output_grads(dh_out, dh_next, gates, tc, dnc, dz, one):
    """dh = dh_out + dh_next;  d(BN c) = dh ⊙ o ⊙ (1 − tc²) into dnc;  dz_o = dh ⊙ tc ⊙ o(1 − o)."""
    B, H = dnc.shape
    for b in range(B):
        for j in range(H):
            dh = dh_out[b, j] + dh_next[b, j]
            o = gates[b, 3 * H + j]
            t = tc[b, j]
            dnc[b, j] = dh * o * (one - t * t)
            dz[b, 3 * H + j] = dh * t * o * (one - o)


@njit(**JIT)
def cell_grads(dnc, dc_next, gates, c_prev, dz, one):
    """dc = dnc + dc_next;  dz_i, dz_f, dz_g;  dc_next ← dc ⊙ f (dL/dc_{t-1})."""
    B, H = dnc.shape
    for b in range(B):
        for j in range(H):
            dc = dnc[b, j] + dc_next[b, j]
            i = gates[b, j]
            f = gates[b, H + j]
            g = gates[b, 2 * H + j]
            dz[b, j] = dc * g * i * (one - i)
            dz[b, H + j] = dc * c_prev[b, j] * f * (one - f)
            dz[b, 2 * H + j] = dc * i * (one - g * g)
            dc_next[b, j] = dc * f


@njit(**JIT)
def copy_and_sum(dz, da, db, dbias):
    """Without BN: da = db = dz, and the bias gradient accumulates Σ_B dz."""
    B, G = dz.shape
    for b in range(B):
        for j in range(G):
            da[b, j] = dz[b, j]
            db[b, j] = dz[b, j]
            dbias[j] += dz[b, j]


@njit(**JIT)
def lstm_step_backward(dh_out, dh_next, dc_next, c_prev, gates, xc, inv_c, tc, xa, inv_a, xb, inv_b,
                       gamma_a, gamma_b, gamma_c, bn, batch, da, db, dgamma_a, dbeta_a, dgamma_b,
                       dgamma_c, dbeta_c, dz, dnc, dc, s1, s2, s3):
    """One LSTM step in reverse.

    dh_out (B, H) dL/dh_t from above; dh_next (B, H) the recurrent part dL/dh_t from step t+1;
    dc_next (B, H) dL/dc_t from step t+1, overwritten with dL/dc_{t-1}.
    Writes da (B, G) dL/da_t and db (B, G) dL/d(x_t W_x^q); accumulates dγ_a, dβ_a (or the bias
    without BN), dγ_b, dγ_c, dβ_c.  dz (B, G), dnc, dc (B, H), s1, s2, s3 (G,) are scratch.
    """
    one = gates.dtype.type(1)
    output_grads(dh_out, dh_next, gates, tc, dnc, dz, one)
    if bn:
        bn_backward_rows(dnc, xc, gamma_c, inv_c, batch, dc, dgamma_c, dbeta_c, s1, s2)
        cell_grads(dc, dc_next, gates, c_prev, dz, one)
        bn_backward_rows(dz, xa, gamma_a, inv_a, batch, da, dgamma_a, dbeta_a, s1, s2)
        s3[:] = 0
        bn_backward_rows(dz, xb, gamma_b, inv_b, batch, db, dgamma_b, s3, s1, s2)
    else:
        cell_grads(dnc, dc_next, gates, c_prev, dz, one)
        copy_and_sum(dz, da, db, dbeta_a)
