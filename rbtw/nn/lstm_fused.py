"""Numba kernels for the BN-LSTM: one fused element-wise pass per time step, forward and backward.

Dimensions: T time, B batch, H hidden, G = 4H gate columns (i, f, g, o), N = T·B rows.

What stays in BLAS (called from rbtw.nn.lstm, into preallocated buffers):
    a_t = h_{t-1} W_h^q              (B, G)   one GEMM per step
    dh_{t-1} ← da_t W_h^qᵀ           (B, H)   one GEMM per step (the kernel adds dL/dh from above)
    dW_h^q = Σ_t h_{t-1}ᵀ da_t       one GEMM over all N rows after the loop
    b = x W_x^q, dW_x^q = xᵀ db      one GEMM each (a row gather / scatter-add for one-hot x)

Everything else is here, writing into caches and scratch buffers allocated once per pass (none
per step): per-step batch moments, BN apply, gates, cell update, the BN of c, h; and in reverse
the gate derivatives and the three BN backwards (the BN pieces: rbtw.nn.fused_common):

    gates:     z = γ_a x̂_a + β_a + γ_b x̂_b;  i, f, o = σ(z);  g = tanh(z)
    cell:      c_t = f c_{t-1} + i g;  h_t = o tanh(γ_c x̂_c + β_c)

Without BN (``mode.bn`` false): z = a + b + β_a (β_a is then the plain bias) and h_t = o tanh(c_t).

Argument groups, besides those of rbtw.nn.fused_common (BNStep, Input, Mode):

    LSTMParams(gamma_a, beta_a, gamma_b, gamma_c, beta_c)   (G,) ×3, (H,) ×2; empty without BN,
                                                            except β_a (the bias b)
    LSTMStep(xb, xa, gates, c, xc, tc, h)                   one step's activations: x̂_b (or b)
        (B, G), x̂_a (B, G), [i f g o] (B, G), c_t (B, H), x̂_c (B, H), tanh(BN(c_t)) (B, H),
        h_t (B, H); written forward, read backward
    LSTMGrads(da, db, dgamma_a, dbeta_a, dgamma_b, dgamma_c, dbeta_c)
        dL/da_t (B, G) and dL/d(x_t W_x^q) (B, G), written; the parameter gradients, accumulated
"""

from collections import namedtuple

from numba import njit

from rbtw.nn.fused_common import JIT, bn_backward_rows, input_step, sigmoid_, standardise, tanh_

LSTMParams = namedtuple("LSTMParams", "gamma_a beta_a gamma_b gamma_c beta_c")
LSTMStep = namedtuple("LSTMStep", "xb xa gates c xc tc h")
LSTMGrads = namedtuple("LSTMGrads", "da db dgamma_a dbeta_a dgamma_b dgamma_c dbeta_c")


# ------------------------------------------------------------------------------------------
# forward


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
    """tc = tanh(c) without BN: (B, H)."""
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
def lstm_step_forward(a, c_prev, inp, p, mode, bn_a, bn_b, bn_c, out, z):
    """One LSTM step after a = h_{t-1} W_h^q (B, G), from c_prev = c_{t-1} (B, H).

    inp: the step's Input (see rbtw.nn.fused_common.input_step); p: LSTMParams; mode: Mode;
    bn_a, bn_b (G,), bn_c (H,): the step's BNStep of a, b and c; out: the step's LSTMStep,
    written; z (B, G) scratch.
    """
    input_step(inp, mode, bn_b, z, out.xb)
    if mode.bn:
        standardise(a, mode, bn_a, out.xa)
        gate_inputs(z, out.xa, out.xb, p.gamma_a, p.beta_a, p.gamma_b)
    else:
        gate_inputs_plain(z, a, out.xb, p.beta_a)
    lstm_nonlinearities(z, out.gates)
    cell_update(out.gates, c_prev, out.c)
    if mode.bn:
        standardise(out.c, mode, bn_c, out.xc)
        tanh_affine(out.xc, p.gamma_c, p.beta_c, out.tc)
    else:
        tanh_plain(out.c, out.tc)
    hidden_out(out.gates, out.tc, out.h)


# ------------------------------------------------------------------------------------------
# backward


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
def lstm_step_backward(dh_out, carry, c_prev, saved, inv, p, mode, grads, scratch):
    """One LSTM step in reverse.

    dh_out (B, H): dL/dh_t from above.  carry = (dh_next, dc_next), each (B, H): the recurrent
    dL/dh_t and dL/dc_t from step t+1; dc_next is overwritten with dL/dc_{t-1}.  c_prev (B, H)
    c_{t-1}; saved: the step's LSTMStep; inv = (inv_a (G,), inv_b (G,), inv_c (H,)) of the
    step's BNs; p: LSTMParams (the γ are read); mode: Mode.  grads: LSTMGrads; without BN the
    bias gradient accumulates in dbeta_a.  scratch = (dz (B, G), dnc, dc (B, H), s1, s2, s3 (G,)).
    """
    dh_next, dc_next = carry
    inv_a, inv_b, inv_c = inv
    dz, dnc, dc, s1, s2, s3 = scratch
    g = grads
    one = saved.gates.dtype.type(1)
    output_grads(dh_out, dh_next, saved.gates, saved.tc, dnc, dz, one)
    if mode.bn:
        bn_backward_rows(dnc, saved.xc, p.gamma_c, inv_c, mode.batch, dc,
                         (g.dgamma_c, g.dbeta_c), (s1, s2))
        cell_grads(dc, dc_next, saved.gates, c_prev, dz, one)
        bn_backward_rows(dz, saved.xa, p.gamma_a, inv_a, mode.batch, g.da,
                         (g.dgamma_a, g.dbeta_a), (s1, s2))
        s3[:] = 0                                         # dβ_b: b has no shift; discarded
        bn_backward_rows(dz, saved.xb, p.gamma_b, inv_b, mode.batch, g.db,
                         (g.dgamma_b, s3), (s1, s2))
    else:
        cell_grads(dnc, dc_next, saved.gates, c_prev, dz, one)
        copy_and_sum(dz, g.da, g.db, g.dbeta_a)
