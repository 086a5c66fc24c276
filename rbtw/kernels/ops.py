"""Public products with a packed integer matrix: matvec (batch 1) and matmul (batch B).

Dimension legend: G = pm.rows, K = pm.cols, B batch, RB = ceil(G/16), NW code words per row.

    matvec(pm, x)  = Q x      x (K,)   -> (G,)    float32
    matmul(pm, X)  = X Qᵀ     X (B, K) -> (B, G)  float32

Q is the integer matrix (±1 or -1/0/+1); the caller applies α and any per-row scale after:
z = scale ⊙ (Q x) + shift.  The kernels write whole 16-row blocks (and 4-row batch tiles),
so when G or B does not fit those the result goes through a padded scratch buffer.
"""

from __future__ import annotations

import numba
import numpy as np

from . import lut
from .packing import PackedMatrix

# Below this many weights x batch rows (G*K*B) one thread beats waking a second one.
PARALLEL_MIN_WORK = 1 << 20


def threads_for(work: int) -> int:
    """Threads for a product of ``work`` weights × batch rows: all of Numba's, or 1 below the threshold."""
    return numba.get_num_threads() if work >= PARALLEL_MIN_WORK else 1


def _as_input(a, ndim: int, cols: int, name: str) -> np.ndarray:
    if not (type(a) is np.ndarray and a.dtype == np.float32 and a.flags.c_contiguous):
        a = np.ascontiguousarray(a, dtype=np.float32)
    if a.ndim != ndim or a.shape[-1] != cols:
        want = f"({cols},)" if ndim == 1 else f"(B, {cols})"
        raise ValueError(f"{name} must have shape {want}, got {a.shape}")
    return a


def _check_out(out, shape) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != np.float32:
        raise ValueError(f"out must be a float32 array of shape {shape}")
    return out


def matvec(pm: PackedMatrix, x, out=None) -> np.ndarray:
    """y = Q x, float32 (G,); x float32 (K,).  ``out`` (float32 (G,)) receives y if given."""
    x = _as_input(x, 1, pm.cols, "x")
    out = _check_out(out, (pm.rows,))
    nw = pm.kernel_layout().shape[1]
    nrb = (pm.rows + 15) // 16
    if pm.rows == 0 or nw == 0:
        out[:] = 0
        return out
    direct = pm.rows == 16 * nrb and out.flags.c_contiguous
    y = out if direct else np.empty(16 * nrb, dtype=np.float32)
    lay = pm.kernel_words()
    ternary = pm.kind == "ternary"
    n = threads_for(pm.rows * pm.cols)
    if n > 1:
        lut.matvec_parallel(lay, x, y, nw, ternary, n)
    else:
        lut.matvec_serial(lay, x, y, nw, ternary)
    if not direct:
        out[:] = y[:pm.rows]
    return out


def matmul(pm: PackedMatrix, X, out=None) -> np.ndarray:
    """Y = X Qᵀ, float32 (B, G); X float32 (B, K).  ``out`` (float32 (B, G)) receives Y."""
    X = _as_input(X, 2, pm.cols, "X")
    b = X.shape[0]
    out = _check_out(out, (b, pm.rows))
    nw = pm.kernel_layout().shape[1]
    nrb = (pm.rows + 15) // 16
    if b == 0 or pm.rows == 0 or nw == 0:
        out[:] = 0
        return out
    if b == 1:                                   # one row: the matvec kernel, no batch tile
        matvec(pm, X[0], out=out[0])             # of 4 (3 of them padding) to fill and scan
        return out
    tile = lut.BATCH_TILE
    bp = -(-b // tile) * tile                    # batch padded to whole tiles
    if bp != b:
        X = np.concatenate([X, np.zeros((bp - b, pm.cols), np.float32)])
    direct = pm.rows == 16 * nrb and bp == b and out.flags.c_contiguous
    y = out if direct else np.empty((bp, 16 * nrb), dtype=np.float32)
    lay = pm.kernel_words()
    n = threads_for(pm.rows * pm.cols * b)
    lut.matmul_kernel(lay, X, y, nw, pm.kind == "ternary", n)
    if not direct:
        out[:] = y[:b, :pm.rows]
    return out
