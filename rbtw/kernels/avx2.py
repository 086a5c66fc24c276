"""AVX2 accumulate-only kernels: y = Q·x and Y = X·Qᵀ with 8-entry subset-sum tables.

Dimension legend
    G rows of Q   K columns   B batch rows   RB = ceil(G/8) blocks of 8 rows
    NW 32-bit code words per row (``packing.avx2_layout``): 30 binary / 15 ternary columns each

Tables (x zero-padded past K; one addition or subtraction per entry).  Table j covers
columns 3j, 3j+1, 3j+2 and has 8 float32 entries (one register):

    binary   S_j[m] = sum_i (bit i of m ? +x : -x)_{3j+i}       built as S_j[0] = -(x0+x1+x2),
                                                                 S_j[m + 2^p] = S_j[m] + 2x_p
    ternary  U_j[m] = sum_i (bit i of m) x_{3j+i}                U_j[0] = 0, U_j[m + 2^p] = U_j[m] + x_p

Products.  A binary word holds 10 codes (bits 3n..3n+2: the plus bits of columns 30w+3n+i);
a ternary word holds 5 plus codes (bits 3n..) and 5 minus codes (bits 15+3n..) of columns
15w+3n+i.  With those codes, for row r

    binary   (Q x)_r = sum_j S_j[code_j(r)]
    ternary  (Q x)_r = sum_j U_j[plus_j(r)] - U_j[minus_j(r)]

8 rows at a time: one 32-byte load brings a word of 8 rows; ``avx2_simd.lookup8`` is one
``vpermps`` (8 look-ups).  Binary: 30 weights of 8 rows per 10 permutes and 10 adds;
ternary: 15 per 10.  Four row blocks go together so each table load serves 32 rows.  A batch
shares each word load among 4 batch rows (each with its own tables); columns are cut into
blocks so the tables in use stay in L1.  Codes past K index tables of zeros: no tail case.

Only additions and subtractions of float32: exact whenever the partial sums are integers
below 2^24, else equal to a dense product up to the order of additions.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .avx2_simd import lookup8, vadd8, vload8, vstore8, vsub8, vwords8, vzero8

ROWS = 8            # rows per row block (vector lanes)
BATCH_TILE = 4      # batch rows sharing one word load
COL_BLOCK = 16      # code words per column block in the batch kernel


# ---------------------------------------------------------------- tables

@njit(cache=True)
def _fill_tables(x, ternary, t):
    """t (NW*40 or NW*80,) <- the 8-entry table of every 3 columns of x (K,)."""
    k = x.shape[0]
    for j in range(t.shape[0] // 8):
        o = 8 * j
        c = 3 * j
        x0 = x[c] if c < k else np.float32(0)
        x1 = x[c + 1] if c + 1 < k else np.float32(0)
        x2 = x[c + 2] if c + 2 < k else np.float32(0)
        if ternary:
            t[o] = np.float32(0)
        else:
            t[o] = -((x0 + x1) + x2)
            x0, x1, x2 = x0 + x0, x1 + x1, x2 + x2
        t[o + 1] = t[o] + x0
        t[o + 2] = t[o] + x1
        t[o + 3] = t[o + 1] + x1
        t[o + 4] = t[o] + x2
        t[o + 5] = t[o + 1] + x2
        t[o + 6] = t[o + 2] + x2
        t[o + 7] = t[o + 3] + x2


@njit(cache=True)
def _word(t, o, v, ternary):
    """Sum of one code word's look-ups for 8 rows: v i32x8, tables at t[o:]."""
    if ternary:
        a = vsub8(lookup8(t, o, v, 0), lookup8(t, o, v, 15))
        b = vsub8(lookup8(t, o + 8, v, 3), lookup8(t, o + 8, v, 18))
        c = vsub8(lookup8(t, o + 16, v, 6), lookup8(t, o + 16, v, 21))
        d = vsub8(lookup8(t, o + 24, v, 9), lookup8(t, o + 24, v, 24))
        e = vsub8(lookup8(t, o + 32, v, 12), lookup8(t, o + 32, v, 27))
        return vadd8(vadd8(vadd8(a, b), vadd8(c, d)), e)
    a = vadd8(lookup8(t, o, v, 0), lookup8(t, o + 8, v, 3))
    b = vadd8(lookup8(t, o + 16, v, 6), lookup8(t, o + 24, v, 9))
    c = vadd8(lookup8(t, o + 32, v, 12), lookup8(t, o + 40, v, 15))
    d = vadd8(lookup8(t, o + 48, v, 18), lookup8(t, o + 56, v, 21))
    e = vadd8(lookup8(t, o + 64, v, 24), lookup8(t, o + 72, v, 27))
    return vadd8(vadd8(vadd8(a, b), vadd8(c, d)), e)


# ---------------------------------------------------------------- batch 1

