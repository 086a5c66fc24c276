"""Numba step kernels for the BN-GRU, built from the pieces in rbtw.nn.fused.

Dimensions: B batch, H hidden, G = 3H gate columns (r, u, n).

    A = BN(a; γ_a, β_a),  a = h_{t-1} W_h^q  (BLAS, outside)      B = BN(b; γ_b, 0)
    r = σ(A_r + B_r),  u = σ(A_u + B_u),  n = tanh(B_n + r ⊙ A_n)
    h_t = (1 − u) ⊙ n + u ⊙ h_{t-1}

Without BN: A = a + b_a, B = b + b_b.  Backward (dh = dL/dh_t):

    dn = dh (1 − u);  dz_u = dh (h_{t-1} − n) u (1 − u);  dz_n = dn (1 − n²);
    dz_r = dz_n A_n r (1 − r);  dB = [dz_r, dz_u, dz_n];  dA = [dz_r, dz_u, dz_n r];
    dL/dh_{t-1} = dh ⊙ u + da W_h^qᵀ
"""

from numba import njit

from rbtw.nn.fused import JIT, bn_backward_rows, input_step, moments, normalise, sigmoid_, tanh_


@njit(**JIT)
def gru_inputs(xa, gamma_a, beta_a, xb, gamma_b, z, An):
    """z[:, :2H] = A + B for r, u;  z[:, 2H:] = B_n;  An = A_n (B, H)."""
    B, G = z.shape
    H = G // 3
    for b in range(B):
        for j in range(2 * H):
            z[b, j] = gamma_a[j] * xa[b, j] + beta_a[j] + gamma_b[j] * xb[b, j]
        for j in range(H):
            k = 2 * H + j
            An[b, j] = gamma_a[k] * xa[b, k] + beta_a[k]
            z[b, k] = gamma_b[k] * xb[b, k]


@njit(**JIT)
def gru_inputs_plain(a, bias_a, xb, bias_b, z, An):
    """Without BN: A = a + b_a, B = b + b_b, laid out as in :func:`gru_inputs`."""
    B, G = z.shape
    H = G // 3
    for b in range(B):
        for j in range(2 * H):
            z[b, j] = a[b, j] + bias_a[j] + xb[b, j] + bias_b[j]
        for j in range(H):
            k = 2 * H + j
            An[b, j] = a[b, k] + bias_a[k]
            z[b, k] = xb[b, k] + bias_b[k]


@njit(**JIT)
def gru_gates(z, An, h_prev, gates, h_new):
    """gates (B, 3H) = r, u, n;  h_new = (1 − u) n + u h_prev."""
    B, G = z.shape
    H = G // 3
    one = gates.dtype.type(1)
    for b in range(B):
        for j in range(2 * H):
            gates[b, j] = sigmoid_(z[b, j])
        for j in range(H):
            n = tanh_(z[b, 2 * H + j] + gates[b, j] * An[b, j])
            gates[b, 2 * H + j] = n
            u = gates[b, H + j]
            h_new[b, j] = (one - u) * n + u * h_prev[b, j]


@njit(**JIT)
def gru_step_forward(a, ids, Wxq, braw, xb, gamma_a, beta_a, gamma_b, bias_b, h_prev, bn, batch, eps,
                     mean_a, var_a, inv_a, mean_b, var_b, inv_b, xa, gates, An, h_new, z):
    """One GRU step after a = h_{t-1} W_h^q (B, G).

    The input term as in rbtw.nn.fused.input_step (xb receives x̂_b, or b without BN); with BN,
    β_a is the shift of A, else ``beta_a`` and ``bias_b`` are b_a and b_b (``gamma_*`` unused).
    Writes xa (B, G) x̂_a, gates (B, G), An (B, H), h_new (B, H); z (B, G) is scratch.
    """
    input_step(ids, Wxq, braw, z, xb, bn, batch, eps, mean_b, var_b, inv_b)
    if bn:
        if batch:
            moments(a, mean_a, var_a)
        normalise(a, mean_a, var_a, eps, inv_a, xa)
        gru_inputs(xa, gamma_a, beta_a, xb, gamma_b, z, An)
    else:
        gru_inputs_plain(a, beta_a, xb, bias_b, z, An)
    gru_gates(z, An, h_prev, gates, h_new)


@njit(**JIT)
def gru_gate_grads(dh_out, dh_next, dhu, h_prev, gates, An, dA, dB):
    """dh = dh_out + dh_next + dhu (dhu: dh ⊙ u of step t+1, overwritten with this step's)."""
    B, G = dA.shape
    H = G // 3
    one = gates.dtype.type(1)
    for b in range(B):
        for j in range(H):
            dh = dh_out[b, j] + dh_next[b, j] + dhu[b, j]
            r = gates[b, j]
            u = gates[b, H + j]
            n = gates[b, 2 * H + j]
            dzn = dh * (one - u) * (one - n * n)
            dzr = dzn * An[b, j] * r * (one - r)
            dzu = dh * (h_prev[b, j] - n) * u * (one - u)
            dB[b, j] = dzr
            dB[b, H + j] = dzu
            dB[b, 2 * H + j] = dzn
            dA[b, j] = dzr
            dA[b, H + j] = dzu
            dA[b, 2 * H + j] = dzn * r
            dhu[b, j] = dh * u


@njit(**JIT)
def copy_sum(src, dst, dbias):
    B, G = src.shape
    for b in range(B):
        for j in range(G):
            dst[b, j] = src[b, j]
            dbias[j] += src[b, j]


@njit(**JIT)
def gru_step_backward(dh_out, dh_next, dhu, h_prev, gates, An, xa, inv_a, xb, inv_b, gamma_a, gamma_b,
                      bn, batch, da, db, dgamma_a, dbeta_a, dgamma_b, dbias_b, dA, dB, s1, s2, s3):
    """One GRU step in reverse: writes da, db (B, G) (dL/da_t and dL/d(x_t W_x^q)); accumulates
    dγ_a, dβ_a, dγ_b (BN) or db_a (in dbeta_a), db_b (in dbias_b).  dA, dB, s1..s3 scratch."""
    gru_gate_grads(dh_out, dh_next, dhu, h_prev, gates, An, dA, dB)
    if bn:
        bn_backward_rows(dA, xa, gamma_a, inv_a, batch, da, dgamma_a, dbeta_a, s1, s2)
        s3[:] = 0
        bn_backward_rows(dB, xb, gamma_b, inv_b, batch, db, dgamma_b, s3, s1, s2)
    else:
        copy_sum(dA, da, dbeta_a)
        copy_sum(dB, db, dbias_b)
