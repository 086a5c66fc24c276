"""Cycles, memory, energy and area of one time step of an LSTM or GRU export on a design.

Dimension legend: per layer, matrices W_h (G × H) and W_x (G × K), G = 4H (GRU: 3H); K_eff = K, or 1
for a one-hot input (char LM: Q_x·x is a column read — the array reads R weights of one
column per cycle and adds nothing); R×C array, wb weight bits, P post-processing lanes.

Weight placement (the loader): matrices in the order layer 0 W_h, W_x, layer 1 W_h, W_x, …;
each takes whole weight rows (K·wb bits) into the SRAM while they fit; from the first row
that does not fit, everything after it lives in DRAM.  So the off-chip rows of a layer are a
suffix of its rows, and the placement does not depend on R and C.

Schedule of one layer in one step (the tile loop of rbtw.accel.datapath):

    for each matrix, for r0 in 0, R, 2R, … < G (stripes), for c0 in 0, C, … < K_eff (tiles):
        one cycle per tile (the array takes one tile per cycle at most)
    on-chip bits stream from the SRAM at sram_width bits per cycle and off-chip bits from DRAM
    at dram_bits_per_cycle, both concurrently with the whole tile loop (double-buffered,
    prefetch from the start of the layer's phase).  Both stalls are counted PER LAYER-STEP,
    not per tile:
        phase = max(tiles, ceil(on-chip bits / sram_width), ceil(off-chip bits / dram_bits_per_cycle))
    A per-tile ceil would make the count jump non-monotonically with R and C (a tile one bit
    wider than the SRAM port would cost two cycles); the per-step count is what a streaming
    prefetcher approaches.
    + pipeline fill: ceil(log2 C) adder-tree stages + FIXED_STAGES, once per layer-step (h_t
      depends on every row of the previous step, so the pipeline drains every step)
    + post-processing: ceil(H / P) + PP_LATENCY (it waits for all G rows; not overlapped)

Tiles are ceil(G/R)·ceil(K_eff/C) per matrix; with the default SRAM width (one tile per
cycle) the SRAM term never exceeds them.  ``simulate`` walks the loop; ``closed_form`` counts
it arithmetically.  Cycles do not depend on the data: ternary zero-skipping saves energy, not
cycles.  On-chip and off-chip bits do not depend on R and C (see the placement), so adding
PEs never adds cycles, with one exception we keep because it is real: more columns deepen
the adder tree, so when extra columns save no tile or stall the fill grows by
ceil(log2 C') − ceil(log2 C) cycles per layer.  Adding rows never adds cycles, whatever the
SRAM width.

Energy per step (pJ): PE operations (fp: one wb×act multiply + one acc-wide add per weight;
binary: an act-wide conditional negate + an acc-wide add per weight; ternary: the same per
NON-ZERO weight) + SRAM reads (bits/64 × 64-bit read energy at the SRAM's size) + DRAM bits ×
energy/bit + post-processing (per hidden unit 17 multiplies and 20 additions pp_bits wide:
8 BN scales/adds of the 4 gates, 5 ROM interpolations, 2 cell products, the s_c scale and
o·tanh; GRU: 12 and 17 — 6 BN scales/adds, r·A_n, 3 ROM interpolations, the two gate sums
and (1 − u)·n + u·h).  Area: PEs × PE area + P × lane area + SRAM bits × area/bit.

A one-hot input reads one column of W_x: R weights per cycle from SRAM, or for off-chip rows
only that column's bits from DRAM (we ignore DRAM burst granularity), and costs no PE
operations.

Memory: weight bits = Σ G·K·wb.  α needs no storage of its own: it is folded into the
per-step scales.  BN tables, per layer and table row: LSTM 2G + H scales (s_h, s_x, s_c) at
scale_bits and G + H shifts (k, k_c) at pp_bits; GRU 2G scales (s_h, s_x) and 2G shifts
(k_a, k_b); held in a separate table memory (not in the weight SRAM).  The row count is the
export's (see rbtw.export: per-step rows up to K, then one shared row).  The output layer
(and a word model's embedding) runs on the host in float32: 32 bits per value.  Whole model
= weights + BN tables + output layer; the same with the weights at 32 or 12 bits is the
comparison the "×" figures use.
"""

