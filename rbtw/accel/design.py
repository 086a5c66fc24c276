"""Accelerator design parameters and presets.

A design is an R×C array of processing elements (PEs).  Each cycle the array takes one
tile of R weight rows × C weight columns and C inputs; each PE forms one product term
(binary: ±x, ternary: ±x or skip, fp12: w·x on a k-bit by act-bit multiplier), each row's
C terms are summed by an adder tree (ceil(log2 C) stages) into a per-row accumulator.
Weights live in an on-chip SRAM (``sram_kb`` KiB, ``sram_width`` bits read per cycle,
default: exactly one tile per cycle) or, when they do not fit, in DRAM, streamed every step
at ``dram_gbps`` GB/s.  A post-processing unit with ``pp_lanes`` lanes applies the per-step
BN scales and shifts, sigmoid/tanh (ROM + linear interpolation) and the cell update.

Fixed-point formats (see rbtw.accel.fixed): activations h, x at (act_bits, act_frac);
cell c at (cell_bits, cell_frac); pre-activations z and BN shifts at (pp_bits, pp_frac);
BN scales at (scale_bits, scale_frac); fp12 weights at weight_bits with per-matrix fraction
bits; accumulators acc_bits wide (default 32 for add/subtract PEs, 40 for fp12; loading a
model checks that no partial sum can overflow them, rbtw.accel.program.check_accumulator).
Defaults: h, x Q3.12 in 16 bits, c 20 bits with 12 fraction bits, z and shifts 24 bits with
12, scales 24 bits with 16 (small BN scales α·γ/σ need the extra fraction bits).

Presets: ``fp12`` (12-bit weights, multiply-accumulate PEs), ``binary`` and ``ternary``
(add/subtract PEs; 1- and 2-bit weights), and equal-area ``binary-eq``/``ternary-eq``: the
PE array gets the same area as the fp12 array of the given R×C; the freed area buys more
ROWS (output rows in parallel, C unchanged), R_eq = floor(R·C·A_fp12_PE / (C·A_PE)).
We scale rows rather than columns because the gate dimension G = 4H is the larger one and
C also sets the adder-tree depth.  SRAM area is excluded from the equal-area budget (all
designs get the same SRAM size).
"""

import math
import numbers
from fractions import Fraction
from dataclasses import dataclass, replace

from rbtw.accel import tech
from rbtw.errors import UserError, is_bool
from rbtw.quant import BITS

PE_KINDS = ("fp", "binary", "ternary")
WEIGHT_BITS = {mode: BITS[mode] for mode in ("binary", "ternary")}
PRESETS = ("fp12", "binary", "ternary", "binary-eq", "ternary-eq")
ACT_FRAC = (1, 20)     # the fraction bits `rbtw emulate --act-frac` offers (formats: the widths they imply)


def formats(act_frac):
    """The fixed-point formats of one --act-frac f: h and x in f + 4 bits, c in f + 8 (its
    integer part holds a sum of many gates), both with f fraction bits."""
    return dict(act_frac=act_frac, act_bits=act_frac + 4, cell_frac=act_frac, cell_bits=act_frac + 8)
FIXED_STAGES = 2       # SRAM read register + accumulator register, per step
PP_LATENCY = 6         # post-processing pipeline depth: scale, add, ROM, interpolate, cell, out