@njit(cache=True)
def _mv_rows(lay, t, y, nw, ternary, rb0, rb1):
    """y[8rb:8rb+8] = rows of Q·x for row blocks rb0..rb1-1; lay uint32 (RB*NW*8,)."""
    tw = 40 if ternary else 80
    s = nw * 8                           # layout stride from one row block to the next
    rb = rb0
    while rb + 4 <= rb1:
        b = rb * s
        a0 = vzero8(); a1 = vzero8(); a2 = vzero8(); a3 = vzero8()
        for w in range(nw):
            o, p = tw * w, b + 8 * w
            a0 = vadd8(a0, _word(t, o, vwords8(lay, p), ternary))
            a1 = vadd8(a1, _word(t, o, vwords8(lay, p + s), ternary))
            a2 = vadd8(a2, _word(t, o, vwords8(lay, p + 2 * s), ternary))
            a3 = vadd8(a3, _word(t, o, vwords8(lay, p + 3 * s), ternary))
        vstore8(y, 8 * rb, a0); vstore8(y, 8 * rb + 8, a1)
        vstore8(y, 8 * rb + 16, a2); vstore8(y, 8 * rb + 24, a3)
        rb += 4
    for rb in range(rb, rb1):
        acc = vzero8()
        for w in range(nw):
            acc = vadd8(acc, _word(t, tw * w, vwords8(lay, rb * s + 8 * w), ternary))
        vstore8(y, 8 * rb, acc)


@njit(cache=True)
def matvec_serial(lay, x, y, nw, ternary):
    """y (≥ 8·RB,) = Q·x: tables of x, then every row block."""
    t = np.empty((40 if ternary else 80) * nw, dtype=np.float32)
    _fill_tables(x, ternary, t)
    _mv_rows(lay, t, y, nw, ternary, 0, lay.shape[0] // (8 * nw))


@njit(cache=True, parallel=True)
def matvec_parallel(lay, x, y, nw, ternary, n_chunks):
    """As matvec_serial, with prange over contiguous chunks of row blocks."""
    t = np.empty((40 if ternary else 80) * nw, dtype=np.float32)
    _fill_tables(x, ternary, t)
    nrb = lay.shape[0] // (8 * nw)
    for c in prange(n_chunks):
        _mv_rows(lay, t, y, nw, ternary, c * nrb // n_chunks, (c + 1) * nrb // n_chunks)


# ---------------------------------------------------------------- batch B

@njit(cache=True)
def _mm_rows(lay, tb, yb, nw, ternary, rb0, rb1):
    """yb[i, 8rb:8rb+8] for all batch rows i (B a multiple of 4), row blocks rb0..rb1-1.

    lay uint32 (RB*NW*8,); tb float32 (B, NW*40 or NW*80); yb float32 (B, ≥ 8·RB).
    """
    tf = tb.ravel()
    yf = yb.ravel()
    ts, ys = tb.shape[1], yb.shape[1]
    tw = 40 if ternary else 80
    for w0 in range(0, nw, COL_BLOCK):
        w1 = min(nw, w0 + COL_BLOCK)
        for i in range(0, tb.shape[0], BATCH_TILE):
            t0, t1, t2, t3 = i * ts, (i + 1) * ts, (i + 2) * ts, (i + 3) * ts
            for rb in range(rb0, rb1):
                o0 = i * ys + 8 * rb
                o1, o2, o3 = o0 + ys, o0 + 2 * ys, o0 + 3 * ys
                if w0 == 0:
                    a0 = vzero8(); a1 = vzero8(); a2 = vzero8(); a3 = vzero8()
                else:
                    a0 = vload8(yf, o0); a1 = vload8(yf, o1); a2 = vload8(yf, o2); a3 = vload8(yf, o3)
                base = rb * nw * 8
                for w in range(w0, w1):
                    v = vwords8(lay, base + 8 * w)
                    o = tw * w
                    a0 = vadd8(a0, _word(tf, t0 + o, v, ternary))
                    a1 = vadd8(a1, _word(tf, t1 + o, v, ternary))
                    a2 = vadd8(a2, _word(tf, t2 + o, v, ternary))
                    a3 = vadd8(a3, _word(tf, t3 + o, v, ternary))
                vstore8(yf, o0, a0); vstore8(yf, o1, a1); vstore8(yf, o2, a2); vstore8(yf, o3, a3)


@njit(cache=True)
def matmul_serial(lay, xb, yb, nw, ternary):
    """As matmul_kernel on one thread, without entering a parallel region."""
    tb = np.empty((xb.shape[0], (40 if ternary else 80) * nw), dtype=np.float32)
    for i in range(xb.shape[0]):
        _fill_tables(xb[i], ternary, tb[i])
    _mm_rows(lay, tb, yb, nw, ternary, 0, lay.shape[0] // (8 * nw))


@njit(cache=True, parallel=True)
def matmul_kernel(lay, xb, yb, nw, ternary, n_chunks):
    """Tables of every batch row, then prange over chunks of row blocks (all batch rows each).
    xb (B, K), yb (B, ≥ 8·RB), B a multiple of 4."""
    tb = np.empty((xb.shape[0], (40 if ternary else 80) * nw), dtype=np.float32)
    for i in prange(xb.shape[0]):
        _fill_tables(xb[i], ternary, tb[i])
    nrb = lay.shape[0] // (8 * nw)
    for c in prange(n_chunks):
        _mm_rows(lay, tb, yb, nw, ternary, c * nrb // n_chunks, (c + 1) * nrb // n_chunks)
