"""Public products with a packed integer matrix: matvec (batch 1), matmul (batch B), product.

Dimension legend: G = pm.rows, K = pm.cols, B batch, R rows per block of the path's kernels.

    matvec(pm, x)   = Q x      x (K,)   -> (G,)    float32   (packed kernels)
    matmul(pm, X)   = X Qᵀ     X (B, K) -> (B, G)  float32   (packed kernels)
    product(pm, X)  = X Qᵀ     packed kernels where they beat BLAS on this CPU, else the dense
                               float32 product X @ Qᵀ of the same values (``packed_wins``)

Q is the integer matrix (±1 or -1/0/+1); the caller applies α and any per-row scale after:
z = scale ⊙ (Q x) + shift.  The kernel path (avx512, avx2, portable) is rbtw.kernels.isa's
choice unless ``path`` is given; its module is imported on first use, so only the kernels a
call needs are compiled.  Kernels write whole row blocks (and 4-row batch tiles), so when G
or B does not fit those the result goes through a padded scratch buffer.
"""

from __future__ import annotations

import importlib
import os

import numba
import numpy as np

from . import isa
from .packing import PackedMatrix

# Below this many weights (G*K) a matvec runs on one thread, below this many weights x batch
# rows (G*K*B) a matmul does: waking more threads costs more than the halved work saves.
# Thresholds: bench/results/kernels_evidence.md §threads.
PARALLEL_MIN_WORK = 1 << 24
PARALLEL_MIN_WORK_BATCH = 1 << 26

ROWS = {"avx512": 16, "avx2": 8, "portable": 8}
BATCH_TILE = 4

# Where the packed kernels beat the faster BLAS layout (1 thread): up to PACKED_MAX_BATCH batch
# rows, from PACKED_MIN_COLS columns, from DENSE_BELOW weights; elsewhere product() runs the
# dense float32 product.  Thresholds: bench/results/kernels_evidence.md §routing.
PACKED_MAX_BATCH = {("avx512", "binary"): 1 << 30, ("avx512", "ternary"): 1 << 30,
                    ("avx2", "binary"): 8, ("avx2", "ternary"): 4,
                    ("portable", "binary"): 4, ("portable", "ternary"): 4}
PACKED_MIN_COLS = {("avx512", "binary"): 0, ("avx512", "ternary"): 0,
                   ("avx2", "binary"): 0, ("avx2", "ternary"): 128,
                   ("portable", "binary"): 512, ("portable", "ternary"): 1000}
# G·K below this: a product too small for tables to pay.
DENSE_BELOW = {"avx512": 1 << 14, "avx2": 1 << 16, "portable": 1 << 16}
# Wide matrices win at larger batches: (min columns, max batch).
PACKED_WIDE = {("avx2", "binary"): (512, 16)}
# One row inside jitted code (generation: the packed engine's and the emulator's token steps):
# the dense route there is a loop over Qᵀ (jitops.dense_row), and the packed matvec beat it on
# every path from this many columns (B 1 of bench/results/jit_routing.md, bench/jit_routing.py).
# (More rows never take a dense product inside jitted code: Numba's np.dot links SciPy's BLAS,
# which ran 1.4-1.7x slower than NumPy's here, so rbtw.infer runs those through NumPy.)
JIT_ROW_MIN_COLS = {"avx512": 0, "avx2": 0, "portable": 128}


def _cores_busy() -> bool:
    """True when the 1-minute load average already fills every core this process may use:
    then a second thread mostly waits for a core, and each product's join waits for it."""
    try:
        return os.getloadavg()[0] >= len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return False


SPIN_TIMEOUT_MAX = 20     # log2 cycles: OpenBLAS threads that spin longer fight our threads


def _one(var: str) -> bool:
    return os.environ.get(var, "").strip() == "1"


def blas_may_spin() -> bool:
    """True when OpenBLAS may keep worker threads spinning after a call (more than one BLAS
    thread, and a spin timeout above 2^SPIN_TIMEOUT_MAX cycles or unknown because NumPy was
    loaded before rbtw): a second packed-kernel thread would then fight them for a core."""
    from rbtw.blas_env import BLAS_TIMEOUT_AT_LOAD
    if _one("OPENBLAS_NUM_THREADS") or (not os.environ.get("OPENBLAS_NUM_THREADS")
                                        and _one("OMP_NUM_THREADS")):
        return False
    try:
        return int(BLAS_TIMEOUT_AT_LOAD) > SPIN_TIMEOUT_MAX
    except (TypeError, ValueError):
        return True


def describe_threads() -> str:
    """One line for ``rbtw info --system``: how packed products use threads here."""
    from rbtw.blas_env import BLAS_TIMEOUT_AT_LOAD
    timeout = BLAS_TIMEOUT_AT_LOAD
    spin = ("unknown (NumPy was loaded before rbtw)" if timeout is None else f"2^{timeout} cycles")
    rule = ("on one thread: OpenBLAS threads may spin" if blas_may_spin() else
            f"on {numba.get_num_threads()} Numba threads from {PARALLEL_MIN_WORK:,} weights "
            f"({PARALLEL_MIN_WORK_BATCH:,} weights × rows in a batch)")
    return f"packed products {rule}; OpenBLAS spin after a call: {spin}"