# The domain of every numeric field: (whole or real number, lowest, highest, unit).  Each is a
# finite number (nan and ±inf are refused by name); the bounds keep every reported figure
# (cycles, latency, throughput, energy, area) a finite number: an array of at most 2^24 × 2^24
# PEs, a clock of 1 kHz to 1 THz, at most 1 TiB of SRAM, ROMs of at most 2^21 entries.
_MAX_SIDE = 2 ** 24
DOMAINS = {
    "weight_bits": ("whole", 1, 24, ""),
    "rows": ("whole", 1, _MAX_SIDE, ""),
    "cols": ("whole", 1, _MAX_SIDE, ""),
    "sram_kb": ("real", 0, 2.0 ** 30, " KiB"),
    "sram_width": ("whole", 1, 2 ** 40, " bits per cycle"),
    "dram_gbps": ("real", 1e-3, 1e6, " GB/s"),
    "dram_pj_per_bit": ("real", 0, 1e6, " pJ"),
    "clock_mhz": ("real", 1e-3, 1e6, " MHz"),
    "pp_lanes": ("whole", 1, _MAX_SIDE, ""),
    "act_bits": ("whole", 2, 32, " bits"),
    "act_frac": ("whole", 0, 31, " bits"),
    "cell_bits": ("whole", 2, 40, " bits"),
    "cell_frac": ("whole", 0, 39, " bits"),
    "pp_bits": ("whole", 2, 40, " bits"),
    "pp_frac": ("whole", 0, 39, " bits"),
    "scale_bits": ("whole", 2, 32, " bits"),
    "scale_frac": ("whole", 0, 31, " bits"),
    "acc_bits": ("whole", 8, 62, " bits"),
    "seg_frac": ("whole", 0, 12, ""),
    "sig_range": ("whole", 0, 8, ""),
    "tanh_range": ("whole", 0, 8, ""),
}
OPTIONAL = ("sram_width", "dram_pj_per_bit")     # None: the default (one tile per cycle; tech's figure)


def _in_domain(design, field, value, kind, lo, hi, unit):
    """``value`` as an int (whole) or float (real) when it is a finite number in [lo, hi], else a
    one-line UserError naming the design and the field."""
    whole = kind == "whole"
    ok = not is_bool(value) and isinstance(value, numbers.Integral if whole else numbers.Real)
    if ok and not whole:
        ok = math.isfinite(_as_float(value))
    if not ok or not lo <= value <= hi:
        what = "a whole number" if whole else "a finite number"
        domain = f"from {_show(lo)} to {_show(hi)}"
        raise UserError(f"design {design}: {field} must be {what} {domain}{unit}, not {value!r}")
    return int(value) if whole else float(value)


def _show(x):
    """1,073,741,824 or 0.001: bounds as a reader takes them in."""
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:g}"


def _as_float(value):
    try:
        return float(value)
    except OverflowError:            # an integer too large for a float
        return math.inf


