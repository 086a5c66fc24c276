"""Products for jitted callers: Q·x and X·Qᵀ by a kernel path named by number, or dense.

Dimension legend: G rows of Q, GP = 16·ceil(G/16) (room for any path's padded row blocks),
K columns, B batch rows (a multiple of BATCH_TILE for the packed batch kernels).

    PATH_ID   portable 0, avx2 1, avx512 2 (rbtw.kernels.isa's names as numbers)
    product(path, lay, nw, ternary, chunks, qt, X, Y)
        Y[:, :G] = X Qᵀ        X (B, K) float32, Y (B, GP) float32
        nw > 0: the packed kernels of ``path`` on ``lay`` (PackedMatrix.path_layout), on
                ``chunks`` threads; a single row through the matvec kernel
        nw = 0: the dense float32 product with qt = Qᵀ (K, G), a loop per row vectorised over
                G (the route of one row; Numba's np.dot would link SciPy's BLAS, slower than
                NumPy's here, so batches take the next route instead)
        nw < 0: nothing: the caller has put the product in Y (NumPy's BLAS, outside the jitted
                code: rbtw.infer's stepped windows)

A jitted loop (the packed engine's steps, the emulator) calls this instead of rbtw.kernels.ops,
whose checks and routing are Python.  The caller decides the route once per call (ops.packed_wins,
ops.threads_for) and passes it in.  Only the paths this target can run are compiled in: the
others' names resolve to the portable kernels, which are never reached with their number.
"""

import numba
import numpy as np
from numba import njit

from rbtw import numba_cache  # noqa: F401  (before any @njit: the cache sees edits to callees)

from . import isa, portable
from .ops import kernels

# Compiled code that calls these links the kernels' parallel loops, whose machine code needs
# Numba's threading layer (its symbols, e.g. allocate_sched) when it is compiled or loaded from
# the cache; asking for the thread count starts it.  Without this, an engine whose products all
# route dense (so never asks threads_for) failed to load its cached window: "LLVM ERROR: Symbol
# not found: allocate_sched", or a crash.
numba.get_num_threads()

_RUNNABLE = isa.runnable()
_avx512 = kernels("avx512") if "avx512" in _RUNNABLE else portable
_avx2 = kernels("avx2") if "avx2" in _RUNNABLE else portable
PATH_ID = {"portable": 0, "avx2": 1, "avx512": 2}


@njit(cache=True)
def matvec(path, lay, nw, ternary, chunks, x, y):
    """y = Q x by the kernels of path number ``path`` on ``chunks`` threads; y (≥ padded G,)."""
    if path == 2:
        if chunks > 1:
            _avx512.matvec_parallel(lay, x, y, nw, ternary, chunks)
        else:
            _avx512.matvec_serial(lay, x, y, nw, ternary)
    elif path == 1:
        if chunks > 1:
            _avx2.matvec_parallel(lay, x, y, nw, ternary, chunks)
        else:
            _avx2.matvec_serial(lay, x, y, nw, ternary)
    elif chunks > 1:
        portable.matvec_parallel(lay, x, y, nw, ternary, chunks)
    else:
        portable.matvec_serial(lay, x, y, nw, ternary)


@njit(cache=True)
def matmul(path, lay, nw, ternary, chunks, X, Y):
    """Y = X Qᵀ by the batch kernels of path number ``path``; X (B, K), B a multiple of 4."""
    if path == 2:
        if chunks > 1:
            _avx512.matmul_kernel(lay, X, Y, nw, ternary, chunks)
        else:
            _avx512.matmul_serial(lay, X, Y, nw, ternary)
    elif path == 1:
        if chunks > 1:
            _avx2.matmul_kernel(lay, X, Y, nw, ternary, chunks)
        else:
            _avx2.matmul_serial(lay, X, Y, nw, ternary)
    elif chunks > 1:
        portable.matmul_kernel(lay, X, Y, nw, ternary, chunks)
    else:
        portable.matmul_serial(lay, X, Y, nw, ternary)


@njit(cache=True)
def dense_row(qt, x, y):
    """y[:G] = x Qᵀ for one row: y[g] = Σ_k x[k]·qt[k, g], k outer so the g loop vectorises."""
    K, G = qt.shape
    for g in range(G):
        y[g] = np.float32(0)
    for k in range(K):
        xk = x[k]
        for g in range(G):
            y[g] += xk * qt[k, g]


@njit(cache=True)
def product(path, lay, nw, ternary, chunks, qt, X, Y):
    """Y[:, :G] = X Qᵀ: packed (nw > 0) or dense (module docstring)."""
    B = X.shape[0]
    if nw < 0:
        return
    if nw > 0:
        if B == 1:
            matvec(path, lay, nw, ternary, chunks, X[0], Y[0])
        else:
            matmul(path, lay, nw, ternary, chunks, X, Y)
    else:
        for b in range(B):
            dense_row(qt, X[b], Y[b])
