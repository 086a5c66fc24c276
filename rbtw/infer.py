"""Packed inference engine: runs an export with accumulate-only matrix products.

Dimensions: T time, B batch, K inputs of a layer, H hidden, G gate rows, V vocabulary.

Every recurrent product is Q·v with Q in {−1, +1} or {−1, 0, +1} (rbtw.kernels: additions and
subtractions only); α and batch norm were folded at export into one scale per output and
step, applied after the product (see rbtw.export).  For the LSTM:

    z_t = s_h[t] ⊙ (Q_h h_{t-1}) + s_x[t] ⊙ (Q_x x_t) + k[t]
    i, f, o = σ(z_i), σ(z_f), σ(z_o);  g = tanh(z_g);  c_t = f ⊙ c_{t-1} + i ⊙ g
    h_t = o ⊙ tanh(s_c[t] ⊙ c_t + k_c[t])

and for the GRU:  A = s_h ⊙ (Q_h h) + k_a,  B = s_x ⊙ (Q_x x) + k_b,
r = σ(A_r + B_r), u = σ(A_u + B_u), n = tanh(B_n + r ⊙ A_n), h = (1 − u) ⊙ n + u ⊙ h.

A one-hot input (char LM) selects a column of Q_x: no arithmetic at all.  The engine uses
population statistics and the deterministic weights: what the hardware would run.  It reads
exports only and imports no training code.
"""

import numpy as np
from numba import njit

from rbtw.errors import UserError
from rbtw.kernels import PackedMatrix, product, unpack

GATES = {"lstm": 4, "gru": 3}
_HALF, _ONE = np.float32(0.5), np.float32(1.0)


@njit(cache=True, inline="always")
def _sig(z):
    """σ(z) = (1 + tanh(z/2)) / 2 in float32."""
    return _HALF * (_ONE + np.tanh(_HALF * z))


# The gate arithmetic of one step, one pass over (B, H) in float32: the NumPy expressions it
# replaced (a dozen temporaries a step) took half the time of a 1000-unit packed model's step.

@njit(cache=True)
def _lstm_step(a, bx, sh, sx, k, sc, kc, c, c_new, h_new):
    """z = sh ⊙ a + sx ⊙ bx + k, gates i f g o of (B, 4H);  c_new = σ(z_f) ⊙ c + σ(z_i) ⊙ tanh(z_g),
    h_new = σ(z_o) ⊙ tanh(sc ⊙ c_new + kc).  a, bx (B, 4H); sh, sx, k (4H,); sc, kc (H,)."""
    B, H = c.shape
    for b in range(B):
        for n in range(H):
            zi = sh[n] * a[b, n] + sx[n] * bx[b, n] + k[n]
            m = H + n
            zf = sh[m] * a[b, m] + sx[m] * bx[b, m] + k[m]
            m += H
            zg = sh[m] * a[b, m] + sx[m] * bx[b, m] + k[m]
            m += H
            zo = sh[m] * a[b, m] + sx[m] * bx[b, m] + k[m]
            cn = _sig(zf) * c[b, n] + _sig(zi) * np.tanh(zg)
            c_new[b, n] = cn
            h_new[b, n] = _sig(zo) * np.tanh(sc[n] * cn + kc[n])


@njit(cache=True)
def _gru_step(a, bx, sh, sx, ka, kb, h, h_new):
    """A = sh ⊙ a + ka, B = sx ⊙ bx + kb (B, 3H, blocks r u n);  r = σ(A_r + B_r), u = σ(A_u + B_u),
    n = tanh(B_n + r ⊙ A_n),  h_new = (1 − u) ⊙ n + u ⊙ h."""
    nb, H = h.shape
    for b in range(nb):
        for n in range(H):
            r = _sig(sh[n] * a[b, n] + ka[n] + (sx[n] * bx[b, n] + kb[n]))
            m = H + n
            u = _sig(sh[m] * a[b, m] + ka[m] + (sx[m] * bx[b, m] + kb[m]))
            m += H
            cand = np.tanh(sx[m] * bx[b, m] + kb[m] + r * (sh[m] * a[b, m] + ka[m]))
            h_new[b, n] = (_ONE - u) * cand + u * h[b, n]