@dataclass(frozen=True)
class Design:
    name: str = "binary"
    pe: str = "binary"            # fp | binary | ternary
    weight_bits: int = 1
    rows: int = 16
    cols: int = 16
    sram_kb: float = 64.0
    sram_width: int | None = None  # bits per cycle; None = one tile per cycle
    dram_gbps: float = 12.8
    dram_pj_per_bit: float | None = None
    clock_mhz: float = 500.0
    pp_lanes: int = 4
    act_bits: int = 16
    act_frac: int = 12
    cell_bits: int = 20
    cell_frac: int = 12
    pp_bits: int = 24
    pp_frac: int = 12
    scale_bits: int = 24
    scale_frac: int = 16
    acc_bits: int = 32
    seg_frac: int = 3              # activation ROM: 2^seg_frac segments per unit
    sig_range: int = 3             # sigmoid ROM covers [−2^3, 2^3]
    tanh_range: int = 2            # tanh ROM covers [−2^2, 2^2]

    def __post_init__(self):
        if self.pe not in PE_KINDS:
            raise UserError(f"design {self.name}: unknown PE kind {self.pe}")
        for field, (kind, lo, hi, unit) in DOMAINS.items():
            value = getattr(self, field)
            if value is None and field in OPTIONAL:
                continue
            object.__setattr__(self, field, _in_domain(self.name, field, value, kind, lo, hi, unit))
        checks = [
            (2 <= self.weight_bits or self.pe != "fp", "fp weights need 2 to 24 bits"),
            (self.act_frac < self.act_bits, "activation format: 0 <= frac < bits <= 32"),
            (self.cell_frac < self.cell_bits, "cell format: 0 <= frac < bits <= 40"),
            (self.seg_frac <= self.pp_frac < self.pp_bits, "post-processing format: seg_frac <= frac < bits <= 40"),
            (self.scale_frac < self.scale_bits, "scale format: 0 <= frac < bits <= 32"),
            (self.cell_frac <= 2 * self.act_frac, "cell frac must not exceed 2 x activation frac"),
        ]
        for ok, msg in checks:
            if not ok:
                raise UserError(f"design {self.name}: {msg}")

    # -- derived quantities ---------------------------------------------------------------

    @property
    def pes(self):
        return self.rows * self.cols

    @property
    def tile_bits(self):
        return self.rows * self.cols * self.weight_bits

    @property
    def sram_bits_per_cycle(self):
        return self.sram_width if self.sram_width is not None else self.tile_bits

    @property
    def sram_bits(self):
        return int(self.sram_kb * 1024 * 8)

    @property
    def dram_bits_per_cycle(self):
        """Bits per cycle the DRAM delivers, r = GB/s · 8e9 / clock, computed exactly: whole bits,
        floor(r), when r ≥ 1 (the interface moves whole bits each cycle); a slower DRAM, r itself
        (a Fraction below 1: one bit takes 1/r cycles)."""
        rate = Fraction(str(self.dram_gbps)) * 8000 / Fraction(str(self.clock_mhz))
        return math.floor(rate) if rate >= 1 else rate

    @property
    def dram_energy_per_bit(self):
        return self.dram_pj_per_bit if self.dram_pj_per_bit is not None else tech.dram_bit_energy()

    def pe_area(self):
        """µm² of one PE with its share of the adder tree (one acc-wide adder per PE).

        fp: a weight_bits × act_bits multiplier plus the adder.  binary/ternary: the
        conditional negation (XOR + carry-in) counted as an act_bits-wide adder, an upper
        bound, plus the adder; the ternary zero-skip gate is taken as free.
        """
        if self.pe == "fp":
            return tech.mul_area(self.weight_bits, self.act_bits) + tech.add_area(self.acc_bits)
        return tech.add_area(self.act_bits) + tech.add_area(self.acc_bits)

    def pp_lane_area(self):
        """µm² of one post-processing lane: 4 multipliers and 4 adders pp_bits wide (assumed)."""
        return 4 * tech.mul_area(self.pp_bits, self.pp_bits) + 4 * tech.add_area(self.pp_bits)

    def with_(self, **kw):
        return replace(self, **kw)


def preset(name, rows=16, cols=16, sram_kb=64.0, clock_mhz=500.0, **kw):
    """One of PRESETS for an R×C array (equal-area variants scale the rows, see module doc)."""
    if name not in PRESETS:
        raise UserError(f"unknown design {name!r}; choose from {', '.join(PRESETS)}")
    common = dict(rows=rows, cols=cols, sram_kb=sram_kb, clock_mhz=clock_mhz, **kw)
    if name == "fp12":
        return Design(name="fp12", pe="fp", weight_bits=12, acc_bits=kw.pop("acc_bits", 40),
                      **{k: v for k, v in common.items() if k != "acc_bits"})
    base = name.split("-")[0]
    d = Design(name=name, pe=base, weight_bits=WEIGHT_BITS[base], **common)
    if name.endswith("-eq"):
        fp = preset("fp12", rows=rows, cols=cols, sram_kb=sram_kb, clock_mhz=clock_mhz,
                    **{k: v for k, v in kw.items() if k != "acc_bits"})
        budget = fp.pes * fp.pe_area()
        eq_rows = max(rows, math.floor(budget / (cols * d.pe_area())))
        if eq_rows > _MAX_SIDE:
            raise UserError(f"design {name}: the area of the fp12 array {rows:,}×{cols:,} holds {eq_rows:,} rows "
                            f"of {base} PEs, more than {_MAX_SIDE:,}: give fewer rows (--rows)")
        d = d.with_(rows=eq_rows)
    return d
