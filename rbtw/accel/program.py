"""Loading an export onto a design: the integer contents of the weight and table memories.

Dimension legend: G = 4H gate rows, K inputs of a layer, H hidden, rows = BN table rows.

A binary/ternary export's matrices go to every design as their integers Q (±1 / −1,0,+1),
with the export's scales s_h, s_x (α folded in); fp PEs store them at weight_bits.  A
full-precision export's matrices W run on fp PEs only, as weight_bits fixed point with
per-matrix fraction bits fw = weight_bits − 1 − ceil(log2 max|W|).  The emulator (datapath)
and the NumPy reference both execute this program.
"""

from dataclasses import dataclass

import numpy as np

from rbtw.accel import fixed
from rbtw.errors import UserError
from rbtw.kernels import PackedMatrix, unpack


@dataclass
class LayerProgram:
    Wh: np.ndarray          # (G, H) int8 (binary/ternary) or int16/int32 (fp)
    Wx: np.ndarray          # (G, K)
    one_hot: bool
    fw_h: int
    fw_x: int
    sh: np.ndarray          # (rows, G) int64 at scale_frac
    sx: np.ndarray          # (rows, G)
    k: np.ndarray           # (rows, G) at pp_frac
    sc: np.ndarray          # (rows, H) at scale_frac
    kc: np.ndarray          # (rows, H) at pp_frac
    h0: np.ndarray          # (H,) at act_frac
    c0: np.ndarray          # (H,) at cell_frac (GRU: zeros, unused)
    gru: bool = False
    kb: np.ndarray = None   # GRU: (rows, G) shift of the input half at pp_frac (k holds k_a)
    pm_h: PackedMatrix = None  # the export's packed W_h / W_x (binary, ternary), for the fast products
    pm_x: PackedMatrix = None

    @property
    def H(self):
        return self.Wh.shape[1]


def _weights(export, name, design):
    """(integer matrix (G, K), its fraction bits).  α of a packed matrix is already folded into
    the export's BN scales, so its integers Q go to every design as they are."""
    m = export.matrix(name)
    dtype = np.int8 if design.pe != "fp" else np.int16 if design.weight_bits <= 16 else np.int32
    if isinstance(m, PackedMatrix):
        if m.kind == "ternary" and design.pe == "binary":
            raise UserError(f"a ternary export needs ternary (or fp12) PEs; the {design.name} design has binary PEs")
        return unpack(m).astype(dtype), 0
    if design.pe != "fp":
        raise UserError(f"a full-precision export runs on the fp12 design only, not on {design.name}")
    W = m.astype(np.float64)
    fw = fixed.weight_frac(float(np.abs(W).max()) if W.size else 0.0, design.weight_bits)
    return fixed.quantize(W, design.weight_bits, fw).astype(dtype), fw


def compile_layer(export, k, design, one_hot):
    p = f"rnn{k}."
    A = export.arrays
    Wh, fw_h = _weights(export, p + "W_h", design)
    Wx, fw_x = _weights(export, p + "W_x", design)
    sb, sf, pb, pf = design.scale_bits, design.scale_frac, design.pp_bits, design.pp_frac
    H = Wh.shape[1]
    gru = export.spec["cell"] == "gru"
    rows = A[p + "scale_h"].shape[0]
    return LayerProgram(
        Wh=Wh, Wx=Wx, one_hot=one_hot, fw_h=fw_h, fw_x=fw_x,
        sh=fixed.quantize(A[p + "scale_h"], sb, sf), sx=fixed.quantize(A[p + "scale_x"], sb, sf),
        k=fixed.quantize(A[p + ("shift_a" if gru else "shift")], pb, pf),
        sc=np.zeros((rows, H), np.int64) if gru else fixed.quantize(A[p + "scale_c"], sb, sf),
        kc=np.zeros((rows, H), np.int64) if gru else fixed.quantize(A[p + "shift_c"], pb, pf),
        h0=fixed.quantize(A[p + "h0"], design.act_bits, design.act_frac),
        c0=np.zeros(H, np.int64) if gru else fixed.quantize(A[p + "c0"], design.cell_bits, design.cell_frac),
        gru=gru, kb=fixed.quantize(A[p + "shift_b"], pb, pf) if gru else None,
        pm_h=_packed(export, p + "W_h"), pm_x=_packed(export, p + "W_x"))


def _packed(export, name):
    """The export's packed matrix (any design runs its integers Q), or None for a float one."""
    m = export.matrix(name)
    return m if isinstance(m, PackedMatrix) else None


def check_accumulator(layer, design):
    """UserError if a sum could leave the accumulator: acc_bits >= bits(max_r Σ|W[r]|·max|x|)."""
    xmax = 1 if layer.one_hot else 1 << (design.act_bits - 1)
    hmax = 1 << (design.act_bits - 1)
    bound = max(int(np.abs(layer.Wh).sum(axis=1, dtype=np.int64).max(initial=0)) * hmax,
                int(np.abs(layer.Wx).sum(axis=1, dtype=np.int64).max(initial=0)) * xmax)
    need = fixed.bits_for(bound)
    if need > design.acc_bits:
        raise UserError(f"design {design.name}: a {design.acc_bits}-bit accumulator can overflow on this "
                        f"model; it needs {need} bits (raise acc_bits)")


def compile_export(export, design):
    """The per-layer programs of an LSTM or GRU export on ``design``."""
    spec = export.spec
    layers = [compile_layer(export, k, design, one_hot=(k == 0 and spec["kind"] == "char"))
              for k in range(spec["layers"])]
    for layer in layers:
        check_accumulator(layer, design)
    return layers
