"""The emulator: the accelerator's fixed-point LSTM and GRU datapath, tile by tile, in Numba.

Dimension legend: T steps, B sequences (run one after another, as the hardware would),
G = 4H gate rows, K layer inputs, H hidden, R×C PE array.  F = act_frac, Fc = cell_frac,
P = pp_frac, S = scale_frac, fw = weight fraction bits (0 for binary/ternary).
rshift = rounding right shift, sat_b = saturation to b bits (rbtw.accel.fixed).

Per step t (table row r = min(t, rows − 1)):

    a_h[g] = Σ_tiles Σ_{c in tile} W_h[g, c] · h[c]          frac F + fw_h   (acc_bits, saturating
    a_x[g] = Σ_tiles Σ_{c in tile} W_x[g, c] · x[c]          frac F + fw_x    after every tile)
             (one-hot x: a_x = W_x[:, id], frac fw_x: a column read, no arithmetic)
    z      = sat_pp(rshift(s_h[r]·a_h, S+F+fw_h−P) + rshift(s_x[r]·a_x, S+Fx+fw_x−P) + k[r])   frac P
    i,f,o  = σ̂(z),  g = tanĥ(z)                              frac F (ROM + linear interpolation)
    c      = sat_c(rshift(f·c, F) + rshift(i·g, 2F−Fc))      frac Fc
    u      = sat_pp(rshift(s_c[r]·c, S+Fc−P) + k_c[r])       frac P
    h      = sat_act(rshift(o·tanĥ(u), F))                   frac F

GRU (G = 3H; k_a, k_b the shifts of the hidden and input halves):

    A = sat_pp(rshift(s_h·a_h, ·) + k_a),   B = sat_pp(rshift(s_x·a_x, ·) + k_b)   frac P
    r = σ̂(A_r + B_r),  u = σ̂(A_u + B_u),  n = tanĥ(B_n + rshift(r·A_n, F))       frac F
    h = sat_act(rshift((2^F − u)·n + u·h, F))

Binary/ternary PEs add or subtract h[c] (ternary skips zeros): W·h is written as a product
with W in {−1, 0, +1}, which is the same integer.  The accumulator saturates to acc_bits at
every tile; the program loader refuses designs whose accumulator could overflow (it bounds
every partial sum by max_g Σ_c |W[g, c]| · max|x|), so the saturation never fires and a
whole-row sum (the NumPy reference) agrees exactly.

Three loop nests compute the products.  ``tiled=True`` walks the PE array's schedule
literally: stripes of R rows, tiles of C columns, an adder-tree partial sum per row and tile,
the accumulator saturating after each tile.  The integer row loop walks each row's columns in
one loop and saturates once: by the bound above the two give the same integers, and the long
inner loop vectorises.  The binary and ternary matrices of
an export (on any design) go faster still through the accumulate-only kernels of rbtw.kernels,
which read 1–2 bits a weight instead of a byte and add in float32.  float32 adds integers
exactly while every partial sum stays below 2^24, so v is split into v = 2^8·hi + lo
(lo = v & 255 in [0, 255], hi = v >> 8) and Q·v = 2^8·(Q·hi) + Q·lo, both products exact when
K·2^(act_bits−9) and K·255 are below 2^24 (``exact_split``); otherwise the integer loop runs.
(The integer loop, int64 multiply-adds, is the alternative here, not BLAS; the packed kernels
beat it, so they run wherever exact.  Speeds of the three nests: bench/results/kernels_evidence.md
§emulator.)  The kernel path is rbtw.kernels.isa's choice, passed in as a number; only the
paths this target can run are compiled in (the others name the portable kernels).
Large products share their rows among Numba's threads by the packed kernels' rule
(rbtw.kernels.ops.threads_for).  Tests check the three nests against each other and the
reference.  The cycle count of the tile loop is in rbtw.accel.schedule, so the fast nests lose
nothing but time.

Numba caches this module's compiled nests with the kernels they call linked in; rbtw.numba_cache
makes an edit to any of those kernel modules recompile them (not only an edit to this file).
"""

import numpy as np
from numba import njit, prange

from rbtw import numba_cache  # noqa: F401  (before any @njit: the cache sees edits to the kernels)
from rbtw.accel import fixed
from rbtw.kernels import isa
from rbtw.kernels.jitops import PATH_ID
from rbtw.kernels.jitops import matvec as _matvec   # y = Q x by a kernel path named by number
from rbtw.kernels.ops import threads_for

