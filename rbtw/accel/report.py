"""Side-by-side table of designs for one export, and the lines explaining the ratios."""

from rbtw.accel import design as design_mod
from rbtw.accel import schedule


def compare_designs(export, **kw):
    """Designs that can run ``export``: fp12 always; binary only for a binary model; ternary
    for binary or ternary models (binary weights use 2 bits there); equal-area variants."""
    quant = export.spec["quant"]
    names = ["fp12"]
    if quant == "binary":
        names += ["binary", "binary-eq", "ternary", "ternary-eq"]
    elif quant == "ternary":
        names += ["ternary", "ternary-eq"]
    return [design_mod.preset(n, **kw) for n in names]


def figures(export, designs):
    return [schedule.costs(export, d) for d in designs]


def _kib(bits):
    return bits / 8 / 1024


def table(rows, metric_name=None, metrics=None):
    """Markdown table; ``metrics`` maps design name -> fixed-point metric (optional)."""
    base = rows[0]["cycles"]
    head = ["design", "PEs (R×C)", "cycles/step", "steps/s", "speed-up", "weights KiB", "model KiB", "on chip",
            "DRAM bits/step", "energy nJ/step", "area mm²"]
    if metrics:
        head.append(f"{metric_name} (fixed)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["design"], f"{r['pes']} ({r['rows']}×{r['cols']})", f"{r['cycles']:,}",
                 f"{r['steps_per_s']:,.0f}", f"{base / r['cycles']:.2f}×", f"{_kib(r['weight_bits']):.1f}", f"{_kib(r['model_bits']):.1f}",
                 "all" if r["fits"] else f"{r['on_chip_bits'] / r['weight_bits']:.0%}",
                 f"{r['off_chip_bits_per_step']:,}", f"{r['energy_nj']:.1f}", f"{r['area_mm2']:.3f}"]
        if metrics:
            cells.append(f"{metrics[r['design']]:.4f}" if r["design"] in metrics else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def explain(rows):
    """Sentences deriving the memory ratio and the speed-ups from the figures in ``rows``."""
    by = {r["design"]: r for r in rows}
    fp = by["fp12"]
    out = []
    for name in ("binary", "ternary"):
        if name not in by:
            continue
        b = by[name]
        out.append(f"weight memory fp12 / {name}: {fp['weight_bits']:,} / {b['weight_bits']:,} bits = "
                   f"{fp['weight_bits'] / b['weight_bits']:.1f}×; whole model (weights + BN tables + output "
                   f"layer) fp12 / {name}: {fp['model_bits']:,} / {b['model_bits']:,} bits = "
                   f"{fp['model_bits'] / b['model_bits']:.1f}×")
        s = fp["cycles"] / b["cycles"]
        why = (f"fp12 keeps {fp['on_chip_bits'] / fp['weight_bits']:.0%} of its weights on chip and streams "
               f"{fp['off_chip_bits_per_step']:,} bits per step from DRAM" if not fp["fits"]
               else "both fit on chip, so the same array needs the same tile cycles")
        out.append(f"speed-up {name} vs fp12, same {b['rows']}×{b['cols']} array: {s:.2f}× ({why})")
        eq = by.get(f"{name}-eq")
        if eq:
            out.append(f"speed-up {name}-eq vs fp12, same PE-array area: {fp['cycles'] / eq['cycles']:.2f}× "
                       f"({eq['pes']} add/subtract PEs in the area of {fp['pes']} multiply-accumulate PEs)")
        out.append(f"energy per step fp12 / {name}: {fp['energy_nj'] / b['energy_nj']:.1f}×")
    return out
