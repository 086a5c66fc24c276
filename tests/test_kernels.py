"""Specification of rbtw.kernels: bit packing and the accumulate-only products.

Dimension legend: G rows of Q, K columns, B batch rows, W = ceil(K/64) words per packed row.

Exactness.  The kernels only add and subtract float32 values, so on integer-valued inputs
whose partial sums stay far below 2^24 (small ints here) every result must equal the dense
float64 product Q @ x exactly, whatever the order of additions.

Float tolerance (documented here, checked below).  For general float32 x the kernels and the
float64 product differ only by rounding in a sum of at most K + 10 terms whose magnitudes add
up to at most 3 Σ|x| (binary tables are built as −Σx + 2x_p + ...), so

    |y − Q x|  ≤  (K + 16) · 2⁻²² · Σ_i |x_i|        per output row.
"""

from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rbtw.kernels import (PackedMatrix, matmul, matvec, ops, pack, reference_matmul,
                          reference_matvec, unpack)

KINDS = ("binary", "ternary")
ALPHABET = {"binary": np.array([-1, 1], np.int8), "ternary": np.array([-1, 0, 1], np.int8)}

kinds = st.sampled_from(KINDS)
seeds = st.integers(0, 2**32 - 1)


def random_q(rng, kind, g, k):
    """int8 (G, K) with entries drawn uniformly from the alphabet of ``kind``."""
    return rng.choice(ALPHABET[kind], size=(g, k)).astype(np.int8)


def small_ints(rng, *shape):
    """Integer-valued float32 in [-8, 8]: every partial sum of ≤ 1000 terms is exact."""
    return rng.integers(-8, 9, size=shape).astype(np.float32)


def float_bound(x, k):
    """The documented tolerance (module docstring) per batch row of x (..., K)."""
    return (k + 16) * 2.0**-22 * np.abs(x.astype(np.float64)).sum(axis=-1) + 1e-30


# ------------------------------------------------------------------------------------- packing


