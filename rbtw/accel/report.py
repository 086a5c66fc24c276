"""Side-by-side table of designs for one export, and the lines explaining the ratios."""

from rbtw.accel import design as design_mod
from rbtw.accel import schedule
from rbtw.summary import count


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
                       f"({count(eq['pes'], 'add/subtract PE')} in the area of "
                       f"{count(fp['pes'], 'multiply-accumulate PE')})")
        out.append(f"energy per step fp12 / {name}: {fp['energy_nj'] / b['energy_nj']:.1f}×")
    return out


# ---------------------------------------------------------------------------------------------
# the report of `rbtw emulate`


def fixed_point_metric(export, design, data, config, max_batches=None, on_batch=None):
    """The test metric of ``export`` run in fixed point on ``design`` (``on_batch()`` after each
    batch of time steps, for a progress bar)."""
    from rbtw.accel.engine import AccelEngine
    from rbtw.evaluate import evaluate_engine, metric_name
    engine = AccelEngine(export, design, on_steps=(lambda n: on_batch()) if on_batch else None)
    return evaluate_engine(engine, data, "test", config, max_batches=max_batches)[metric_name(config.kind)]


def emulation(export, design, data, config, *, max_batches=None, compare_kw=None, progress=None):
    """The lines of ``rbtw emulate``: the design's figures, the test metric in fixed point beside
    the packed float engine's, and with ``compare_kw`` (design parameters) the side-by-side
    table of every design that can run the export.

    ``progress(label, total)`` returns a callback called after each batch (or None).
    """
    from rbtw.evaluate import batch_limit, evaluate_engine, metric_name
    from rbtw.infer import PackedEngine
    from rbtw.tasks import count_batches
    name = metric_name(config.kind)
    total = count_batches(data, "test", config, config.eval_batch_size)
    limit = batch_limit(config, max_batches)
    total = min(total, limit) if limit is not None else total

    def fixed(d):
        tick = progress(f"emulating {d.name}", total) if progress else None
        return fixed_point_metric(export, d, data, config, max_batches, tick)

    fixed_value = fixed(design)
    float_value = evaluate_engine(PackedEngine(export), data, "test", config, max_batches=max_batches)[name]
    lines = design_lines(export, design) + [f"test {name}: fixed point {fixed_value:.4f}, float {float_value:.4f}"]
    if compare_kw is None:
        return lines
    designs = compare_designs(export, **compare_kw)
    rows = figures(export, designs)
    metrics, by_pe = {}, {design.pe == "fp": fixed_value}
    for d in designs:
        key = d.pe == "fp"        # binary and ternary PEs compute the same integers
        if key not in by_pe:
            by_pe[key] = fixed(d)
        metrics[d.name] = by_pe[key]
    return lines + [""] + table(rows, name, metrics) + [f"(float {name} {float_value:.4f})"] + explain(rows)


def design_lines(export, design):
    """Cycles, memory, energy and area of ``export`` on ``design``, one line each."""
    c = schedule.costs(export, design)
    walked = schedule.simulate(schedule.model_matrices(export), [export.spec["hidden"]] * export.spec["layers"],
                               design)
    parts = c["energy_parts_nj"]
    on = "all on chip" if c["fits"] else (f"{c['on_chip_bits'] / c['weight_bits']:.0%} on chip, "
                                          f"{c['off_chip_bits_per_step']:,} bits/step from DRAM")
    return [
        f"design {design.name}: {design.rows}×{design.cols} = {count(design.pes, 'PE')}, SRAM {design.sram_kb:g} KiB, "
        f"DRAM {design.dram_gbps:g} GB/s, {design.clock_mhz:g} MHz",
        f"cycles/step {walked:,} (closed form {c['cycles']:,})  latency {c['latency_us']:.3f} µs  "
        f"throughput {c['steps_per_s']:,.0f} steps/s",
        f"weight memory {c['weight_bits']:,} bits ({c['weight_bits'] / 8192:.1f} KiB, {on}); "
        f"BN tables {c['table_bits']:,} bits ({count(schedule.layer_info(export)[0][1], 'row')}); "
        f"output layer {c['output_bits']:,} bits (float32, host)",
        f"whole model {c['model_bits']:,} bits ({c['model_bits'] / 8192:.1f} KiB); with 32-bit weights "
        f"{c['model_bits_fp32'] / 8192:.1f} KiB ({c['model_bits_fp32'] / c['model_bits']:.1f}×), with 12-bit "
        f"{c['model_bits_12'] / 8192:.1f} KiB ({c['model_bits_12'] / c['model_bits']:.1f}×)",
        f"energy/step {c['energy_nj']:.1f} nJ (PE {parts['pe']:.1f}, SRAM {parts['sram']:.1f}, "
        f"DRAM {parts['dram']:.1f}, post-processing {parts['pp']:.1f})",
        f"area {c['area_mm2']:.3f} mm² (PE array {c['pe_area_mm2']:.3f})",
    ]
