"""rbtw.kernels.gates: float32 tanh and σ within their stated bounds of NumPy's float64 functions
over the whole float32 range (±0, ±inf, subnormals, NaN), and loops of them that vectorise."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numba import njit
from scipy.special import expit

from rbtw.kernels import gates, isa
from rbtw.kernels.gates import SIGMOID_ABS, TANH_REL, sigmoid_array, tanh_array

F32 = np.finfo(np.float32)
SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, F32.tiny, -F32.tiny, F32.smallest_subnormal,
                    -F32.smallest_subnormal, F32.tiny * (1 - 2**-23), F32.max, -F32.max, 4e-4, -4e-4,
                    np.nextafter(np.float32(4e-4), np.float32(0)), 7.9053111, -7.9053111, 9.01, -9.01,
                    5.827876, -5.827876, 11.5491, -11.5491, 1e-20, -1e-30, 0.5, -17.0, 88.8, -104.0],
                   dtype=np.float32)


def apply(f, x):
    out = np.empty_like(x)
    f(x, out)
    return out


def check(x):
    """Every bound of the module docstring, element-wise, for float32 x (N,)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    t, s = apply(tanh_array, x), apply(sigmoid_array, x)
    assert t.dtype == np.float32 and s.dtype == np.float32
    nan = np.isnan(x)
    assert np.isnan(t[nan]).all() and np.isnan(s[nan]).all()            # NaN in, NaN out
    xd = x[~nan].astype(np.float64)
    t, s = t[~nan].astype(np.float64), s[~nan].astype(np.float64)
    want_t, want_s = np.tanh(xd), expit(xd)
    assert np.all(np.abs(t - want_t) <= TANH_REL * np.abs(want_t)), xd[np.argmax(np.abs(t - want_t) / np.maximum(np.abs(want_t), 1e-300))]
    assert np.all(np.abs(s - want_s) <= SIGMOID_ABS), xd[np.argmax(np.abs(s - want_s))]
    assert np.all(np.signbit(t) == np.signbit(xd))                      # odd, ±0 → ±0
    assert np.all(np.abs(t) <= 1) and np.all((s >= 0) & (s <= 1))
    tiny = np.abs(x[~nan]) < np.float32(4e-4)
    assert np.array_equal(t[tiny], xd[tiny])                            # subnormals unchanged


def test_special_values():
    check(SPECIAL)
    t, s = apply(tanh_array, SPECIAL), apply(sigmoid_array, SPECIAL)
    assert t[2] == 1 and t[3] == -1 and s[2] == 1 and s[0] == 0.5 == s[1]
    assert np.signbit(t[1]) and not np.signbit(t[0])


@settings(max_examples=300, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 40),
                  elements=st.floats(width=32, allow_nan=True, allow_infinity=True, allow_subnormal=True)))
def test_whole_float32_range(x):
    check(x)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_random_bit_patterns(seed):
    """Uniform over bit patterns: every exponent, the subnormals and NaN payloads equally."""
    bits = np.random.default_rng(seed).integers(0, 2**32, size=4096, dtype=np.uint64).astype(np.uint32)
    check(bits.view(np.float32))


def test_dense_sweep_where_the_error_peaks():
    """Every float32 on [5, 12] (the largest errors, at 5.83 and 11.55), and a fine grid on
    [−20, 20]."""
    lo, hi = np.array([5.0, 12.0], np.float32).view(np.uint32)
    x = np.arange(lo, hi + 1, dtype=np.uint32).view(np.float32)
    check(x)
    check(-x)
    check(np.linspace(-20, 20, 2_000_001, dtype=np.float32))


def test_exactly_odd():
    x = np.random.default_rng(1).standard_normal(10_000).astype(np.float32) * 6
    assert np.array_equal(apply(tanh_array, -x), -apply(tanh_array, x))


def vector_divisions(fn, *args):
    """Packed (ymm/zmm) divisions in a fresh, uncached compilation of ``fn``'s Python source
    (cached code cannot be inspected): each vectorised tanh or σ divides once per vector."""
    fresh = njit(error_model="numpy")(fn.py_func)
    fresh(*args)
    asm = "\n".join(fresh.inspect_asm().values())
    return len(re.findall(r"vdivps\s+[^\n]*%[yz]mm", asm))


def test_gate_loops_vectorise():
    if not {"avx2", "avx512f"} & isa.target_features():
        pytest.skip("no AVX2 or AVX-512 in the compile target: nothing to vectorise to")
    x = np.linspace(-9, 9, 257, dtype=np.float32)
    assert vector_divisions(gates.tanh_array, x, np.empty_like(x)) >= 1
    assert vector_divisions(gates.sigmoid_array, x, np.empty_like(x)) >= 1
