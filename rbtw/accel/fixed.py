"""Fixed-point formats: signed two's complement with ``bits`` total and ``frac`` fraction bits.

A value v is held as the integer q = round(v · 2^frac), saturated to
[−2^(bits−1), 2^(bits−1) − 1].  Rounding is round-half-up (floor(v·2^frac + 0.5)) when
quantising floats, and the same for right shifts of integers: rshift(q, n) = (q + 2^(n−1)) >> n
with an arithmetic shift (ties go towards +∞).  A negative n is a left shift (exact).

Activation ROM (sigmoid, tanh): ``act_table`` samples f at 2^seg_frac points per unit over
[−2^range_log2, 2^range_log2] (inclusive, so 2·2^(range_log2+seg_frac) + 1 entries), each
quantised to the activation format; the unit interpolates linearly between neighbours.
Error: interpolation ≤ h²/8 · max|f''| with h = 2^−seg_frac (sigmoid: 0.096·h²/8, tanh:
0.77·h²/8; h = 1/8 gives 1.9e-4 and 1.5e-3), plus the rounding of the ROM entries and of the
interpolation (≈ one LSB of the output format), plus the clipping of |z| to 2^range_log2
(sigmoid at 8: 3.4e-4; tanh at 4: 6.7e-4).  Measured over every z at pp_frac = 12 with the
default design (seg_frac 3, ROMs of 129 and 65 entries, output frac 12): max |σ̂ − σ| =
3.7e-4 (at the clip), max |tanĥ − tanh| = 1.5e-3.
"""

import numpy as np


def qmax(bits):
    return (1 << (bits - 1)) - 1


def qmin(bits):
    return -(1 << (bits - 1))


def quantize(values, bits, frac):
    """Float array -> int64 fixed point (round half up, saturating)."""
    v = np.floor(np.asarray(values, dtype=np.float64) * 2.0 ** frac + 0.5)
    return np.clip(v, qmin(bits), qmax(bits)).astype(np.int64)


def to_float(q, frac):
    return np.asarray(q, dtype=np.float64) / 2.0 ** frac


def weight_frac(max_abs, bits):
    """Fraction bits for weights so that max|w| fits ``bits`` signed: bits − 1 − ceil(log2 max|w|)."""
    if max_abs <= 0:
        return bits - 1
    return int(bits - 1 - np.ceil(np.log2(max_abs)))


def act_table(kind, range_log2, seg_frac, bits, frac):
    """int64 ROM of ``kind`` ('sigmoid' or 'tanh') sampled at step 2^−seg_frac on [−R, R]."""
    R = 2.0 ** range_log2
    n = int(2 * R * 2 ** seg_frac)
    z = -R + np.arange(n + 1) / 2.0 ** seg_frac
    f = 0.5 * (1.0 + np.tanh(0.5 * z)) if kind == "sigmoid" else np.tanh(z)
    return quantize(f, bits, frac)


def bits_for(bound):
    """Signed width that holds every integer in [−bound, bound]."""
    return int(bound).bit_length() + 1