import math
from dataclasses import dataclass

import numpy as np

from rbtw.accel import design as design_mod
from rbtw.accel import tech


# post-processing (multiplies, additions) per hidden unit, see the module docstring
PP_OPS = {"lstm": (17, 20), "gru": (12, 17)}


@dataclass
class Matrix:
    name: str
    G: int
    K: int          # stored columns
    K_eff: int      # columns the tile loop walks (1 for a one-hot input)
    nnz: int        # non-zero weights (ternary skip)


def model_matrices(export):
    """Matrices in placement order and per-layer (H, rows) of an LSTM export."""
    spec = export.spec
    out = []
    for k in range(spec["layers"]):
        for name in ("W_h", "W_x"):
            m = export.manifest["matrices"][f"rnn{k}.{name}"]
            one_hot = name == "W_x" and k == 0 and spec["kind"] == "char"
            arr = export.matrix(f"rnn{k}.{name}")
            nnz = _nonzeros(arr)
            out.append(Matrix(f"rnn{k}.{name}", m["rows"], m["cols"], 1 if one_hot else m["cols"], nnz))
    return out


def _nonzeros(arr):
    from rbtw.kernels import PackedMatrix, unpack
    if isinstance(arr, PackedMatrix):
        return int(np.count_nonzero(unpack(arr)))
    return int(np.count_nonzero(arr))


def layer_info(export):
    spec = export.spec
    rows = export.arrays["rnn0.scale_h"].shape[0]
    return [(spec["hidden"], rows) for _ in range(spec["layers"])]


