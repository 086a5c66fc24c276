"""Numba step kernels for the BN-GRU, built from the pieces in rbtw.nn.fused_common.

Dimensions: B batch, H hidden, G = 3H gate columns (r, u, n).

    A = BN(a; γ_a, β_a),  a = h_{t-1} W_h^q  (BLAS, outside)      B = BN(b; γ_b, 0)
    r = σ(A_r + B_r),  u = σ(A_u + B_u),  n = tanh(B_n + r ⊙ A_n)
    h_t = (1 − u) ⊙ n + u ⊙ h_{t-1}

Without BN: A = a + b_a, B = b + b_b.  Backward (dh = dL/dh_t):

    dn = dh (1 − u);  dz_u = dh (h_{t-1} − n) u (1 − u);  dz_n = dn (1 − n²);
    dz_r = dz_n A_n r (1 − r);  dB = [dz_r, dz_u, dz_n];  dA = [dz_r, dz_u, dz_n r];
    dL/dh_{t-1} = dh ⊙ u + da W_h^qᵀ

Argument groups, besides those of rbtw.nn.fused_common (BNStep, Input, Mode):

    GRUParams(gamma_a, beta_a, gamma_b, bias_b)    (G,) each; with BN, β_a is the shift of A
        and bias_b is empty; without BN, beta_a and bias_b are b_a and b_b (the γ empty)
    GRUStep(xb, xa, gates, An, h)                  one step's activations: x̂_b (or b) (B, G),
        x̂_a (B, G), [r u n] (B, G), A_n (B, H), h_t (B, H); written forward, read backward
    GRUGrads(da, db, dgamma_a, dbeta_a, dgamma_b, dbias_b)
        dL/da_t (B, G) and dL/d(x_t W_x^q) (B, G), written; the parameter gradients, accumulated
        (without BN, db_a in dbeta_a and db_b in dbias_b)
"""

from collections import namedtuple

from numba import njit

from rbtw.nn.fused_common import JIT, bn_backward_rows, input_step, sigmoid_, standardise, tanh_

GRUParams = namedtuple("GRUParams", "gamma_a beta_a gamma_b bias_b")
GRUStep = namedtuple("GRUStep", "xb xa gates An h")
GRUGrads = namedtuple("GRUGrads", "da db dgamma_a dbeta_a dgamma_b dbias_b")


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
def gru_step_forward(a, h_prev, inp, p, mode, bn_a, bn_b, out, z):
    """One GRU step after a = h_{t-1} W_h^q (B, G), from h_prev = h_{t-1} (B, H).

    inp: the step's Input (see rbtw.nn.fused_common.input_step); p: GRUParams; mode: Mode;
    bn_a, bn_b (G,): the step's BNStep of a and b; out: the step's GRUStep, written; z (B, G)
    scratch.
    """
    input_step(inp, mode, bn_b, z, out.xb)
    if mode.bn:
        standardise(a, mode, bn_a, out.xa)
        gru_inputs(out.xa, p.gamma_a, p.beta_a, out.xb, p.gamma_b, z, out.An)
    else:
        gru_inputs_plain(a, p.beta_a, out.xb, p.bias_b, z, out.An)
    gru_gates(z, out.An, h_prev, out.gates, out.h)


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
    """Without BN: dst = src (B, G), and the bias gradient accumulates Σ_B src."""
    B, G = src.shape
    for b in range(B):
        for j in range(G):
            dst[b, j] = src[b, j]
            dbias[j] += src[b, j]


@njit(**JIT)
def gru_step_backward(dh_out, carry, h_prev, saved, inv, p, mode, grads, scratch):
    """One GRU step in reverse.

    dh_out (B, H): dL/dh_t from above.  carry = (dh_next, dhu), each (B, H): da_{t+1} W_h^qᵀ
    and dh_{t+1} ⊙ u_{t+1}; dhu is overwritten with this step's.  h_prev (B, H) h_{t-1};
    saved: the step's GRUStep; inv = (inv_a, inv_b) (G,) of the step's BNs; p: GRUParams
    (the γ are read); mode: Mode; grads: GRUGrads; scratch = (dA, dB (B, G), s1, s2, s3 (G,)).
    """
    dh_next, dhu = carry
    inv_a, inv_b = inv
    dA, dB, s1, s2, s3 = scratch
    g = grads
    gru_gate_grads(dh_out, dh_next, dhu, h_prev, saved.gates, saved.An, dA, dB)
    if mode.bn:
        bn_backward_rows(dA, saved.xa, p.gamma_a, inv_a, mode.batch, g.da,
                         (g.dgamma_a, g.dbeta_a), (s1, s2))
        s3[:] = 0                                         # dβ_b: B has no shift; discarded
        bn_backward_rows(dB, saved.xb, p.gamma_b, inv_b, mode.batch, g.db,
                         (g.dgamma_b, s3), (s1, s2))
    else:
        copy_sum(dA, g.da, g.dbeta_a)
        copy_sum(dB, g.db, g.dbias_b)
