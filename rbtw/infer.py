"""Packed inference engine: runs an export with accumulate-only matrix products.

Dimensions: T time, B batch, K inputs of a layer, H hidden, G gate rows, V vocabulary,
L layers; Bp, GP as in rbtw.infer_steps.

Every recurrent product is Q·v with Q in {−1, +1} or {−1, 0, +1} (rbtw.kernels: additions and
subtractions only); α and batch norm were folded at export into one scale per output and
step, applied after the product (docs/design.md §3.1).  For the LSTM:

    z_t = s_h[t] ⊙ (Q_h h_{t-1}) + s_x[t] ⊙ (Q_x x_t) + k[t]
    i, f, o = σ(z_i), σ(z_f), σ(z_o);  g = tanh(z_g);  c_t = f ⊙ c_{t-1} + i ⊙ g
    h_t = o ⊙ tanh(s_c[t] ⊙ c_t + k_c[t])

and for the GRU:  A = s_h ⊙ (Q_h h) + k_a,  B = s_x ⊙ (Q_x x) + k_b,
r = σ(A_r + B_r), u = σ(A_u + B_u), n = tanh(B_n + r ⊙ A_n), h = (1 − u) ⊙ n + u ⊙ h.

A one-hot input (char LM) selects a column of Q_x: no arithmetic at all.  The engine uses
population statistics and the deterministic weights: what the hardware would run.  It reads
exports only and imports no training code.

How it runs.  ``forward`` hands a whole window (every step, every layer) to one jitted call
(rbtw.infer_steps.run_sequence) when every product runs in a jitted kernel; when the plan sends
a product to NumPy's dense BLAS (full-precision exports, and some paths at larger batches) it
steps through the window in Python, the products by BLAS between jitted steps (``_stepped``).
The output layer is one float32 product afterwards.
``session(prime)`` is the per-token path of generation: the prime runs as a window, then
``PackedSession.tokens`` draws and feeds back a run of tokens in one jitted call (products,
gates, output layer and draw), with the state and scratch allocated once per session.  Each
call decides once how every product runs (rbtw.kernels.ops: packed kernels or the dense
float32 product, threads) and passes that in.  rbtw.infer_reference is the plain NumPy
statement of the same equations that the tests hold this engine to.
"""

import numpy as np

from rbtw.errors import UserError
from rbtw.kinds import GATES
from rbtw.infer_steps import Layer, generate_tokens, layer_step, run_sequence
from rbtw.kernels import PackedMatrix, isa, unpack
from rbtw.kernels.host import output_layer
from rbtw.kernels.jitops import PATH_ID
from rbtw.kernels.ops import dense_t, packed_wins, threads_for

ROUTES = ("auto", "packed", "dense")
_NONE1 = np.zeros(1, np.uint32)
_NONE2 = np.zeros((1, 1), np.float32)
NUMPY_DENSE = -1        # plan's nw: a dense product the caller computes with NumPy (B > 1)


