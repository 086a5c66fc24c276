"""Technology table: energy per operation and area at 45 nm, in ONE place, with sources.

Published figures (Horowitz, "Computing's energy problem (and what we can do about it)",
ISSCC 2014, 45 nm, 0.9 V):

    integer add      8-bit  0.03 pJ,   36 µm²       32-bit  0.1 pJ,  137 µm²
    integer multiply 8-bit  0.2 pJ,   282 µm²       32-bit  3.1 pJ, 3495 µm²
    SRAM read, 64 bits:  8 KB 10 pJ,  32 KB 20 pJ,  1 MB 100 pJ
    DRAM access, 64 bits: 1.3 – 2.6 nJ

Scaling to other widths (our choice, stated explicitly): adders scale LINEARLY in width
(ripple/carry-lookahead area and switched capacitance grow with the bit count), multipliers
QUADRATICALLY in width (an a×b array multiplier has a·b partial-product cells); both are
scaled from the 32-bit point, and an a×b multiplier scales as a·b / 32².  SRAM read energy
per 64 bits is interpolated log-log between the three published sizes (extrapolated beyond
them with the nearest segment); a read of w bits costs w/64 of a 64-bit read.  DRAM: the
midpoint 1.95 nJ per 64 bits (≈ 30 pJ per bit) of Horowitz's range.

ASSUMPTION (not from Horowitz): SRAM area 0.5 µm² per bit including periphery at 45 nm
(a 6T cell is ≈ 0.3–0.35 µm²; arrays reach ≈ 50–70 % cell efficiency).
"""

import math

TECH = {
    "node": "45 nm",
    "source": "Horowitz, ISSCC 2014, 'Computing's energy problem (and what we can do about it)'",
    "add_pj": {8: 0.03, 32: 0.1},
    "add_um2": {8: 36.0, 32: 137.0},
    "mul_pj": {8: 0.2, 32: 3.1},
    "mul_um2": {8: 282.0, 32: 3495.0},
    "sram_read64_pj": {8 * 1024: 10.0, 32 * 1024: 20.0, 1024 * 1024: 100.0},   # by size in bytes
    "dram_access64_pj": (1300.0, 2600.0),
    "sram_um2_per_bit": 0.5,    # ASSUMPTION, see module docstring
}


def add_energy(bits):
    """pJ of one integer addition ``bits`` wide (linear from the 32-bit figure)."""
    return TECH["add_pj"][32] * bits / 32


def add_area(bits):
    """µm² of one ``bits``-wide adder (linear from the 32-bit figure)."""
    return TECH["add_um2"][32] * bits / 32


def mul_energy(a_bits, b_bits):
    """pJ of one a×b-bit integer multiplication (quadratic from the 32×32 figure)."""
    return TECH["mul_pj"][32] * a_bits * b_bits / 32 ** 2


def mul_area(a_bits, b_bits):
    """µm² of one a×b-bit multiplier (quadratic from the 32×32 figure)."""
    return TECH["mul_um2"][32] * a_bits * b_bits / 32 ** 2


def sram_read64_energy(size_bytes):
    """pJ per 64-bit read of an SRAM of ``size_bytes`` (log-log interpolation)."""
    pts = sorted(TECH["sram_read64_pj"].items())
    s = math.log(max(size_bytes, 1))
    xs = [math.log(k) for k, _ in pts]
    ys = [math.log(v) for _, v in pts]
    j = 0 if s <= xs[1] else 1
    slope = (ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j])
    return math.exp(ys[j] + slope * (s - xs[j]))


def dram_bit_energy():
    """pJ per bit moved from DRAM (midpoint of the published range)."""
    lo, hi = TECH["dram_access64_pj"]
    return (lo + hi) / 2 / 64


def sram_area(bits):
    """µm² of ``bits`` of SRAM (assumed density)."""
    return TECH["sram_um2_per_bit"] * bits
