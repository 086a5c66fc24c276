"""The packed engine's jitted loops: a whole sequence (evaluation) or a run of generated tokens.

Dimensions: T steps, B batch rows, Bp = B (B = 1) or B rounded up to 4 (the batch kernels'
tile), L layers, H hidden, G gate rows (4H LSTM, 3H GRU), GP = 16·ceil(G/16), K inputs of a
layer (K0 of the first), V vocabulary, rows = BN table rows (step t reads r = min(t, rows − 1)).

One step of layer l (docs/design.md §3.1), per batch row:

    a   = Q_h h                      rbtw.kernels.jitops.product (packed kernels or dense)
    b   = Q_x x  or column id of Q_x (one-hot input: ``columns[id]``, no arithmetic)
    LSTM  z = s_h ⊙ a + s_x ⊙ b + k                                 (G,)
          c = σ(z_f) ⊙ c + σ(z_i) ⊙ tanh(z_g);  h = σ(z_o) ⊙ tanh(s_c ⊙ c + k_c)
    GRU   A = s_h ⊙ a + k_a,  B = s_x ⊙ b + k_b
          r = σ(A_r + B_r),  u = σ(A_u + B_u),  n = tanh(B_n + r ⊙ A_n),  h = (1 − u) ⊙ n + u ⊙ h

σ and tanh are rbtw.kernels.gates' float32 forms.  Each gate loop writes one array and reads
few others (the affine map in place, then c, then h): LLVM then proves or checks cheaply that
they do not overlap and vectorises every loop (a loop writing c and h while reading eight
tables fails its runtime alias check and runs scalar, as libm's tanhf always did).  The four
gate blocks of z are four unit-stride streams at offsets 0, H, 2H, 3H of one array, so the
export's gate-major row order needs no reordering.

Argument groups: ``Layer`` (namedtuple of one layer's arrays, the same types for every layer,
unused ones (1,) or (1, 1)) and ``plan`` (int64 (L, 8) per call: the route of each product,
``PLAN`` names the columns).  ``layers`` is a tuple of Layer.  State h, c (L, Bp, H) and the
scratch a, bx (Bp, GP), xin (Bp, K0) are the caller's, allocated once per call or session.
"""

from collections import namedtuple

import numpy as np
from numba import njit

from rbtw import numba_cache  # noqa: F401  (before any @njit: the cache sees edits to callees)
from rbtw.kernels.gates import sigmoid32, tanh32
from rbtw.kernels.host import draw_index, output_layer
from rbtw.kernels.jitops import product

JIT = dict(cache=True, error_model="numpy")

Layer = namedtuple("Layer", "lay_h lay_x qt_h qt_x columns sh sx ka kb sc kc")
# lay_h, lay_x  uint32 (·,)   the path's kernel words of Q_h (G, H), Q_x (G, K)
# qt_h, qt_x    float32 (H, G), (K, G)   Qᵀ for the dense route
# columns       float32 (V, G)  Q_xᵀ of a one-hot input layer
# sh sx ka      float32 (rows, G)   s_h, s_x, k (LSTM) or k_a (GRU)
# kb            float32 (rows, G)   GRU k_b
# sc kc         float32 (rows, H)   LSTM s_c, k_c
PLAN = ("nw_h", "ternary_h", "chunks_h", "nw_x", "ternary_x", "chunks_x", "one_hot", "gru")


# ------------------------------------------------------------------------------------------
# gate loops (one batch row)


@njit(**JIT)
def _affine_in_place(a, s, k):
    """a = s ⊙ a + k over the first G = len(s) entries."""
    for g in range(s.shape[0]):
        a[g] = s[g] * a[g] + k[g]


@njit(**JIT)
def _lstm_gates(a, xb, sh, sx, k, sc, kc, c, h):
    """z = s_h ⊙ a + s_x ⊙ b + k into a (GP,); then c, h (H,) in place (module docstring)."""
    H = c.shape[0]
    for g in range(4 * H):
        a[g] = sh[g] * a[g] + sx[g] * xb[g] + k[g]
    for n in range(H):
        c[n] = sigmoid32(a[H + n]) * c[n] + sigmoid32(a[n]) * tanh32(a[2 * H + n])
    for n in range(H):
        h[n] = sigmoid32(a[3 * H + n]) * tanh32(sc[n] * c[n] + kc[n])


