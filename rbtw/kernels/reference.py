"""Plain NumPy references for the packed products (same table method, canonical layout).

Dimension legend: G rows, K cols, B batch, NG = ceil(K/4) groups of 4 columns.

They read the canonical bit-planes (not the kernel layout), build the same 16-entry
subset-sum tables (one add per entry) and sum one table entry per nibble of weights:

    binary   y_r = sum_g S_g[nib_g(P_r)]
    ternary  y_r = sum_g U_g[nib_g(P_r)] - U_g[nib_g(M_r)]

Slow and simple: for tests and for reading, not for speed.
"""

from __future__ import annotations

import numpy as np

from .packing import PackedMatrix, _unpack_bits


def subset_tables(x: np.ndarray, signed: bool) -> np.ndarray:
    """float32 (NG, 16): T[g, m] = sum over columns 4g+i of ±x or x·[bit i of m]."""
    k = x.shape[0]
    ng = -(-k // 4)
    d = np.zeros(4 * ng, dtype=np.float32)
    d[:k] = x
    d = d.reshape(ng, 4)                                        # (NG, 4)
    t = np.empty((ng, 16), dtype=np.float32)
    if signed:
        t[:, 0] = -(((d[:, 0] + d[:, 1]) + d[:, 2]) + d[:, 3])
        d = d + d
    else:
        t[:, 0] = 0
    for m in range(1, 16):
        top = m.bit_length() - 1
        t[:, m] = t[:, m - (1 << top)] + d[:, top]
    return t


def _nibbles(planes: np.ndarray, cols: int) -> np.ndarray:
    """uint64 (P, G, W) -> int (P, G, NG): the 4-bit weight code of each column group."""
    bits = _unpack_bits(planes, cols).astype(np.int64)         # (P, G, K)
    ng = -(-cols // 4)
    padded = np.zeros(bits.shape[:2] + (4 * ng,), dtype=np.int64)
    padded[..., :cols] = bits
    quads = padded.reshape(bits.shape[:2] + (ng, 4))
    return quads[..., 0] | quads[..., 1] << 1 | quads[..., 2] << 2 | quads[..., 3] << 3


def reference_matvec(pm: PackedMatrix, x) -> np.ndarray:
    """Q x as float32 (G,), by table look-ups in NumPy."""
    x = np.asarray(x, dtype=np.float32)
    nib = _nibbles(pm.planes, pm.cols)                          # (P, G, NG)
    t = subset_tables(x, signed=pm.kind == "binary")            # (NG, 16)
    g = np.arange(t.shape[0])
    y = t[g, nib[0]].sum(axis=1, dtype=np.float32)              # (G,)
    if pm.kind == "ternary":
        y = y - t[g, nib[1]].sum(axis=1, dtype=np.float32)
    return y.astype(np.float32)


def reference_matmul(pm: PackedMatrix, X) -> np.ndarray:
    """X Qᵀ as float32 (B, G): one reference_matvec per batch row."""
    X = np.asarray(X, dtype=np.float32)
    out = np.empty((X.shape[0], pm.rows), dtype=np.float32)
    for i, x in enumerate(X):
        out[i] = reference_matvec(pm, x)
    return out
