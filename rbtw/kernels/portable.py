"""Portable accumulate-only kernels: y = Q·x and Y = X·Qᵀ with byte-indexed tables.

No intrinsics: plain loops that compile on any CPU Numba targets (scalar loads and adds; no
per-lane extract/insert).

Dimension legend
    G rows   K columns   B batch   RB = ceil(G/8)
    NB byte codes per row: ceil(K/8) (binary, 8 columns a byte), ceil(K/5) (ternary, 5 a byte)

Layout (``packing.portable_layout``): uint8 (RB, NB, 8), entry [rb, b, i] = code byte b of row
8rb+i.  Binary: the plus bits of columns 8b..8b+7, LSB first.  Ternary: the base-3 number
sum_i (q_{5b+i} + 1)·3^i (0..242), so a ternary weight costs 1.6 bits and one look-up serves 5
columns (the two bit planes would need 2 look-ups per 8).  The kernels take the layout as flat
uint32 words (the type of the other paths' layouts) and read it as bytes.

Tables (x zero-padded past K), 256 float32 per code byte (243 used by ternary), one addition
each:

    binary   S_b[m] = sum_i (bit i of m ? +x : -x)_{8b+i}       S_b[0] = -sum_i x_{8b+i},
                                                                 S_b[m + 2^p] = S_b[m] + 2x_p
    ternary  T_b[m] = sum_i (digit i of m - 1) x_{5b+i}          T_b[0] = -sum_i x_{5b+i},
                                                                 T_b[m + d·3^p] = T_b[m + (d-1)·3^p] + x_p

    (Q x)_r = sum_b S_b[code_b(r)]   (binary; ternary with T_b)

Only additions and subtractions of float32 (see rbtw.kernels.avx512 on exactness).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

ROWS = 8
BATCH_TILE = 4
COL_BYTES = 32      # code bytes per column block: 32 KiB of tables (L1 size); why 32:
                    # bench/results/kernels_evidence.md §portable
_1, _2, _3, _4, _5, _6, _7 = (np.uint64(i) for i in range(1, 8))   # unsigned offsets


@njit(cache=True)
def _fill_tables(x, ternary, t):
    """t (NB*256,) <- the table of every code byte of x (K,): 8 columns (binary) or 5 (ternary)."""
    k = x.shape[0]
    cols = 5 if ternary else 8
    for b in range(t.shape[0] // 256):
        o = 256 * b
        c = cols * b
        total = np.float32(0)
        for p in range(cols):
            total += x[c + p] if c + p < k else np.float32(0)
        t[o] = -total
        span = 1
        for p in range(cols):
            xp = x[c + p] if c + p < k else np.float32(0)
            if ternary:                                  # digit 1 (q = 0), then digit 2 (q = +1)
                for m in range(span):
                    t[o + span + m] = t[o + m] + xp
                for m in range(span):
                    t[o + 2 * span + m] = t[o + span + m] + xp
                span *= 3
            else:                                        # bit 1 turns -x into +x
                xp = xp + xp
                for m in range(span):
                    t[o + span + m] = t[o + m] + xp
                span *= 2


@njit(cache=True)
def _mv_rows(lay, t, y, nb, rb0, rb1):
    """y[8rb:8rb+8] = rows of Q·x for row blocks rb0..rb1-1, column blocks of COL_BYTES.
    lay: uint8 (RB*NB*8,).

    Table and layout indices are unsigned (uint64): Numba then omits the negative-index
    wraparound test it adds to every signed index (its cost: kernels_evidence.md §portable)."""
    for b0 in range(0, nb, COL_BYTES):
        b1 = min(nb, b0 + COL_BYTES)
        for rb in range(rb0, rb1):
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float32(0)
            for b in range(b0, b1):
                o = uint64(256 * b)
                p = uint64((rb * nb + b) * 8)
                a0 += t[o + lay[p]]; a1 += t[o + lay[p + _1]]
                a2 += t[o + lay[p + _2]]; a3 += t[o + lay[p + _3]]
                a4 += t[o + lay[p + _4]]; a5 += t[o + lay[p + _5]]
                a6 += t[o + lay[p + _6]]; a7 += t[o + lay[p + _7]]
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
    _mv_rows(b8, t, y, nb, 0, b8.shape[0] // (nb * 8))


@njit(cache=True, parallel=True)
def matvec_parallel(lay, x, y, nb, ternary, n_chunks):
    """As matvec_serial, with prange over contiguous chunks of row blocks."""
    t = np.empty(256 * nb, dtype=np.float32)
    _fill_tables(x, ternary, t)
    b8 = lay.view(np.uint8)
    nrb = b8.shape[0] // (nb * 8)
    for c in prange(n_chunks):
        _mv_rows(b8, t, y, nb, c * nrb // n_chunks, (c + 1) * nrb // n_chunks)


@njit(cache=True)
def matmul_serial(lay, xb, yb, nb, ternary):
    """Each batch row by the batch-1 method, one after another.
    lay uint32 (the layout's bytes), xb (B, K), yb (B, ≥ 8·RB)."""
    b8 = lay.view(np.uint8)
    nrb = b8.shape[0] // (nb * 8)
    t = np.empty(256 * nb, dtype=np.float32)
    for i in range(xb.shape[0]):
        _fill_tables(xb[i], ternary, t)
        _mv_rows(b8, t, yb[i], nb, 0, nrb)


@njit(cache=True, parallel=True)
def matmul_kernel(lay, xb, yb, nb, ternary, n_chunks):
    """As matmul_serial with the batch rows shared among threads (prange; n_chunks unused:
    batch rows are the work units)."""
    b8 = lay.view(np.uint8)
    nrb = b8.shape[0] // (nb * 8)
    for i in prange(xb.shape[0]):
        t = np.empty(256 * nb, dtype=np.float32)
        _fill_tables(xb[i], ternary, t)
        _mv_rows(b8, t, yb[i], nb, 0, nrb)