@settings(max_examples=150, deadline=None)
@given(kind=kinds, g=st.integers(0, 40), k=st.integers(0, 200), seed=seeds)
def test_pack_unpack_round_trip_size_and_zero_padding(kind, g, k, seed):
    q = random_q(np.random.default_rng(seed), kind, g, k)
    pm = pack(q, kind)
    back = unpack(pm)
    assert back.dtype == np.int8 and back.shape == (g, k)
    np.testing.assert_array_equal(back, q)
    w = -(-k // 64)
    p = 1 if kind == "binary" else 2
    assert pm.planes.dtype == np.uint64 and pm.planes.shape == (p, g, w)
    assert pm.nbytes == p * g * w * 8            # 1 or 2 bits a weight + padding to 64 bits
    assert (pm.rows, pm.cols, pm.n_planes) == (g, k, p)
    pm.validate()
    if k % 64 and g:                             # padding bits of the last word are zero
        assert not np.any(pm.planes[..., -1] >> np.uint64(k % 64))


def test_bit_order_is_lsb_first_and_planes_mean_plus_minus():
    q = np.full((2, 70), -1, np.int8)
    q[0, 0] = q[0, 65] = 1
    q[1, 3] = 0
    b = pack(q[:1], "binary").planes                       # (1, 1, 2)
    assert b[0, 0].tolist() == [1, 2]                      # columns 0 and 64+1
    t = pack(q, "ternary").planes                          # (2, 2, 2)
    assert t[0, 0].tolist() == [1, 2]
    full = (1 << 64) - 1
    assert t[1, 0].tolist() == [full - 1, (1 << 6) - 1 - 2]   # minus: all but col 0 / cols 64..69 but 65
    assert t[1, 1].tolist() == [full - 8, (1 << 6) - 1]
    assert t[0, 1].tolist() == [0, 0]


def test_binary_packs_one_bit_and_ternary_two_bits_per_weight():
    q = np.ones((4000, 1000), np.int8)
    assert pack(q, "binary").nbytes == 4000 * 16 * 8       # 1000 columns -> 16 words
    assert pack(q, "ternary").nbytes == 2 * 4000 * 16 * 8
    assert pack(q, "binary").nbytes * 8 / q.size == pytest.approx(1.024)


@pytest.mark.parametrize("kind, bad", [("binary", 0), ("binary", 2), ("ternary", 2),
                                       ("ternary", -2), ("binary", 0.5), ("ternary", 0.5)])
def test_values_outside_the_alphabet_raise(kind, bad):
    q = np.ones((3, 5), dtype=np.float64)
    q[1, 2] = bad
    with pytest.raises(ValueError, match=kind):
        pack(q, kind)


@pytest.mark.parametrize("q, kind, match", [
    (np.ones((2, 3), np.int8), "quaternary", "kind"),
    (np.ones((2, 3), np.int8), None, "kind"),
    (np.ones(3, np.int8), "binary", "2-D"),
    (np.ones((2, 3, 4), np.int8), "ternary", "2-D"),
    (np.array([["a", "b"]]), "binary", "integers"),
    (np.ones((2, 3), bool), "binary", "integers"),
])
def test_bad_input_raises_a_clear_value_error(q, kind, match):
    with pytest.raises(ValueError, match=match):
        pack(q, kind)


def test_packed_matrix_checks_its_planes():
    with pytest.raises(ValueError, match="kind"):
        PackedMatrix("int4", 2, 3, np.zeros((1, 2, 1), np.uint64))
    with pytest.raises(ValueError, match="shape"):
        PackedMatrix("ternary", 2, 3, np.zeros((1, 2, 1), np.uint64))
    with pytest.raises(ValueError, match="uint64"):
        PackedMatrix("binary", 2, 3, np.zeros((1, 2, 1), np.int64))
    with pytest.raises(ValueError, match="non-negative"):
        PackedMatrix("binary", -1, 3, np.zeros((1, 0, 1), np.uint64))
    pad = np.zeros((1, 2, 1), np.uint64)
    pad[0, 1, 0] = np.uint64(1) << np.uint64(3)            # column 3 of a 3-column matrix
    with pytest.raises(ValueError, match="padding"):
        PackedMatrix("binary", 2, 3, pad).validate()
    both = np.zeros((2, 2, 1), np.uint64)
    both[:, 0, 0] = 1
    with pytest.raises(ValueError, match="both"):
        PackedMatrix("ternary", 2, 3, both).validate()


# ----------------------------------------------------------------------------- kernel layout


def layout_by_hand(q, kind):
    """Plain-Python recomputation of the kernel layout (packing module docstring)."""
    g, k = q.shape
    c, base = (5, 2) if kind == "binary" else (3, 3)
    digit = {"binary": {1: 1, -1: 0}, "ternary": {0: 0, 1: 1, -1: 2}}[kind]
    nc = -(-k // c)
    nw = -(-nc // 6)
    rb = -(-g // 16)
    out = np.zeros((rb, nw, 16), np.uint32)
    for r in range(g):
        for w in range(nw):
            word = 0
            for n in range(6):
                code = 0
                for i in range(c):
                    col = c * (6 * w + n) + i
                    if col < k:
                        code += digit[int(q[r, col])] * base**i
                word |= code << (5 * n)
            out[r // 16, w, r % 16] = word
    return out


@settings(max_examples=40, deadline=None)
@given(kind=kinds, g=st.integers(0, 35), k=st.integers(0, 70), seed=seeds)
def test_kernel_layout_matches_a_plain_python_recomputation(kind, g, k, seed):
    q = random_q(np.random.default_rng(seed), kind, g, k)
    pm = pack(q, kind)
    lay = pm.kernel_layout()
    assert lay.dtype == np.uint32 and lay.flags.c_contiguous
    np.testing.assert_array_equal(lay, layout_by_hand(q, kind))
    assert pm.kernel_layout() is lay                       # cached
    assert not np.any(lay >> np.uint32(30))                # bits 30, 31 unused
    assert pm.kernel_words().ndim == 1 and pm.kernel_words().size == lay.size
    assert lay.size == 0 or np.shares_memory(pm.kernel_words(), lay)


# ----------------------------------------------------------------------------- exact products

shapes = dict(kind=kinds, g=st.integers(0, 100), k=st.integers(0, 100), seed=seeds)


def check_matvec(kind, g, k, seed):
    rng = np.random.default_rng(seed)
    q = random_q(rng, kind, g, k)
    x = small_ints(rng, k)
    pm = pack(q, kind)
    want = q.astype(np.float64) @ x.astype(np.float64)            # (G,)
    y = matvec(pm, x)
    assert y.dtype == np.float32 and y.shape == (g,)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(reference_matvec(pm, x), want)


def check_matmul(kind, g, k, b, seed):
    rng = np.random.default_rng(seed)
    q = random_q(rng, kind, g, k)
    X = small_ints(rng, b, k)
    pm = pack(q, kind)
    want = X.astype(np.float64) @ q.T.astype(np.float64)          # (B, G)
    Y = matmul(pm, X)
    assert Y.dtype == np.float32 and Y.shape == (b, g)
    np.testing.assert_array_equal(Y, want)
    np.testing.assert_array_equal(reference_matmul(pm, X), want)


@settings(max_examples=80, deadline=None)
@given(**shapes)
def test_matvec_equals_reference_and_dense_product_exactly(kind, g, k, seed):
    check_matvec(kind, g, k, seed)


@settings(max_examples=80, deadline=None)
@given(**shapes, b=st.integers(0, 9))
def test_matmul_equals_reference_and_dense_product_exactly(kind, g, k, b, seed):
    check_matmul(kind, g, k, b, seed)


@contextmanager
def parallel_path():
    """Force the multi-threaded path of ops for every size."""
    saved = ops.PARALLEL_MIN_WORK, ops.PARALLEL_MIN_WORK_BATCH, ops._cores_busy, ops.blas_may_spin
    ops.PARALLEL_MIN_WORK = ops.PARALLEL_MIN_WORK_BATCH = 0
    ops._cores_busy = ops.blas_may_spin = lambda: False
    try:
        yield
    finally:
        (ops.PARALLEL_MIN_WORK, ops.PARALLEL_MIN_WORK_BATCH, ops._cores_busy,
         ops.blas_may_spin) = saved


@settings(max_examples=40, deadline=None)
@given(**shapes, b=st.integers(1, 9))
def test_parallel_path_is_exact_too(kind, g, k, b, seed):
    with parallel_path():
        check_matvec(kind, g, k, seed)
        check_matmul(kind, g, k, b, seed)


@pytest.mark.parametrize("kind", KINDS)
def test_larger_matrices_in_both_paths(kind, monkeypatch):
    rng = np.random.default_rng(11)
    q = random_q(rng, kind, 4 * 250, 301)                  # G = 1000 (not a multiple of 16)
    pm = pack(q, kind)
    x, X = small_ints(rng, 301), small_ints(rng, 13, 301)
    monkeypatch.setattr(ops, "_cores_busy", lambda: False)
    monkeypatch.setattr(ops, "blas_may_spin", lambda: False)
    for threshold in (1 << 40, 0):
        monkeypatch.setattr(ops, "PARALLEL_MIN_WORK", threshold)
        monkeypatch.setattr(ops, "PARALLEL_MIN_WORK_BATCH", threshold)
        np.testing.assert_array_equal(matvec(pm, x), q @ x)
        np.testing.assert_array_equal(matmul(pm, X), X @ q.T)


# ------------------------------------------------------------------ arguments and conversions


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("g", [16, 21])                    # direct write, and via scratch
def test_out_argument_receives_the_result(kind, g):
    rng = np.random.default_rng(g)
    q = random_q(rng, kind, g, 40)
    pm = pack(q, kind)
    x, X = small_ints(rng, 40), small_ints(rng, 4, 40)
    out = np.full(g, np.nan, np.float32)
    assert matvec(pm, x, out=out) is out
    np.testing.assert_array_equal(out, q @ x)
    strided = np.full(2 * g, np.nan, np.float32)[::2]      # non-contiguous out
    assert matvec(pm, x, out=strided) is strided
    np.testing.assert_array_equal(strided, q @ x)
    OUT = np.full((4, g), np.nan, np.float32)
    assert matmul(pm, X, out=OUT) is OUT
    np.testing.assert_array_equal(OUT, X @ q.T)
    OUT_T = np.full((g, 4), np.nan, np.float32).T          # Fortran-ordered out
    assert matmul(pm, X, out=OUT_T) is OUT_T
    np.testing.assert_array_equal(OUT_T, X @ q.T)


@pytest.mark.parametrize("kind", KINDS)
def test_non_contiguous_and_float64_inputs_are_converted(kind):
    rng = np.random.default_rng(3)
    q = random_q(rng, kind, 33, 45)
    pm = pack(q, kind)
    wide = small_ints(rng, 6, 90)
    x = wide[0, ::2]                                       # strided (45,)
    X = wide[:, 1::2]                                      # strided (6, 45)
    np.testing.assert_array_equal(matvec(pm, x), q @ x)
    np.testing.assert_array_equal(matvec(pm, x.astype(np.float64)), q @ x)
    np.testing.assert_array_equal(matvec(pm, x.tolist()), q @ x)
    np.testing.assert_array_equal(matmul(pm, X), X @ q.T)
    np.testing.assert_array_equal(matmul(pm, X.astype(np.float64)), X @ q.T)
    np.testing.assert_array_equal(matmul(pm, np.asfortranarray(X)), X @ q.T)
    np.testing.assert_array_equal(matmul(pm, X.astype(np.int32)), X @ q.T)


def test_wrong_shapes_raise_value_error():
    pm = pack(np.ones((8, 10), np.int8), "binary")
    for bad in (np.zeros(9), np.zeros(11), np.zeros((1, 10)), np.zeros(())):
        with pytest.raises(ValueError, match="x must have shape"):
            matvec(pm, bad)
    for bad in (np.zeros(10), np.zeros((2, 9)), np.zeros((1, 2, 10))):
        with pytest.raises(ValueError, match="X must have shape"):
            matmul(pm, bad)
    for out in (np.zeros(7, np.float32), np.zeros(8, np.float64), np.zeros((1, 8), np.float32), [0.0] * 8):
        with pytest.raises(ValueError, match="out must be"):
            matvec(pm, np.zeros(10), out=out)
    for out in (np.zeros((3, 8), np.float32), np.zeros((2, 8), np.float64), np.zeros(16, np.float32)):
        with pytest.raises(ValueError, match="out must be"):
            matmul(pm, np.zeros((2, 10)), out=out)


def test_empty_shapes_give_zeros():
    for kind in KINDS:
        pm = pack(np.zeros((5, 0), np.int8), kind)
        np.testing.assert_array_equal(matvec(pm, np.zeros(0)), np.zeros(5))
        np.testing.assert_array_equal(matmul(pm, np.zeros((3, 0))), np.zeros((3, 5)))
        pm = pack(np.ones((0, 7), np.int8), kind)
        assert matvec(pm, np.ones(7)).shape == (0,)
        assert matmul(pm, np.ones((2, 7))).shape == (2, 0)
        pm = pack(np.ones((4, 7), np.int8), kind)
        assert matmul(pm, np.ones((0, 7))).shape == (0, 4)


# ----------------------------------------------------------------------------- float inputs


@settings(max_examples=40, deadline=None)
@given(kind=kinds, g=st.integers(1, 100), k=st.integers(1, 300), b=st.integers(1, 9), seed=seeds,
       scale=st.sampled_from([1e-3, 1.0, 1e4]))
def test_float_inputs_agree_with_float64_product_within_documented_bound(kind, g, k, b, seed, scale):
    rng = np.random.default_rng(seed)
    q = random_q(rng, kind, g, k)
    pm = pack(q, kind)
    X = (rng.standard_normal((b, k)) * scale).astype(np.float32)
    want = X.astype(np.float64) @ q.T.astype(np.float64)                  # (B, G)
    bound = float_bound(X, k)[:, None]                                    # (B, 1)
    assert np.all(np.abs(matmul(pm, X) - want) <= bound)
    assert np.all(np.abs(matvec(pm, X[0]) - want[0]) <= bound[0])
    assert np.all(np.abs(reference_matmul(pm, X) - want) <= bound)