def allocate(matrices, d):
    """On-chip weight rows per matrix (a prefix of the rows; see module docstring)."""
    rem, stopped, out = d.sram_bits, False, []
    for m in matrices:
        row_bits = m.K * d.weight_bits
        n = 0 if stopped else min(m.G, rem // row_bits if row_bits else m.G)
        rem -= n * row_bits
        stopped = stopped or n < m.G
        out.append(n)
    return out


def _fill(d):
    return math.ceil(math.log2(d.cols)) + design_mod.FIXED_STAGES


def _pp(d, H):
    return math.ceil(H / d.pp_lanes) + design_mod.PP_LATENCY


def _layers(matrices):
    return [matrices[2 * k:2 * k + 2] for k in range(len(matrices) // 2)]


def simulate(matrices, hidden, d):
    """Cycles of one step, walking the tile loop; hidden = H per layer."""
    on = allocate(matrices, d)
    total = 0
    for k, pair in enumerate(_layers(matrices)):
        tiles, on_bits, off_bits = 0, 0, 0
        for j, m in enumerate(pair):
            rows_on = on[2 * k + j]
            for r0 in range(0, m.G, d.rows):
                h = min(d.rows, m.G - r0)
                q = max(0, min(h, rows_on - r0))          # rows of this stripe in SRAM
                for c0 in range(0, m.K_eff, d.cols):
                    c = min(d.cols, m.K_eff - c0)
                    tiles += 1
                    on_bits += q * c * d.weight_bits
                    off_bits += (h - q) * c * d.weight_bits
        total += _phase(tiles, on_bits, off_bits, d) + _fill(d) + _pp(d, hidden[k])
    return total


def _phase(tiles, on_bits, off_bits, d):
    """Cycles of a layer's tile loop: tiles, or the SRAM or DRAM stream if either is slower."""
    return max(tiles, -(-on_bits // d.sram_bits_per_cycle), -(-off_bits // d.dram_bits_per_cycle))


def closed_form(matrices, hidden, d):
    """The same count as ``simulate`` by arithmetic (O(1) per matrix)."""
    on = allocate(matrices, d)
    R, C, wb = d.rows, d.cols, d.weight_bits
    total = 0
    for k, pair in enumerate(_layers(matrices)):
        tiles, on_bits, off_bits = 0, 0, 0
        for j, m in enumerate(pair):
            n = on[2 * k + j]
            tiles += -(-m.G // R) * -(-m.K_eff // C)
            on_bits += n * m.K_eff * wb
            off_bits += (m.G - n) * m.K_eff * wb
        total += _phase(tiles, on_bits, off_bits, d) + _fill(d) + _pp(d, hidden[k])
    return total


def costs(export, d):
    """Dict of per-step figures of ``export`` on design ``d``."""
    mats = model_matrices(export)
    hidden = [H for H, _ in layer_info(export)]
    on = allocate(mats, d)
    cycles = closed_form(mats, hidden, d)
    wb = d.weight_bits
    weight_bits = sum(m.G * m.K * wb for m in mats)
    rows = export.arrays["rnn0.scale_h"].shape[0]
    gru = export.spec["cell"] == "gru"
    table_bits = sum(rows * ((2 * m.G * (d.scale_bits + d.pp_bits)) if gru else
                             ((2 * m.G + H) * d.scale_bits + (m.G + H) * d.pp_bits))
                     for m, H in zip(mats[::2], hidden))
    output_bits = 32 * sum(a.size for name, a in export.arrays.items() if not name.startswith("rnn"))
    n_weights = sum(m.G * m.K for m in mats)
    on_bits = sum(n * m.K_eff * wb for n, m in zip(on, mats))              # read per step
    off_bits = sum((m.G - n) * m.K_eff * wb for n, m in zip(on, mats))
    dense = [m for m in mats if m.K_eff == m.K]
    if d.pe == "fp":
        op = tech.mul_energy(wb, d.act_bits) + tech.add_energy(d.acc_bits)
        ops = sum(m.G * m.K for m in dense)
    else:
        op = tech.add_energy(d.act_bits) + tech.add_energy(d.acc_bits)
        ops = sum((m.nnz if d.pe == "ternary" else m.G * m.K) for m in dense)
    pp_ops = sum(hidden)
    e_pe = ops * op
    e_sram = on_bits / 64 * tech.sram_read64_energy(d.sram_bits / 8)
    e_dram = off_bits * d.dram_energy_per_bit
    n_mul, n_add = PP_OPS["gru" if gru else "lstm"]
    e_pp = pp_ops * (n_mul * tech.mul_energy(d.pp_bits, d.pp_bits) + n_add * tech.add_energy(d.pp_bits))
    area_pe = d.pes * d.pe_area()
    area = area_pe + d.pp_lanes * d.pp_lane_area() + tech.sram_area(d.sram_bits)
    clock = d.clock_mhz * 1e6
    return {
        "design": d.name, "rows": d.rows, "cols": d.cols, "pes": d.pes, "cycles": cycles,
        "latency_us": cycles / clock * 1e6, "steps_per_s": clock / cycles,
        "weight_bits": weight_bits, "table_bits": table_bits, "output_bits": output_bits,
        "model_bits": weight_bits + table_bits + output_bits,
        "model_bits_fp32": 32 * n_weights + table_bits + output_bits,
        "model_bits_12": 12 * n_weights + table_bits + output_bits,
        "on_chip_bits": sum(n * m.K * wb for n, m in zip(on, mats)),
        "off_chip_bits_per_step": off_bits, "fits": all(n == m.G for n, m in zip(on, mats)),
        "energy_nj": (e_pe + e_sram + e_dram + e_pp) / 1e3,
        "energy_parts_nj": {"pe": e_pe / 1e3, "sram": e_sram / 1e3, "dram": e_dram / 1e3, "pp": e_pp / 1e3},
        "area_mm2": area / 1e6, "pe_area_mm2": area_pe / 1e6,
    }
