"""AccelEngine: an LSTM or GRU export run on the emulated accelerator, PackedEngine interface.

The recurrent layers run on the fixed-point datapath (emulator, or the NumPy reference with
``reference=True``); the output layer (H → V logits) runs in float on the host, as does the
word embedding lookup, whose result is quantised to the activation format on the way in.
So ``rbtw.evaluate.evaluate_engine`` scores it like any engine, and ``session`` generates
with the host loop of rbtw.accel.host (one jitted call per run of tokens), as rbtw.generate
does with the packed engine.
"""

import numpy as np

from rbtw.accel import fixed
from rbtw.accel.datapath import emulate_layer, tables
from rbtw.accel.program import compile_export
from rbtw.accel.reference import reference_layer
from rbtw.errors import UserError


class AccelEngine:
    def __init__(self, export, design, reference=False, on_steps=None, tiled=False):
        self.export, self.design = export, design
        self.spec = export.spec
        self.kind = self.spec["kind"]
        self.layers = compile_export(export, design)
        self.reference, self.tiled = reference, tiled
        self.roms = tables(design)
        self.W_out = export.arrays["out.W"]
        self.b_out = export.arrays["out.b"]
        self.E = export.arrays.get("emb.E")
        self.on_steps = on_steps            # callback(n_steps) after each forward, for progress

    def initial_state(self, B):
        return [(np.broadcast_to(L.h0, (B, L.H)).copy(), np.broadcast_to(L.c0, (B, L.H)).copy())
                for L in self.layers]

    def _inputs(self, inputs):
        d = self.design
        if self.kind == "char":
            x = np.asarray(inputs, dtype=np.int64)
            if x.size and (x.min() < 0 or x.max() >= self.spec["n_in"]):
                raise UserError("token id outside the model's vocabulary")
            return x
        x = self.E[np.asarray(inputs)] if self.kind == "word" else np.asarray(inputs, dtype=np.float32)
        return fixed.quantize(x, d.act_bits, d.act_frac)

    def forward_fixed(self, inputs, state=None, t0=0):
        """Integer h of the last layer (T, B, H) and the final integer state per layer."""
        x = self._inputs(inputs)
        B = x.shape[1]
        state = state if state is not None else self.initial_state(B)
        final = []
        for layer, s in zip(self.layers, state):
            if self.reference:
                x, h, c = reference_layer(layer, self.design, x, s, t0)
            else:
                x, h, c = emulate_layer(layer, self.design, x, s, t0, self.roms, self.tiled)
            final.append((h, c))
        if self.on_steps is not None:
            self.on_steps(x.shape[0] * x.shape[1])
        return x, final

    def forward(self, inputs, state=None, t0=0):
        """Float logits like PackedEngine.forward: LMs (T, B, V), classifier (B, C)."""
        hs, final = self.forward_fixed(inputs, state, t0)
        h = fixed.to_float(hs, self.design.act_frac).astype(np.float32)
        if self.kind == "classify":
            h = h[-1]
        return h @ self.W_out + self.b_out, final

    def session(self, prime_ids):
        """The per-token path of generation after ``prime_ids`` (rbtw.accel.host.AccelSession;
        the NumPy reference datapath runs through ``forward`` one token at a time)."""
        if self.reference:
            from rbtw.generate import ForwardSession
            return ForwardSession(self, prime_ids)
        from rbtw.accel.host import AccelSession
        return AccelSession(self, prime_ids)