# indices into the integer parameter vector handed to the kernel
(_R, _C, _ACC, _ACT, _F, _CB, _FC, _PB, _P, _S, _FWH, _FWX, _SEG, _SIGR, _TANR, _ONEHOT, _TILED, _GRU) = range(18)


def kernel_params(design, layer, tiled=False):
    return np.array([design.rows, design.cols, design.acc_bits, design.act_bits, design.act_frac,
                     design.cell_bits, design.cell_frac, design.pp_bits, design.pp_frac, design.scale_frac,
                     layer.fw_h, layer.fw_x, design.seg_frac, design.sig_range, design.tanh_range,
                     int(layer.one_hot), int(tiled), int(layer.gru)], dtype=np.int64)


def tables(design):
    """(sigmoid ROM, tanh ROM) int64 at the activation format."""
    return (fixed.act_table("sigmoid", design.sig_range, design.seg_frac, design.act_bits, design.act_frac),
            fixed.act_table("tanh", design.tanh_range, design.seg_frac, design.act_bits, design.act_frac))


@njit(cache=True)
def _rshift(v, n):
    if n > 0:
        return (v + (np.int64(1) << (n - 1))) >> n
    return v << (-n)


@njit(cache=True)
def _sat(v, bits):
    hi = (np.int64(1) << (bits - 1)) - 1
    lo = -(np.int64(1) << (bits - 1))
    return min(max(v, lo), hi)


@njit(cache=True)
def _act(z, rom, range_log2, P, seg):
    """ROM lookup with linear interpolation; z at frac P, result at the ROM's format."""
    Rq = np.int64(1) << (range_log2 + P)
    u = min(max(z, -Rq), Rq) + Rq
    d = P - seg
    idx = u >> d
    if idx >= rom.shape[0] - 1:
        return rom[rom.shape[0] - 1]
    rem = u - (idx << d)
    return rom[idx] + _rshift((rom[idx + 1] - rom[idx]) * rem, d)


@njit(cache=True)
def _tiled_product(W, v, R, C, acc_bits, out):
    """out[g] = Σ_c W[g, c] v[c], tile by tile (R rows × C columns), accumulator saturating."""
    G, K = W.shape
    for r0 in range(0, G, R):
        r1 = min(r0 + R, G)
        for g in range(r0, r1):
            out[g] = 0
        for c0 in range(0, K, C):
            c1 = min(c0 + C, K)
            for g in range(r0, r1):
                s = np.int64(0)                       # one row of the adder tree
                for c in range(c0, c1):
                    s += W[g, c] * v[c]
                out[g] = _sat(out[g] + s, acc_bits)


@njit(cache=True)
def _row_product(W, v, acc_bits, out, g0, g1):
    """out[g] = sat(Σ_c W[g, c] v[c]) for rows g0 ≤ g < g1: the tile loop's value (module docstring)."""
    for g in range(g0, g1):
        s = np.int64(0)
        for c in range(W.shape[1]):
            s += W[g, c] * v[c]
        out[g] = _sat(s, acc_bits)


