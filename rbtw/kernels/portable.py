"""Portable accumulate-only kernels: y = Q·x and Y = X·Qᵀ with 256-entry byte tables.

No intrinsics: plain loops that compile on any CPU Numba targets (LLVM turns the 8-lane
look-ups into gathers where the target has them, scalar loads elsewhere).

Dimension legend
    G rows   K columns   B batch   NB = ceil(K/8) bytes per row and plane   RB = ceil(G/8)
    P planes: 1 (binary: plus bits) or 2 (ternary: plus, minus)

Layout (``packing.portable_layout``): uint8 (P, RB, NB, 8), entry [p, rb, b, i] = byte b of
plane p of row 8rb+i, i.e. the plus (minus) bits of columns 8b..8b+7, LSB first.  The kernels
take it as flat uint32 words (the type of the other paths' layouts) and read it as bytes.

Tables (x zero-padded past K), 256 float32 per byte of columns, one addition each:

    binary   S_b[m] = sum_i (bit i of m ? +x : -x)_{8b+i}     S_b[0] = -sum_i x_{8b+i},
                                                               S_b[m + 2^p] = S_b[m] + 2x_p
    ternary  U_b[m] = sum_i (bit i of m) x_{8b+i}              U_b[0] = 0, U_b[m + 2^p] = U_b[m] + x_p

    binary   (Q x)_r = sum_b S_b[plus_b(r)]       ternary   (Q x)_r = sum_b U_b[plus_b(r)] - U_b[minus_b(r)]

Only additions and subtractions of float32 (see rbtw.kernels.lut on exactness).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

ROWS = 8
BATCH_TILE = 4
COL_BYTES = 16      # bytes of columns per block: 16 KiB of tables, in L1


@njit(cache=True)
def _fill_tables(x, ternary, t):
    """t (NB*256,) <- the 256-entry table of every 8 columns of x (K,)."""
    k = x.shape[0]
    for b in range(t.shape[0] // 256):
        o = 256 * b
        total = np.float32(0)
        if not ternary:
            for p in range(8):
                total += x[8 * b + p] if 8 * b + p < k else np.float32(0)
        t[o] = -total
        span = 1
        for p in range(8):
            xp = x[8 * b + p] if 8 * b + p < k else np.float32(0)
            if not ternary:
                xp = xp + xp
            for m in range(span):
                t[o + span + m] = t[o + m] + xp
            span *= 2


@njit(cache=True)
def _mv_rows(lay, t, y, nb, ternary, rb0, rb1):
    """y[8rb:8rb+8] = rows of Q·x for row blocks rb0..rb1-1, column blocks of COL_BYTES.
    lay: uint8 (P*RB*NB*8,)."""
    nrb = lay.shape[0] // ((2 if ternary else 1) * nb * 8)
    minus = nrb * nb * 8                 # offset of the minus plane
    for b0 in range(0, nb, COL_BYTES):
        b1 = min(nb, b0 + COL_BYTES)
        for rb in range(rb0, rb1):
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float32(0)
            for b in range(b0, b1):
                o = 256 * b
                p = (rb * nb + b) * 8
                a0 += t[o + lay[p]]; a1 += t[o + lay[p + 1]]
                a2 += t[o + lay[p + 2]]; a3 += t[o + lay[p + 3]]
                a4 += t[o + lay[p + 4]]; a5 += t[o + lay[p + 5]]
                a6 += t[o + lay[p + 6]]; a7 += t[o + lay[p + 7]]
                if ternary:
                    p += minus
                    a0 -= t[o + lay[p]]; a1 -= t[o + lay[p + 1]]
                    a2 -= t[o + lay[p + 2]]; a3 -= t[o + lay[p + 3]]
                    a4 -= t[o + lay[p + 4]]; a5 -= t[o + lay[p + 5]]
                    a6 -= t[o + lay[p + 6]]; a7 -= t[o + lay[p + 7]]
            r = 8 * rb
            if b0 == 0:
                y[r] = a0; y[r + 1] = a1; y[r + 2] = a2; y[r + 3] = a3
                y[r + 4] = a4; y[r + 5] = a5; y[r + 6] = a6; y[r + 7] = a7
            else:
                y[r] += a0; y[r + 1] += a1; y[r + 2] += a2; y[r + 3] += a3
                y[r + 4] += a4; y[r + 5] += a5; y[r + 6] += a6; y[r + 7] += a7


@njit(cache=True)
def matvec_serial(lay, x, y, nb, ternary):
    """y (≥ 8·RB,) = Q·x: tables of x, then every row block; lay uint32 (the layout's bytes)."""
    t = np.empty(256 * nb, dtype=np.float32)
    _fill_tables(x, ternary, t)
    b8 = lay.view(np.uint8)
    _mv_rows(b8, t, y, nb, ternary, 0, b8.shape[0] // ((2 if ternary else 1) * nb * 8))


@njit(cache=True, parallel=True)
def matvec_parallel(lay, x, y, nb, ternary, n_chunks):
    """As matvec_serial, with prange over contiguous chunks of row blocks."""
    t = np.empty(256 * nb, dtype=np.float32)
    _fill_tables(x, ternary, t)
    b8 = lay.view(np.uint8)
    nrb = b8.shape[0] // ((2 if ternary else 1) * nb * 8)
    for c in prange(n_chunks):
        _mv_rows(b8, t, y, nb, ternary, c * nrb // n_chunks, (c + 1) * nrb // n_chunks)


@njit(cache=True)
def matmul_serial(lay, xb, yb, nb, ternary):
    """Each batch row by the batch-1 method, one after another.
    lay uint32 (the layout's bytes), xb (B, K), yb (B, ≥ 8·RB)."""
    b8 = lay.view(np.uint8)
    nrb = b8.shape[0] // ((2 if ternary else 1) * nb * 8)
    t = np.empty(256 * nb, dtype=np.float32)
    for i in range(xb.shape[0]):
        _fill_tables(xb[i], ternary, t)
        _mv_rows(b8, t, yb[i], nb, ternary, 0, nrb)


@njit(cache=True, parallel=True)
def matmul_kernel(lay, xb, yb, nb, ternary, n_chunks):
    """As matmul_serial with the batch rows shared among threads (prange; n_chunks unused:
    batch rows are the work units)."""
    b8 = lay.view(np.uint8)
    nrb = b8.shape[0] // ((2 if ternary else 1) * nb * 8)
    for i in prange(xb.shape[0]):
        t = np.empty(256 * nb, dtype=np.float32)
        _fill_tables(xb[i], ternary, t)
        _mv_rows(b8, t, yb[i], nb, ternary, 0, nrb)
