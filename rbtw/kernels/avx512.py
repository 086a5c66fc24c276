"""Accumulate-only Numba kernels: y = Q·x and Y = X·Qᵀ with 32-entry subset-sum tables.

Dimension legend
    G rows of Q (outputs)   K columns (inputs)   B batch rows of X
    C columns per code: 5 (binary) or 3 (ternary)    NC = ceil(K/C) codes per row
    NW = ceil(NC/6) 32-bit code words per row        RB = ceil(G/16) blocks of 16 rows

Tables (one addition or subtraction per entry; x is zero-padded past K).  For code j,
covering columns C*j + i (i < C):

    binary   S_j[m] = sum_i (bit i of m ? +x : -x)_{5j+i}           m = 0..31
    ternary  U_j[c] = sum_i v(d_i) x_{3j+i},  c = sum_i d_i 3^i,  v(0, 1, 2) = (0, +1, -1)
                                                                      c = 0..26 (27..31 = 0)

built by S_j[0] = -(x0+...+x4),  S_j[m + 2^p] = S_j[m] + (x_p + x_p)  for m < 2^p, and
U_j[0] = 0,  U_j[c + 3^p] = U_j[c] + x_p,  U_j[c + 2*3^p] = U_j[c] - x_p  for c < 3^p.
Each table is 32 float32 = two vector registers.

Products.  With code_j(r) the code of row r (``PackedMatrix.kernel_layout``),

    (Q x)_r = sum_j T_j[code_j(r)]         (T = S for binary, U for ternary)

The kernels take 16 rows at a time: one 64-byte load brings 6 codes of 16 rows, and
``avx512_simd.lookup6`` turns it into 6 two-register permutes (16 look-ups each) and 6 vector
adds: 480 binary or 288 ternary weights, no multiplication.  Four row blocks go together,
so each table register load serves 64 rows (the loads repeat otherwise: Numba cannot tell
LLVM that the tables and y do not alias).  For a batch, each batch row
has its own tables; four batch rows share each weight load, and the columns are cut into
blocks so that the tables in use stay in L1.

All arithmetic is float32 additions/subtractions; the result differs from a dense float
product only by the order of additions, so it is exact whenever every partial sum is an
integer below 2^24.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .avx512_simd import lookup6, lookup_first, vadd, vload, vload_u32, vstore, vzero

TABLE = 32          # floats per table
WORD_TABLES = 6 * TABLE   # floats of the 6 tables that one code word indexes
BATCH_TILE = 4      # batch rows sharing one weight load in the batch kernels
COL_BLOCK = 6       # code words per column block in the batch kernels (4*6*768 B of tables)


# ---------------------------------------------------------------- tables

@njit(cache=True)
def _fill_tables(x, ternary, t):
    """t (NW*192,) <- the 32-entry table of every code of x (K,), see the module docstring."""
    k = x.shape[0]
    c = 3 if ternary else 5
    for j in range(t.shape[0] // TABLE):
        o = TABLE * j
        if ternary:
            t[o] = np.float32(0)
            span = 1
            for p in range(3):
                xp = x[c * j + p] if c * j + p < k else np.float32(0)
                for m in range(span):
                    t[o + span + m] = t[o + m] + xp
                    t[o + 2 * span + m] = t[o + m] - xp
                span *= 3
            for m in range(27, TABLE):
                t[o + m] = np.float32(0)
        else:
            total = np.float32(0)
            for p in range(5):
                total += x[c * j + p] if c * j + p < k else np.float32(0)
            t[o] = -total
            span = 1
            for p in range(5):
                xp = x[c * j + p] if c * j + p < k else np.float32(0)
                xp2 = xp + xp
                for m in range(span):
                    t[o + span + m] = t[o + m] + xp2
                span *= 2


# ---------------------------------------------------------------- batch 1

@njit(cache=True)
def _mv_rows(lay, t, y, nw, nc, rb0, rb1):
    """y[16rb:16rb+16] = rows of Q·x for row blocks rb0..rb1-1.

    lay: uint32 (RB*NW*16,) kernel layout; t: float32 (NW*192,); y: float32 (RB*16,);
    nc = ceil(K/C) codes holding real columns.
    """
    full = nc // 6                       # words whose 6 codes all hold real columns
    tail = nc % 6                        # codes in the last, partial word
    s = nw * 16                          # layout stride from one row block to the next
    rb = rb0
    while rb + 4 <= rb1:                 # 4 row blocks at once: each table load serves 4
        b = rb * s
        a0 = vzero(); a1 = vzero(); a2 = vzero(); a3 = vzero()
        for w in range(full):
            o, p = WORD_TABLES * w, b + 16 * w
            a0 = vadd(a0, lookup6(t, o, vload_u32(lay, p)))
            a1 = vadd(a1, lookup6(t, o, vload_u32(lay, p + s)))
            a2 = vadd(a2, lookup6(t, o, vload_u32(lay, p + 2 * s)))
            a3 = vadd(a3, lookup6(t, o, vload_u32(lay, p + 3 * s)))
        if tail:
            o, p = WORD_TABLES * full, b + 16 * full
            a0 = vadd(a0, lookup_first(t, o, vload_u32(lay, p), tail))
            a1 = vadd(a1, lookup_first(t, o, vload_u32(lay, p + s), tail))
            a2 = vadd(a2, lookup_first(t, o, vload_u32(lay, p + 2 * s), tail))
            a3 = vadd(a3, lookup_first(t, o, vload_u32(lay, p + 3 * s), tail))
        vstore(y, 16 * rb, a0); vstore(y, 16 * rb + 16, a1)
        vstore(y, 16 * rb + 32, a2); vstore(y, 16 * rb + 48, a3)
        rb += 4
    for rb in range(rb, rb1):            # the last 0..3 row blocks, one at a time
        base = rb * nw * 16
        acc = vzero()
        for w in range(full):
            acc = vadd(acc, lookup6(t, WORD_TABLES * w, vload_u32(lay, base + 16 * w)))
        if tail:
            v = vload_u32(lay, base + 16 * full)
            acc = vadd(acc, lookup_first(t, WORD_TABLES * full, v, tail))
        vstore(y, 16 * rb, acc)


@njit(cache=True)
def matvec_serial(lay, x, y, nw, ternary):
    """Tables of x, then every row block: one call for the small, latency-bound case."""
    t = np.empty(WORD_TABLES * nw, dtype=np.float32)
    _fill_tables(x, ternary, t)
    nc = (x.shape[0] + 2) // 3 if ternary else (x.shape[0] + 4) // 5
    _mv_rows(lay, t, y, nw, nc, 0, y.shape[0] // 16)


@njit(cache=True, parallel=True)
def matvec_parallel(lay, x, y, nw, ternary, n_chunks):
    """As matvec_serial, with prange over contiguous chunks of row blocks."""
    t = np.empty(WORD_TABLES * nw, dtype=np.float32)
    _fill_tables(x, ternary, t)
    nc = (x.shape[0] + 2) // 3 if ternary else (x.shape[0] + 4) // 5
    nrb = y.shape[0] // 16
    for c in prange(n_chunks):
        _mv_rows(lay, t, y, nw, nc, c * nrb // n_chunks, (c + 1) * nrb // n_chunks)


# ---------------------------------------------------------------- batch B

@njit(cache=True)
def _mm_rows(lay, tb, yb, nw, nc, rb0, rb1):
    """yb[i, 16rb:16rb+16] for all batch rows i (B multiple of 4), row blocks rb0..rb1-1.

    lay: uint32 (RB*NW*16,); tb: float32 (B, NW*192); yb: float32 (B, RB*16).
    """
    tf = tb.ravel()
    yf = yb.ravel()
    ts = tb.shape[1]
    ys = yb.shape[1]
    full = nc // 6
    tail = nc % 6
    for w0 in range(0, nw, COL_BLOCK):
        w1 = min(nw, w0 + COL_BLOCK)
        for i in range(0, tb.shape[0], BATCH_TILE):
            t0, t1, t2, t3 = i * ts, (i + 1) * ts, (i + 2) * ts, (i + 3) * ts
            for rb in range(rb0, rb1):
                o0 = i * ys + 16 * rb
                o1, o2, o3 = o0 + ys, o0 + 2 * ys, o0 + 3 * ys
                if w0 == 0:
                    a0 = vzero(); a1 = vzero(); a2 = vzero(); a3 = vzero()
                else:
                    a0 = vload(yf, o0); a1 = vload(yf, o1); a2 = vload(yf, o2); a3 = vload(yf, o3)
                base = rb * nw * 16
                for w in range(w0, min(w1, full)):
                    v = vload_u32(lay, base + 16 * w)
                    o = WORD_TABLES * w
                    a0 = vadd(a0, lookup6(tf, t0 + o, v))
                    a1 = vadd(a1, lookup6(tf, t1 + o, v))
                    a2 = vadd(a2, lookup6(tf, t2 + o, v))
                    a3 = vadd(a3, lookup6(tf, t3 + o, v))
                if tail and w0 <= full < w1:     # the partial last word
                    v = vload_u32(lay, base + 16 * full)
                    o = WORD_TABLES * full
                    a0 = vadd(a0, lookup_first(tf, t0 + o, v, tail))
                    a1 = vadd(a1, lookup_first(tf, t1 + o, v, tail))
                    a2 = vadd(a2, lookup_first(tf, t2 + o, v, tail))
                    a3 = vadd(a3, lookup_first(tf, t3 + o, v, tail))
                vstore(yf, o0, a0); vstore(yf, o1, a1); vstore(yf, o2, a2); vstore(yf, o3, a3)


@njit(cache=True)
def matmul_serial(lay, xb, yb, nw, ternary):
    """As matmul_kernel on one thread, without entering a parallel region."""
    tb = np.empty((xb.shape[0], WORD_TABLES * nw), dtype=np.float32)
    for i in range(xb.shape[0]):
        _fill_tables(xb[i], ternary, tb[i])
    nc = (xb.shape[1] + 2) // 3 if ternary else (xb.shape[1] + 4) // 5
    _mm_rows(lay, tb, yb, nw, nc, 0, yb.shape[1] // 16)


@njit(cache=True, parallel=True)
def matmul_kernel(lay, xb, yb, nw, ternary, n_chunks):
    """Tables of every batch row (prange over rows), then prange over chunks of row blocks,
    each chunk doing every batch row.  xb (B, K) and yb (B, RB*16), B a multiple of 4."""
    tb = np.empty((xb.shape[0], WORD_TABLES * nw), dtype=np.float32)
    for i in prange(xb.shape[0]):
        _fill_tables(xb[i], ternary, tb[i])
    nc = (xb.shape[1] + 2) // 3 if ternary else (xb.shape[1] + 4) // 5
    nrb = yb.shape[1] // 16
    for c in prange(n_chunks):
        _mm_rows(lay, tb, yb, nw, nc, c * nrb // n_chunks, (c + 1) * nrb // n_chunks)
