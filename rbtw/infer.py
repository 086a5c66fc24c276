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

from rbtw.errors import UserError
from rbtw.kernels import PackedMatrix, product, unpack

GATES = {"lstm": 4, "gru": 3}


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


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
        h = state[0]
        c = state[1] if self.kind == "lstm" else None
        for j in range(T):
            t = t0 + j
            a = self.product(self.Q_h, np.ascontiguousarray(h))  # (B, G)
            if self.kind == "lstm":
                z = self.row("scale_h", t) * a + self.row("scale_x", t) * bx[j] + self.row("shift", t)
                i, f = _sigmoid(z[:, :H]), _sigmoid(z[:, H:2 * H])
                g, o = np.tanh(z[:, 2 * H:3 * H]), _sigmoid(z[:, 3 * H:])
                c = f * c + i * g
                h = o * np.tanh(self.row("scale_c", t) * c + self.row("shift_c", t))
            else:
                A = self.row("scale_h", t) * a + self.row("shift_a", t)
                Bt = self.row("scale_x", t) * bx[j] + self.row("shift_b", t)
                r = _sigmoid(A[:, :H] + Bt[:, :H])
                u = _sigmoid(A[:, H:2 * H] + Bt[:, H:2 * H])
                n = np.tanh(Bt[:, 2 * H:] + r * A[:, 2 * H:])
                h = (1.0 - u) * n + u * h
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