class _Layer:
    """One recurrent layer of an export: matrices, folded tables, initial state."""

    def __init__(self, export, k, one_hot):
        spec = export.spec
        p = f"rnn{k}."
        self.kind = spec["cell"]
        self.H = spec["hidden"]
        self.Q_x = export.matrix(p + "W_x")                  # (G, K) packed or dense
        self.Q_h = export.matrix(p + "W_h")                  # (G, H)
        self.tables = {name[len(p):]: arr for name, arr in export.arrays.items()
                       if name.startswith(p) and ("scale" in name or "shift" in name)}
        self.rows = self.tables["scale_h"].shape[0]
        self.h0 = export.arrays[p + "h0"]
        self.c0 = export.arrays.get(p + "c0")
        # one-hot inputs pick columns of Q_x: keep Q_x^T as a small int8 table (V, G)
        self.columns = None
        if one_hot:
            Q = unpack(self.Q_x) if isinstance(self.Q_x, PackedMatrix) else self.Q_x
            self.columns = np.ascontiguousarray(Q.T.astype(np.float32))

    def product(self, Q, X):
        """Q·x for every row of X (N, K): (N, G).  Packed: the accumulate-only kernels where they
        beat the dense float32 product of the same values on this CPU (rbtw.kernels.product)."""
        if isinstance(Q, PackedMatrix):
            return product(Q, X)
        return X @ Q.T

    def input_products(self, X):
        """Q_x x_t for a whole sequence: X (T, B, K) float, or (T, B) ids for one-hot input."""
        if self.columns is not None and X.ndim == 2:
            return self.columns[X]                             # (T, B, G): column selection
        T, B, K = X.shape
        return self.product(self.Q_x, np.ascontiguousarray(X.reshape(T * B, K), dtype=np.float32)).reshape(T, B, -1)

    def row(self, name, t):
        table = self.tables[name]
        return table[min(t, table.shape[0] - 1)]

    def initial_state(self, B):
        h = np.broadcast_to(self.h0, (B, self.H)).astype(np.float32)
        if self.kind == "lstm":
            return (h, np.broadcast_to(self.c0, (B, self.H)).astype(np.float32))
        return (h,)

    def run(self, X, state, t0):
        """Run over X; returns h (T, B, H) and the final state."""
        bx = self.input_products(X)                           # (T, B, G)
        T, B = bx.shape[:2]
        H = self.H
        hs = np.empty((T, B, H), dtype=np.float32)
        h = np.ascontiguousarray(state[0], dtype=np.float32)
        c = np.ascontiguousarray(state[1], dtype=np.float32) if self.kind == "lstm" else None
        for j in range(T):
            t = t0 + j
            a = self.product(self.Q_h, h)                      # (B, G)
            bj = np.ascontiguousarray(bx[j], dtype=np.float32)
            h_new = np.empty((B, H), np.float32)
            if self.kind == "lstm":
                c_new = np.empty((B, H), np.float32)
                _lstm_step(a, bj, self.row("scale_h", t), self.row("scale_x", t), self.row("shift", t),
                           self.row("scale_c", t), self.row("shift_c", t), c, c_new, h_new)
                c = c_new
            else:
                _gru_step(a, bj, self.row("scale_h", t), self.row("scale_x", t), self.row("shift_a", t),
                          self.row("shift_b", t), h, h_new)
            h = h_new
            hs[j] = h
        return hs, ((h, c) if self.kind == "lstm" else (h,))


class PackedEngine:
    """Inference for an export: char/word LMs and the sequence classifier."""

    def __init__(self, export):
        self.export = export
        self.spec = export.spec
        self.kind = self.spec["kind"]
        self.layers = [_Layer(export, k, one_hot=(k == 0 and self.kind == "char"))
                       for k in range(self.spec["layers"])]
        self.W_out = export.arrays["out.W"]                   # (H, V) full precision
        self.b_out = export.arrays["out.b"]
        self.E = export.arrays.get("emb.E")

    def initial_state(self, B):
        return [layer.initial_state(B) for layer in self.layers]

    def forward(self, inputs, state=None, t0=0):
        """Logits for inputs ((T, B) ids, or (T, B, X) features) and the final state per layer.

        LMs give (T, B, V); the classifier gives (B, C) from the last step.
        """
        if self.kind == "word":
            x = self.E[np.asarray(inputs)]                    # (T, B, E)
        elif self.kind == "char":
            x = np.asarray(inputs)
            if x.size and (x.min() < 0 or x.max() >= self.spec["n_in"]):
                raise UserError("token id outside the model's vocabulary")
        else:
            x = np.asarray(inputs, dtype=np.float32)
        B = x.shape[1]
        state = state if state is not None else self.initial_state(B)
        final = []
        for layer, s in zip(self.layers, state):
            x, fin = layer.run(x, s, t0)
            final.append(fin)
        if self.kind == "classify":
            x = x[-1]
        return x @ self.W_out + self.b_out, final
