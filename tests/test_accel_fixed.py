"""Fixed point: saturation at both ends of every format of every design, and rounding checked
against an exact rule (Fractions), apart from the shared rounding helpers."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rbtw.accel import datapath, fixed, reference
from rbtw.accel import design as dm
from rbtw.accel.engine import AccelEngine
from randmodel import random_export

PROP = settings(deadline=None, max_examples=200)


def _formats():
    """Every (name, bits) a preset design uses: activations, cell, z/shifts, scales, accumulator."""
    out = set()
    for name in dm.PRESETS:
        d = dm.preset(name)
        out |= {("act", d.act_bits), ("cell", d.cell_bits), ("pp", d.pp_bits), ("scale", d.scale_bits),
                ("acc", d.acc_bits)}
        if d.pe == "fp":
            out.add(("weight", d.weight_bits))
    return sorted(out)


def _round_half_up(x):
    """The integer nearest to the Fraction x, ties to +∞: n with n − ½ ≤ x < n + ½."""
    n = math.floor(x)
    return n + 1 if x - n >= Fraction(1, 2) else n


@pytest.mark.parametrize("fmt,bits", _formats() + [("narrow", 2), ("wide", 62)])
def test_every_format_saturates_at_both_ends(fmt, bits):
    top, bottom = 2 ** (bits - 1) - 1, -(2 ** (bits - 1))
    values = [bottom - 9, bottom - 1, bottom, bottom + 1, -1, 0, 1, top - 1, top, top + 1, top + 9]
    want = [bottom, bottom, bottom, bottom + 1, -1, 0, 1, top - 1, top, top, top]
    assert [int(datapath._sat(np.int64(v), bits)) for v in values] == want        # emulator
    assert reference._clip(np.array(values, dtype=np.int64), bits).tolist() == want  # NumPy reference
    assert (fixed.qmin(bits), fixed.qmax(bits)) == (bottom, top)
    if bits <= 40:                                     # float64 holds these integers exactly
        frac = min(bits - 1, 12)
        x = [v / 2 ** frac for v in values]
        assert fixed.quantize(x, bits, frac).tolist() == want


@PROP
@given(v=st.integers(-(2 ** 50), 2 ** 50), n=st.integers(-6, 30))
def test_rounding_shift_against_the_exact_rule(v, n):
    want = _round_half_up(Fraction(v, 2 ** n)) if n >= 0 else v * 2 ** -n
    assert int(datapath._rshift(np.int64(v), n)) == want
    assert int(reference._shr(np.array([v], dtype=np.int64), n)[0]) == want


@pytest.mark.parametrize("n", [1, 2, 5, 12])
def test_rounding_shift_ties_go_up(n):
    for k in range(-6, 6):
        v = (2 * k + 1) * 2 ** (n - 1)                    # exactly (k + ½)·2^n
        assert int(datapath._rshift(np.int64(v), n)) == k + 1
        assert int(reference._shr(np.array([v]), n)[0]) == k + 1


@PROP
@given(x=st.floats(-4000, 4000, allow_nan=False), frac=st.integers(0, 20))
def test_quantize_against_the_exact_rule(x, frac):
    want = min(max(_round_half_up(Fraction(x) * 2 ** frac), -(2 ** 39)), 2 ** 39 - 1)
    assert int(fixed.quantize([x], 40, frac)[0]) == want


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_emulator_saturates_like_the_reference_at_both_ends(cell):
    # BN scales and shifts ×30 and formats one or two bits above their fraction: z (±2) and
    # c (±1) leave their ranges at both ends on most steps; |h| ≤ σ(2) = 0.88 (225 at F = 8)
    ex = random_export(np.random.default_rng(4), hidden=12, quant="ternary", kind="classify", n_in=5, cell=cell)
    for name in ex.arrays:
        if "scale" in name or "shift" in name:
            ex.arrays[name] = ex.arrays[name] * np.float32(30)
    F = 8
    d = dm.preset("ternary", act_frac=F, act_bits=F + 1, cell_frac=F, cell_bits=F + 1,
                  pp_frac=F, pp_bits=F + 2, seg_frac=3)
    x = np.random.default_rng(5).uniform(-1, 1, size=(20, 6, 5)).astype(np.float32) * 0.99
    a, fa = AccelEngine(ex, d).forward_fixed(x)
    b, fb = AccelEngine(ex, d, reference=True).forward_fixed(x)
    assert np.array_equal(a, b)
    assert a.max() > 200 and a.min() < -200                               # gates pinned at z = ±2


@pytest.mark.parametrize("frac", [0, 1, 4, 12])
def test_quantize_ties_go_up(frac):
    for k in range(-6, 6):
        x = (k + 0.5) / 2 ** frac                          # exactly halfway between k and k + 1
        assert int(fixed.quantize([x], 24, frac)[0]) == _round_half_up(Fraction(x) * 2 ** frac) == k + 1