@njit(cache=True, parallel=True)
def _row_product_threads(W, v, acc_bits, out, chunks):
    """_row_product with the rows in ``chunks`` contiguous parts shared among threads."""
    G = W.shape[0]
    for i in prange(chunks):
        _row_product(W, v, acc_bits, out, i * G // chunks, (i + 1) * G // chunks)


SPLIT = 8                  # v = 2^SPLIT·hi + lo for the float32 kernels
FLOAT32_EXACT = 1 << 24    # float32 holds every integer of magnitude up to this


def exact_split(K, act_bits):
    """True when Q·hi and Q·lo (module docstring) are exact in float32 for K columns."""
    hi_max = 1 << max(act_bits - 1 - SPLIT, 0)
    return K * max(hi_max, (1 << SPLIT) - 1) < FLOAT32_EXACT


@njit(cache=True)
def _packed_product(lay, nw, ternary, chunks, path, v, acc_bits, xs, ys, out):
    """out[g] = sat(Σ_c Q[g, c] v[c]) with the packed kernels; xs (2, K), ys (2, 16·ceil(G/16)) float32."""
    K = v.shape[0]
    for c in range(K):
        xs[0, c] = np.float32(v[c] >> SPLIT)
        xs[1, c] = np.float32(v[c] & ((1 << SPLIT) - 1))
    for part in range(2):
        _matvec(path, lay, nw, ternary, chunks, xs[part], ys[part])
    for g in range(out.shape[0]):
        out[g] = _sat((np.int64(ys[0, g]) << SPLIT) + np.int64(ys[1, g]), acc_bits)


@njit(cache=True)
def _product(W, lay, nw, ternary, chunks, path, v, prm, xs, ys, out):
    """out = sat(W v) by one of the three nests: tiled if asked, packed when the layer has packed
    words for W (nw > 0), else the integer row loop, on ``chunks`` threads."""
    if prm[_TILED]:
        _tiled_product(W, v, prm[_R], prm[_C], prm[_ACC], out)
    elif nw > 0:
        _packed_product(lay, nw, ternary, chunks, path, v, prm[_ACC], xs, ys, out)
    elif chunks > 1:
        _row_product_threads(W, v, prm[_ACC], out, chunks)
    else:
        _row_product(W, v, prm[_ACC], out, 0, W.shape[0])


@njit(cache=True)
def _gru_update(ah, ax, sh, sx, ka, kb, h, prm, sig, tnh, sh_h, sh_x):
    """GRU post-processing of one step (see module docstring); updates h in place."""
    H = h.shape[0]
    F, P, PB, SEG = prm[_F], prm[_P], prm[_PB], prm[_SEG]
    one = np.int64(1) << F
    for n in range(H):
        gr, gu, gn = n, H + n, 2 * H + n
        a_r = _sat(_rshift(sh[gr] * ah[gr], sh_h) + ka[gr], PB)
        a_u = _sat(_rshift(sh[gu] * ah[gu], sh_h) + ka[gu], PB)
        a_n = _sat(_rshift(sh[gn] * ah[gn], sh_h) + ka[gn], PB)
        b_r = _sat(_rshift(sx[gr] * ax[gr], sh_x) + kb[gr], PB)
        b_u = _sat(_rshift(sx[gu] * ax[gu], sh_x) + kb[gu], PB)
        b_n = _sat(_rshift(sx[gn] * ax[gn], sh_x) + kb[gn], PB)
        r = _act(_sat(a_r + b_r, PB), sig, prm[_SIGR], P, SEG)
        u = _act(_sat(a_u + b_u, PB), sig, prm[_SIGR], P, SEG)
        nn = _act(_sat(b_n + _rshift(r * a_n, F), PB), tnh, prm[_TANR], P, SEG)
        h[n] = _sat(_rshift((one - u) * nn + u * h[n], F), prm[_ACT])


@njit(cache=True)
def run_layer(Wh, Wx, X, ids, sh, sx, k, sc, kc, h0, c0, t0, prm, sig, tnh, kb, lay_h, lay_x, pk):
    """Run one LSTM layer; X (T, B, K) int64 (or ids (T, B) for one-hot input).

    lay_h, lay_x: packed kernel words of W_h, W_x; pk = (nw_h, nw_x, ternary_h, ternary_x, chunks_h,
    chunks_x, path): words per row (0 where the integer loop is to run), threads of each product
    and the kernel path number.  Returns hs (T, B, H), h (B, H), c (B, H), all int64.
    """
    G, H = Wh.shape
    K = Wx.shape[1]
    nw_h, nw_x, tern_h, tern_x, ch_h, ch_x, path = pk[0], pk[1], pk[2] != 0, pk[3] != 0, pk[4], pk[5], pk[6]
    GP = 16 * ((G + 15) // 16)
    xs_h = np.empty((2, H), dtype=np.float32)
    xs_x = np.empty((2, K), dtype=np.float32)
    ys = np.empty((2, GP), dtype=np.float32)
    T, B = ids.shape if prm[_ONEHOT] else X.shape[:2]
    F, Fc, P, S = prm[_F], prm[_FC], prm[_P], prm[_S]
    Fx = 0 if prm[_ONEHOT] else F
    sh_h = S + F + prm[_FWH] - P
    sh_x = S + Fx + prm[_FWX] - P
    sh_c = S + Fc - P
    hs = np.empty((T, B, H), dtype=np.int64)
    hout = np.empty((B, H), dtype=np.int64)
    cout = np.empty((B, H), dtype=np.int64)
    ah = np.empty(G, dtype=np.int64)
    ax = np.empty(G, dtype=np.int64)
    z = np.empty(G, dtype=np.int64)
    for b in range(B):
        h = h0[b].copy()
        c = c0[b].copy()
        for j in range(T):
            row = min(t0 + j, sh.shape[0] - 1)
            _product(Wh, lay_h, nw_h, tern_h, ch_h, path, h, prm, xs_h, ys, ah)
            if prm[_ONEHOT]:
                col = ids[j, b]
                for g in range(G):
                    ax[g] = Wx[g, col]
            else:
                _product(Wx, lay_x, nw_x, tern_x, ch_x, path, X[j, b], prm, xs_x, ys, ax)
            if prm[_GRU]:
                _gru_update(ah, ax, sh[row], sx[row], k[row], kb[row], h, prm, sig, tnh, sh_h, sh_x)
                hs[j, b] = h
                continue
            for g in range(G):
                z[g] = _sat(_rshift(sh[row, g] * ah[g], sh_h) + _rshift(sx[row, g] * ax[g], sh_x)
                            + k[row, g], prm[_PB])
            for n in range(H):                         # post-processing lanes
                i = _act(z[n], sig, prm[_SIGR], P, prm[_SEG])
                f = _act(z[H + n], sig, prm[_SIGR], P, prm[_SEG])
                gg = _act(z[2 * H + n], tnh, prm[_TANR], P, prm[_SEG])
                o = _act(z[3 * H + n], sig, prm[_SIGR], P, prm[_SEG])
                c[n] = _sat(_rshift(f * c[n], F) + _rshift(i * gg, 2 * F - Fc), prm[_CB])
                u = _sat(_rshift(sc[row, n] * c[n], sh_c) + kc[row, n], prm[_PB])
                h[n] = _sat(_rshift(o * _act(u, tnh, prm[_TANR], P, prm[_SEG]), F), prm[_ACT])
            hs[j, b] = h
        hout[b] = h
        cout[b] = c
    return hs, hout, cout


def _kernel_words(pm, act_bits, path):
    """(kernel words, words per row, ternary) of a packed matrix whose split products are exact;
    words per row 0 (the integer loop) otherwise."""
    if pm is None or not exact_split(pm.cols, act_bits) or pm.rows * pm.cols == 0:
        return np.zeros(1, np.uint32), 0, 0
    lay, nw = pm.path_layout(path)
    return lay, nw, int(pm.kind == "ternary")


def layer_arguments(layer, design, tiled=False, packed=True, path=None):
    """(prm, lay_h, lay_x, pk) that run_layer takes for ``layer`` on ``design`` (see
    emulate_layer): the integer parameters, the packed kernel words and their plan."""
    prm = kernel_params(design, layer, tiled)
    path = path or isa.path()
    lay_h, nw_h, tern_h = _kernel_words(layer.pm_h if packed else None, design.act_bits, path)
    lay_x, nw_x, tern_x = _kernel_words(None if layer.one_hot or not packed else layer.pm_x, design.act_bits, path)
    pk = np.array([nw_h, nw_x, tern_h, tern_x, threads_for(layer.Wh.size), threads_for(layer.Wx.size),
                   PATH_ID[path]], dtype=np.int64)
    return prm, lay_h, lay_x, pk


def emulate_layer(layer, design, x, state, t0=0, roms=None, tiled=False, packed=True, path=None):
    """Python entry: x (T, B, K) int64 or ids (T, B); state (h (B, H), c (B, H)) int64.

    ``packed`` false keeps binary/ternary products in the integer loop (for tests); ``path``
    names the kernel path (default: rbtw.kernels.isa's choice)."""
    sig, tnh = roms if roms is not None else tables(design)
    prm, lay_h, lay_x, pk = layer_arguments(layer, design, tiled, packed, path)
    if layer.one_hot:
        ids, X = np.ascontiguousarray(x, dtype=np.int64), np.zeros((1, 1, 1), dtype=np.int64)
    else:
        X = np.ascontiguousarray(x, dtype=np.int64)
        ids = np.zeros((1, 1), dtype=np.int64)
    h, c = state
    return run_layer(layer.Wh, layer.Wx, X, ids, layer.sh, layer.sx, layer.k, layer.sc, layer.kc,
                     np.ascontiguousarray(h, dtype=np.int64), np.ascontiguousarray(c, dtype=np.int64),
                     t0, prm, sig, tnh, layer.kb if layer.gru else layer.k, lay_h, lay_x, pk)
