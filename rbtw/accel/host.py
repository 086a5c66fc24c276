"""The emulator's host loop for generation: the accelerator's steps and the host's token work
in one jitted call per run of tokens.

Dimensions: L layers, H hidden, G gate rows, K inputs of a layer, V vocabulary, E embedding.

Per token (batch 1, as the hardware runs):

    token  = draw(logits, u)                        host (rbtw.kernels.host.draw_index)
    x      = one-hot id, or Eq[token]               Eq: the embedding in the activation format
    h, c   = run_layer(…) for every layer           the fixed-point datapath (rbtw.accel.datapath)
    logits = float32(h_L / 2^F) W + b               host, float32 (rbtw.kernels.host.output_layer)

which is AccelEngine.forward one token at a time, without a Python round trip per token.
``EmuLayer`` holds run_layer's arguments of one layer (rbtw.accel.datapath.layer_arguments).
"""

from collections import namedtuple

import numpy as np
from numba import njit

from rbtw import numba_cache  # noqa: F401  (before any @njit: the cache sees edits to callees)
from rbtw.accel import fixed
from rbtw.accel.datapath import layer_arguments, run_layer
from rbtw.errors import UserError
from rbtw.kernels.host import draw_index, output_layer

EmuLayer = namedtuple("EmuLayer", "Wh Wx sh sx k sc kc kb prm lay_h lay_x pk")


@njit(cache=True, error_model="numpy")
def emulate_tokens(layers, one_hot, Eq, sig, tnh, frac, W, b, temperature, uniforms, t, h, c, logits,
                   out, advance_last):
    """Draw len(out) tokens on the emulator, feeding each back; h, c (L, 1, H) int64 carry the
    state, ``logits`` (V,) the next token's distribution.  Returns the next position t."""
    L = len(layers)
    H = h.shape[2]
    ids = np.zeros((1, 1), np.int64)
    X0 = np.zeros((1, 1, Eq.shape[1]), np.int64)
    hf = np.empty(H, np.float32)
    scale = 1.0 / 2.0 ** frac
    n = out.shape[0]
    for k in range(n):
        token = draw_index(logits, uniforms[k], temperature)
        out[k] = token
        if k == n - 1 and not advance_last:
            break
        ids[0, 0] = token
        if not one_hot:
            X0[0, 0] = Eq[token]
        x = X0
        for l in range(L):
            e = layers[l]
            hs, h_new, c_new = run_layer(e.Wh, e.Wx, x, ids, e.sh, e.sx, e.k, e.sc, e.kc, h[l], c[l], t,
                                         e.prm, sig, tnh, e.kb, e.lay_h, e.lay_x, e.pk)
            h[l] = h_new
            c[l] = c_new
            x = hs
        for j in range(H):
            hf[j] = np.float32(np.float64(h[L - 1, 0, j]) * scale)
        output_layer(hf, W, b, logits)
        t += 1
    return t


class AccelSession:
    """Generation on the emulator (the PackedSession interface): the prime runs through
    AccelEngine.forward_fixed, then ``tokens`` runs emulate_tokens."""

    def __init__(self, engine, prime_ids):
        if engine.kind == "classify":
            raise UserError("sampling needs a language model; this model is a classifier")
        self.engine = e = engine
        d = e.design
        ids = np.asarray(prime_ids, dtype=np.int64).reshape(-1, 1)           # (T, 1)
        hs, final = e.forward_fixed(ids)
        self.h = np.ascontiguousarray(np.stack([s[0] for s in final]), dtype=np.int64)   # (L, 1, H)
        self.c = np.ascontiguousarray(np.stack([s[1] for s in final]), dtype=np.int64)
        self.W, self.b = (np.ascontiguousarray(a, dtype=np.float32) for a in (e.W_out, e.b_out))
        self.logits = np.empty(self.W.shape[1], np.float32)
        output_layer(fixed.to_float(hs[-1, 0], d.act_frac).astype(np.float32), self.W, self.b, self.logits)
        self.t = ids.shape[0]
        self.one_hot = e.kind == "char"
        self.Eq = (np.zeros((1, 1), np.int64) if self.one_hot else
                   fixed.quantize(e.E, d.act_bits, d.act_frac))               # (V, E)
        self.advanced = True

    def _layers(self):
        e = self.engine
        out = []
        for L in e.layers:
            prm, lay_h, lay_x, pk = layer_arguments(L, e.design, e.tiled)
            out.append(EmuLayer(L.Wh, L.Wx, L.sh, L.sx, L.k, L.sc, L.kc, L.kb if L.gru else L.k,
                                prm, lay_h, lay_x, pk))
        return tuple(out)

    def tokens(self, n, uniforms, temperature, last=False):
        """n token ids (int64 array); ``last``: no step after the final draw."""
        if not self.advanced:
            raise RuntimeError("this session already drew its last token")
        out = np.empty(n, np.int64)
        if n == 0:
            return out
        e = self.engine
        if e.reference:
            raise UserError("the NumPy reference datapath generates through forward, not a session")
        self.t = emulate_tokens(self._layers(), self.one_hot, self.Eq, e.roms[0], e.roms[1],
                                e.design.act_frac, self.W, self.b, float(temperature),
                                np.ascontiguousarray(uniforms, dtype=np.float64), self.t, self.h, self.c,
                                self.logits, out, not last)
        self.advanced = not last
        return out