def threads_for(work: int, batch: bool = False) -> int:
    """Threads for a product of ``work`` weights × batch rows: all of Numba's from the
    threshold on, unless the machine is already busy or OpenBLAS threads may be spinning;
    else 1."""
    # get_num_threads also starts Numba's threading layer: a function that links the cached
    # parallel kernels (the emulator's run_layer) needs its symbols when it is compiled.
    n = numba.get_num_threads()
    limit = PARALLEL_MIN_WORK_BATCH if batch else PARALLEL_MIN_WORK
    if work < limit or n == 1 or blas_may_spin() or _cores_busy():
        return 1
    return n


def kernels(path: str | None = None):
    """The kernel module of ``path`` (default: the selected one), imported on first use: the
    kernels of each path are in the module of its name (rbtw.kernels.avx512, .avx2, .portable)."""
    path = path or isa.path()
    if path not in isa.PATHS:
        raise ValueError(f"unknown kernel path {path!r}")
    return importlib.import_module(f"{__package__}.{path}")


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


def matvec(pm: PackedMatrix, x, out=None, path: str | None = None) -> np.ndarray:
    """y = Q x, float32 (G,); x float32 (K,).  ``out`` (float32 (G,)) receives y if given."""
    x = _as_input(x, 1, pm.cols, "x")
    out = _check_out(out, (pm.rows,))
    if pm.rows == 0 or pm.cols == 0:
        out[:] = 0
        return out
    path = path or isa.path()
    lay, nw = pm.path_layout(path)
    r = ROWS[path]
    padded = r * -(-pm.rows // r)
    direct = pm.rows == padded and out.flags.c_contiguous
    y = out if direct else np.empty(padded, dtype=np.float32)
    k = kernels(path)
    ternary = pm.kind == "ternary"
    n = threads_for(pm.rows * pm.cols)
    if n > 1:
        k.matvec_parallel(lay, x, y, nw, ternary, n)
    else:
        k.matvec_serial(lay, x, y, nw, ternary)
    if not direct:
        out[:] = y[:pm.rows]
    return out


def matmul(pm: PackedMatrix, X, out=None, path: str | None = None) -> np.ndarray:
    """Y = X Qᵀ, float32 (B, G); X float32 (B, K).  ``out`` (float32 (B, G)) receives Y."""
    X = _as_input(X, 2, pm.cols, "X")
    b = X.shape[0]
    out = _check_out(out, (b, pm.rows))
    if b == 0 or pm.rows == 0 or pm.cols == 0:
        out[:] = 0
        return out
    if b == 1:                                   # one row: the matvec kernel, no batch tile
        matvec(pm, X[0], out=out[0], path=path)  # of 4 (3 of them padding) to fill and scan
        return out
    path = path or isa.path()
    lay, nw = pm.path_layout(path)
    r = ROWS[path]
    padded = r * -(-pm.rows // r)
    bp = -(-b // BATCH_TILE) * BATCH_TILE        # batch padded to whole tiles
    if bp != b:
        X = np.concatenate([X, np.zeros((bp - b, pm.cols), np.float32)])
    direct = pm.rows == padded and bp == b and out.flags.c_contiguous
    y = out if direct else np.empty((bp, padded), dtype=np.float32)
    n = threads_for(pm.rows * pm.cols * b, batch=True)
    if n > 1:
        kernels(path).matmul_kernel(lay, X, y, nw, pm.kind == "ternary", n)
    else:                                        # no parallel region: its join alone can cost
        kernels(path).matmul_serial(lay, X, y, nw, pm.kind == "ternary")   # more than the work
    if not direct:
        out[:] = y[:b, :pm.rows]
    return out


def packed_wins(pm: PackedMatrix, batch: int, path: str | None = None, jitted: bool = False) -> bool:
    """True where the packed kernels beat the dense float32 product for ``batch`` rows: NumPy's
    (:func:`product`), or with ``jitted`` and one row the loop jitted code runs (JIT_ROW_MIN_COLS)."""
    key = (path or isa.path(), pm.kind)
    if jitted and batch == 1:
        return pm.cols >= JIT_ROW_MIN_COLS[key[0]]
    max_batch = PACKED_MAX_BATCH[key]
    if key in PACKED_WIDE and pm.cols >= PACKED_WIDE[key][0]:
        max_batch = max(max_batch, PACKED_WIDE[key][1])
    return (pm.rows * pm.cols >= DENSE_BELOW[key[0]] and pm.cols >= PACKED_MIN_COLS[key]
            and batch <= max_batch)


def dense_t(pm: PackedMatrix) -> np.ndarray:
    """float32 (K, G) = Qᵀ, contiguous (the faster BLAS layout for X @ Qᵀ); cached on pm."""
    if pm._dense_t is None:
        from .packing import unpack
        pm._dense_t = np.ascontiguousarray(unpack(pm).T, dtype=np.float32)
    return pm._dense_t


def product(pm: PackedMatrix, X, out=None) -> np.ndarray:
    """Y = X Qᵀ (B, G) by the packed kernels or the dense float32 product, whichever wins here.

    Both add the same float32 values (±1 or -1/0/+1 times x), so they agree up to the order of
    additions (exactly for integer-valued X with partial sums below 2^24).
    """
    X = _as_input(X, 2, pm.cols, "X")
    if packed_wins(pm, X.shape[0]):
        return matmul(pm, X, out=out)
    out = _check_out(out, (X.shape[0], pm.rows))
    np.matmul(X, dense_t(pm), out=out)
    return out