@njit(**JIT)
def _gru_gates(a, bx, h):
    """From A in a and B in bx (GP,): r, u, n and h (H,) in place (module docstring)."""
    H = h.shape[0]
    one = np.float32(1)
    for n in range(H):
        r = sigmoid32(a[n] + bx[n])
        u = sigmoid32(a[H + n] + bx[H + n])
        cand = tanh32(bx[2 * H + n] + r * a[2 * H + n])
        h[n] = (one - u) * cand + u * h[n]


@njit(**JIT)
def _columns_affine(bx, col, s, k):
    """bx = s ⊙ col + k: B of a one-hot input (col a row of Q_xᵀ)."""
    for g in range(s.shape[0]):
        bx[g] = s[g] * col[g] + k[g]


@njit(**JIT)
def layer_step(layer, p, path, x_in, ids, t, h, c, a, bx, B):
    """One step of one layer for batch rows 0..B−1 (padding rows of h, c are carried along).

    p: this layer's plan row; x_in (Bp, K) the input (unused for one-hot ids (B,)); h, c (Bp, H)
    updated in place; a, bx (Bp, GP) scratch."""
    r = min(t, layer.sh.shape[0] - 1)
    product(path, layer.lay_h, p[0], p[1] != 0, p[2], layer.qt_h, h, a)
    one_hot, gru = p[6] != 0, p[7] != 0
    if not one_hot:
        product(path, layer.lay_x, p[3], p[4] != 0, p[5], layer.qt_x, x_in, bx)
    sh, sx, ka = layer.sh[r], layer.sx[r], layer.ka[r]
    for b in range(B):
        if gru:
            _affine_in_place(a[b], sh, ka)
            if one_hot:
                _columns_affine(bx[b], layer.columns[ids[b]], sx, layer.kb[r])
            else:
                _affine_in_place(bx[b], sx, layer.kb[r])
            _gru_gates(a[b], bx[b], h[b])
        else:
            xb = layer.columns[ids[b]] if one_hot else bx[b]
            _lstm_gates(a[b], xb, sh, sx, ka, layer.sc[r], layer.kc[r], c[b], h[b])


@njit(**JIT)
def _all_layers(layers, plan, path, xin, ids, t, h, c, a, bx, B):
    """One step of every layer; the input of layer l ≥ 1 is layer l − 1's new h."""
    for l in range(len(layers)):
        x_in = xin if l == 0 else h[l - 1]
        layer_step(layers[l], plan[l], path, x_in, ids, t, h[l], c[l], a, bx, B)


# ------------------------------------------------------------------------------------------
# a sequence, and a run of generated tokens


@njit(**JIT)
def run_sequence(layers, plan, path, ids, X, t0, h, c, a, bx, xin, hs):
    """Every step of ids (T, B) (one-hot input) or X (T, B, K0) (features; ids then (T, 0)):
    hs (T, B, H) receives the last layer's h of each step; h, c (L, Bp, H) carry the state."""
    T, B = hs.shape[0], hs.shape[1]
    L = len(layers)
    for j in range(T):
        if plan[0, 6] == 0:
            xin[:B] = X[j]
        _all_layers(layers, plan, path, xin, ids[j], t0 + j, h, c, a, bx, B)
        hs[j] = h[L - 1, :B]


@njit(**JIT)
def generate_tokens(layers, plan, path, emb, W, b, temperature, uniforms, t, h, c, a, bx, xin,
                    logits, out, advance_last):
    """Draw len(out) tokens, feeding each back (batch 1).

    ``logits`` (V,) holds the distribution of the next token on entry and after each step;
    uniforms (len(out),) one per draw; emb (V, K0) the word LM's embedding (features input).
    After the last draw the model steps once more only if ``advance_last``, so that a later
    call continues from it.  Returns the position t of the next step."""
    L = len(layers)
    ids = np.zeros(1, np.int64)
    n = out.shape[0]
    for k in range(n):
        token = draw_index(logits, uniforms[k], temperature)
        out[k] = token
        if k == n - 1 and not advance_last:
            break
        ids[0] = token
        if plan[0, 6] == 0:
            xin[0] = emb[token]
        _all_layers(layers, plan, path, xin, ids, t, h, c, a, bx, 1)
        output_layer(h[L - 1, 0], W, b, logits)
        t += 1
    return t