def _f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def padded_batch(B):
    """Rows the batch kernels run for B rows: B itself for one row, else a multiple of 4."""
    return B if B <= 1 else -(-B // 4) * 4


class _Layer:
    """One recurrent layer of an export: matrices, folded tables, initial state."""

    def __init__(self, export, k, one_hot):
        spec = export.spec
        p = f"rnn{k}."
        self.kind = spec["cell"]
        self.gru = self.kind == "gru"
        self.H = spec["hidden"]
        self.Q_x = export.matrix(p + "W_x")                  # (G, K) packed or dense float32
        self.Q_h = export.matrix(p + "W_h")                  # (G, H)
        self.K = self.Q_x.cols if isinstance(self.Q_x, PackedMatrix) else self.Q_x.shape[1]
        t = {name[len(p):]: _f32(arr) for name, arr in export.arrays.items()
             if name.startswith(p) and ("scale" in name or "shift" in name)}
        self.tables = t
        self.rows = t["scale_h"].shape[0]
        self.h0 = _f32(export.arrays[p + "h0"])
        self.c0 = _f32(export.arrays[p + "c0"]) if not self.gru else np.zeros(self.H, np.float32)
        # one-hot inputs pick columns of Q_x: keep Q_xᵀ as a small float32 table (V, G)
        self.one_hot = one_hot
        self.columns = _NONE2
        if one_hot:
            Q = unpack(self.Q_x) if isinstance(self.Q_x, PackedMatrix) else self.Q_x
            self.columns = _f32(Q.T)
        self._dense = {}

    def _route(self, Q, B, path, route):
        """(kernel words, words per row, ternary, threads, Qᵀ) of one product for B rows.

        The dense product of one row runs in the jitted step (a loop over Qᵀ); of more rows, in
        NumPy between steps (nw = NUMPY_DENSE): Numba's own np.dot links SciPy's BLAS, which ran
        1.4-1.7x slower here.  So "auto" asks ops.packed_wins as rbtw.kernels.product does for
        B > 1, and (``jitted=True``) its rule for one row in jitted code."""
        packed = isinstance(Q, PackedMatrix) and (
            route == "packed" or (route == "auto" and packed_wins(Q, B, path, jitted=True)))
        if packed:
            lay, nw = Q.path_layout(path)
            work = Q.rows * Q.cols * (B if B > 1 else 1)
            return lay, nw, int(Q.kind == "ternary"), threads_for(work, batch=B > 1), _NONE2
        key = id(Q)
        if key not in self._dense:
            self._dense[key] = dense_t(Q) if isinstance(Q, PackedMatrix) else _f32(Q.T)
        return _NONE1, 0 if B == 1 else NUMPY_DENSE, 0, 1, self._dense[key]

    def arrays(self, B, path, route):
        """(Layer, plan row) of this layer for B rows (rbtw.infer_steps)."""
        lay_h, nw_h, tern_h, ch_h, qt_h = self._route(self.Q_h, B, path, route)
        lay_x, nw_x, tern_x, ch_x, qt_x = (_NONE1, 0, 0, 1, _NONE2) if self.one_hot else \
            self._route(self.Q_x, B, path, route)
        t = self.tables
        layer = Layer(lay_h=lay_h, lay_x=lay_x, qt_h=qt_h, qt_x=qt_x, columns=self.columns,
                      sh=t["scale_h"], sx=t["scale_x"], ka=t["shift_a" if self.gru else "shift"],
                      kb=t["shift_b"] if self.gru else _NONE2,
                      sc=_NONE2 if self.gru else t["scale_c"], kc=_NONE2 if self.gru else t["shift_c"])
        plan = [nw_h, tern_h, ch_h, nw_x, tern_x, ch_x, int(self.one_hot), int(self.gru)]
        return layer, plan


class PackedEngine:
    """Inference for an export: char/word LMs and the sequence classifier.

    path    the kernel path (default: rbtw.kernels.isa's choice)
    route   "auto": each product where it is faster (rbtw.kernels.ops.packed_wins; a batch's
            dense products in NumPy between jitted steps); "packed" or "dense": every product
            of a binary/ternary matrix that way (for tests and benchmarks)
    """

    def __init__(self, export, path=None, route="auto"):
        if route not in ROUTES:
            raise ValueError(f"route must be one of {', '.join(ROUTES)}, not {route!r}")
        self.export = export
        self.spec = export.spec
        self.kind = self.spec["kind"]
        self.layers = [_Layer(export, k, one_hot=(k == 0 and self.kind == "char"))
                       for k in range(self.spec["layers"])]
        self.H = self.spec["hidden"]
        self.G = GATES[self.spec["cell"]] * self.H
        self.GP = 16 * -(-self.G // 16)
        self.W_out = _f32(export.arrays["out.W"])            # (H, V) full precision
        self.b_out = _f32(export.arrays["out.b"])
        self.E = export.arrays.get("emb.E")
        self.E = _f32(self.E) if self.E is not None else None
        self.path = path or isa.path()
        self.route = route

    def plan(self, B):
        """(tuple of Layer, plan (L, 8) int64, path number) for a call with B rows."""
        parts = [layer.arrays(B, self.path, self.route) for layer in self.layers]
        return (tuple(p[0] for p in parts), np.array([p[1] for p in parts], np.int64),
                PATH_ID[self.path])

    def initial_state(self, B):
        """Per layer (h, c) (LSTM) or (h,) (GRU), each (B, H) float32."""
        out = []
        for layer in self.layers:
            h = np.broadcast_to(layer.h0, (B, self.H)).astype(np.float32)
            out.append((h, np.broadcast_to(layer.c0, (B, self.H)).astype(np.float32)) if not layer.gru else (h,))
        return out

    def _state_arrays(self, state, B):
        """h, c (L, Bp, H) float32 from a per-layer state (rows past B zero)."""
        L, Bp = len(self.layers), padded_batch(B)
        h = np.zeros((L, Bp, self.H), np.float32)
        c = np.zeros((L, Bp, self.H), np.float32)
        state = state if state is not None else self.initial_state(B)
        for k, s in enumerate(state):
            h[k, :B] = s[0]
            if not self.layers[k].gru:
                c[k, :B] = s[1]
        return h, c

    def _final(self, h, c, B):
        return [(h[k, :B].copy(), c[k, :B].copy()) if not layer.gru else (h[k, :B].copy(),)
                for k, layer in enumerate(self.layers)]

    def _inputs(self, inputs):
        """(ids (T, B) int64, features (T, B, K0) float32): one of them real, the other empty."""
        if self.kind == "char":
            ids = np.ascontiguousarray(inputs, dtype=np.int64)
            if ids.ndim != 2:
                raise UserError(f"a char model takes token ids of shape (T, B), not {ids.shape}")
            if ids.size and (ids.min() < 0 or ids.max() >= self.spec["n_in"]):
                raise UserError("token id outside the model's vocabulary")
            return ids, np.zeros((ids.shape[0], ids.shape[1], 0), np.float32)
        x = self.E[np.asarray(inputs)] if self.kind == "word" else np.asarray(inputs)
        x = _f32(x)
        if x.ndim != 3 or x.shape[2] != self.layers[0].K:
            raise UserError(f"inputs must have shape (T, B, {self.layers[0].K}), not {x.shape}")
        return np.zeros((x.shape[0], 0), np.int64), x

    def scratch(self, B, K0):
        """a, bx (Bp, GP) and xin (Bp, K0) float32 for a call with B rows."""
        Bp = padded_batch(B)
        return (np.zeros((Bp, self.GP), np.float32), np.zeros((Bp, self.GP), np.float32),
                np.zeros((Bp, max(K0, 1)), np.float32))

    def hidden(self, inputs, state=None, t0=0):
        """The last layer's h (T, B, H) for inputs and the final state per layer."""
        ids, X = self._inputs(inputs)
        T, B = (ids.shape if self.kind == "char" else X.shape[:2])
        h, c = self._state_arrays(state, B)
        hs = np.empty((T, B, self.H), np.float32)
        if T and B:
            layers, plan, path = self.plan(B)
            a, bx, xin = self.scratch(B, X.shape[2])
            if (plan[:, [0, 3]] == NUMPY_DENSE).any():
                self._stepped(layers, plan, path, ids, X, int(t0), h, c, a, bx, xin, hs)
            else:
                run_sequence(layers, plan, path, ids, X, int(t0), h, c, a, bx, xin, hs)
        return hs, self._final(h, c, B)

    def _stepped(self, layers, plan, path, ids, X, t0, h, c, a, bx, xin, hs):
        """run_sequence a step and a layer at a time, the dense products (plan nw =
        NUMPY_DENSE) by NumPy's BLAS between the jitted steps: a = h Q_hᵀ, bx = x Q_xᵀ."""
        T, B = hs.shape[0], hs.shape[1]
        G = self.G
        for j in range(T):
            if plan[0, 6] == 0:
                xin[:B] = X[j]
            for k, (layer, p) in enumerate(zip(layers, plan)):
                x_in = xin if k == 0 else h[k - 1]
                if p[0] == NUMPY_DENSE:
                    a[:, :G] = h[k] @ layer.qt_h                 # (Bp, H) (H, G)
                if p[3] == NUMPY_DENSE:
                    bx[:, :G] = x_in @ layer.qt_x                # (Bp, K) (K, G)
                layer_step(layer, p, path, x_in, ids[j], t0 + j, h[k], c[k], a, bx, B)
            hs[j] = h[len(layers) - 1, :B]

    def forward(self, inputs, state=None, t0=0):
        """Logits for inputs ((T, B) ids, or (T, B, X) features) and the final state per layer.

        LMs give (T, B, V); the classifier gives (B, C) from the last step.
        """
        hs, final = self.hidden(inputs, state, t0)
        if self.kind == "classify":
            hs = hs[-1]
        return hs @ self.W_out + self.b_out, final

    def session(self, prime_ids):
        """The per-token path of generation after ``prime_ids`` (a PackedSession)."""
        return PackedSession(self, prime_ids)


class PackedSession:
    """Generation with state and scratch allocated once: ``tokens(n, uniforms, temperature)``
    draws n tokens after the prime (and after every earlier call), feeding each back."""

    def __init__(self, engine, prime_ids):
        if engine.kind == "classify":
            raise UserError("sampling needs a language model; this model is a classifier")
        self.engine = e = engine
        ids = np.asarray(prime_ids, dtype=np.int64).reshape(-1, 1)            # (T, 1)
        hs, final = e.hidden(ids)
        self.h, self.c = e._state_arrays(final, 1)                            # (L, 1, H)
        self.logits = np.empty(e.W_out.shape[1], np.float32)                  # (V,)
        output_layer(hs[-1, 0], e.W_out, e.b_out, self.logits)
        self.t = ids.shape[0]
        K0 = e.layers[0].K if e.kind == "word" else 0
        self.a, self.bx, self.xin = e.scratch(1, K0)
        self.emb = e.E if e.kind == "word" else _NONE2
        self.advanced = True

    def tokens(self, n, uniforms, temperature, last=False):
        """n token ids (int64 array); ``last``: no step after the final draw (nothing follows)."""
        if not self.advanced:
            raise RuntimeError("this session already drew its last token")
        e = self.engine
        out = np.empty(n, np.int64)
        if n == 0:
            return out
        layers, plan, path = e.plan(1)
        self.t = generate_tokens(layers, plan, path, self.emb, e.W_out, e.b_out, float(temperature),
                                 np.ascontiguousarray(uniforms, dtype=np.float64), self.t, self.h,
                                 self.c, self.a, self.bx, self.xin, self.logits, out, not last)
        self.advanced = not last
        return out
