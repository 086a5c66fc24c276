"""What ``rbtw info`` reports about a checkpoint: configuration, sizes, weight memory.

Also :func:`count`, the one way report lines write "1 epoch", "3 epochs" (light to import:
the model code is imported only by the functions that need it).
"""

MEMORY_BITS = (32, 12, 2, 1)


def count(n, noun, plural=None):
    """"1 epoch", "2 epochs", "1,200 minibatches" (``plural`` when it is not noun + "s")."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def figure(x, places=4):
    """``x`` to ``places`` decimals, never a negative zero ("-0.0000" reads as a finding)."""
    text = f"{x + 0.0:.{places}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def weight_memory(spec):
    """Bytes of the recurrent weight matrices (W_x, W_h of every layer) at 32, 12, 2 and 1 bits.

    Binary weights need 1 bit, ternary 2; the paper's full-precision hardware baseline uses 12.
    Scales α (one per matrix) and BN terms are counted separately by the packed export.
    """
    from rbtw import models
    n = models.recurrent_weight_count(spec)
    return {bits: n * bits / 8 for bits in MEMORY_BITS}


def describe(meta, params):
    """Lines of text describing a checkpoint."""
    from rbtw import models
    spec = models.ModelSpec.from_dict(meta["spec"])
    counts = models.count_parameters(params, spec)
    cfg = meta["config"]
    lines = [
        f"task        {cfg['task']} ({spec.kind}), trained {count(meta['epoch'], 'epoch')}, "
        f"{count(meta['step'], 'minibatch', 'minibatches')}",
        f"model       {spec.layers} x {spec.cell.upper()} H={spec.hidden}, inputs {spec.n_in}, outputs {spec.n_out}"
        + (f", embedding {spec.emb}" if spec.emb else ""),
        f"weights     {spec.quant}{' stochastic' if spec.stochastic else ''}, batch norm {'on' if spec.bn else 'off'}",
        f"parameters  {counts['total']:,} in all: {counts['quantized']:,} quantized, "
        f"{counts['full_precision']:,} full precision",
        f"calibration {describe_calibration(meta.get('calibration'))}",
        "recurrent weight memory (W_x, W_h):",
    ]
    mem = weight_memory(spec)
    for bits in MEMORY_BITS:
        unit = "bit/weight " if bits == 1 else "bits/weight"
        lines.append(f"  {bits:>2} {unit}  {mem[bits] / 1024:12,.1f} KiB   ({mem[32] / mem[bits]:.0f}x less than 32-bit)")
    lines.append("configuration:")
    width = max(len(k) for k in cfg)
    lines.extend(f"  {k:<{width}}  {v}" for k, v in cfg.items())
    return lines


def describe_export(export, file_bytes):
    """Lines of text describing a packed export of ``file_bytes`` bytes on disk."""
    from rbtw.export_format import size_breakdown, table_rows, whole_model_bytes
    spec = export.spec
    parts = size_breakdown(export)
    kinds = sorted({m["kind"] for m in export.manifest["matrices"].values()})
    K, rows = export.manifest.get("bn_steps"), table_rows(export)
    layout = ("step 0 alone, one shared row after" if K == 1 else
              f"steps 0–{K - 1} per step, one shared row after" if K else
              "one row per step" if spec["bn"] else "no batch norm: biases")
    total = sum(parts.values())
    lines = [
        f"size on disk  {file_bytes:,} bytes ({file_bytes / 1024:,.1f} KiB)",
        f"  weights       {parts['weights']:,} bytes ({', '.join(kinds)}, rows padded to 64 bits)",
        f"  BN tables     {parts['bn_tables']:,} bytes ({count(rows, 'row')}: {layout}; scale and shift, float32)",
        f"  output layer  {parts['output']:,} bytes (output layer{' and embedding' if 'emb.E' in export.arrays else ''}, "
        f"float32)",
        f"  h0/c0         {parts['state']:,} bytes; manifest and alignment {file_bytes - total:,} bytes",
        f"model         {spec['layers']} x {spec['cell'].upper()} H={spec['hidden']}, {spec['kind']} task "
        f"{export.manifest['task']}, weights {spec['quant']}",
        f"BN tables     {describe_choice(export.manifest)}",
        f"calibration   {describe_calibration(export.manifest.get('calibration'))}",
        "whole-model memory (weights + BN tables + output layer + h0/c0):",
        f"  this export          {total / 1024:12,.1f} KiB",
    ]
    for bits in (12, 32):
        other = whole_model_bytes(export, bits)
        lines.append(f"  {bits}-bit weights       {other / 1024:12,.1f} KiB   (this export is {other / total:.1f}x smaller)")
    w32 = whole_model_bytes(export, 32) - whole_model_bytes(export, 0)
    lines.append(f"  32-bit weights alone {w32 / 1024:12,.1f} KiB   ({w32 / total:.1f}x this whole export; "
                 f"{w32 / parts['weights']:.1f}x its weights)" if parts["weights"] else
                 f"  32-bit weights alone {w32 / 1024:12,.1f} KiB")
    lines.append("matrices:")
    for name, m in export.manifest["matrices"].items():
        lines.append(f"  {name:<10} {m['kind']:<8} {m['rows']} x {m['cols']}  alpha {m['alpha']:.6g}")
    return lines


def describe_calibration(report):
    """What rbtw.calibrate chose for a model, from its report (None: not calibrated)."""
    if not report:
        return "none (the trained statistics; ternary: the paper's τ = α/3)"
    from rbtw.calibrate import threshold_label
    ternary = any(t["threshold"] is not None for t in report["tried"])
    theta = f"threshold {threshold_label(report['threshold'])}" if ternary else ""
    batches = count(report["batches"], "training minibatch", "training minibatches")
    stats = f"BN statistics re-estimated over {batches}" if report["statistics"] else ""
    return (f"{', '.join(x for x in (stats, theta) if x)}: {report['metric']} {report['uncalibrated']:.4f} -> "
            f"{report['calibrated']:.4f}")


def describe_choice(manifest):
    """What the export's BN tables cost against its checkpoint, as measured when it was made."""
    K, c = manifest.get("bn_steps"), manifest.get("bn_choice")
    tables = f"K = {K}: {K} per-step table{'s' if K > 1 else ''}, one shared after" if K else "one per step"
    if not c:
        return f"{tables} (made before rbtw measured the cost)"
    if c["how"] == "exact":
        return f"{tables}: what the checkpoint computes"
    if c.get("cost") is None:
        return f"{tables} ({'given' if c['how'] == 'given' else 'the safe default'}; not measured: {c['reason']})"
    how = "chosen by measurement" if c["how"] == "measured" else "given"
    unit = "example" if c["metric"] == "accuracy" else "prediction"
    return (f"{tables}, {how}: valid {c['metric']} {c['value']:.4f}, one table per step {c['per_step']:.4f}: "
            f"{describe_cost(c)} (tolerance {describe_cost(c, c['tolerance'])}; first {count(c['predictions'], unit)})")


def bn_warning(export, api=False):
    """A warning for an export whose given K costs more than the tolerance, else None; it names
    the option as the caller gave it: ``--bn-steps K`` (the CLI) or ``bn_steps=K`` (api)."""
    c = export.manifest.get("bn_choice") or {}
    if c.get("how") != "given" or c.get("cost") is None or c["cost"] <= c["tolerance"]:
        return None
    K = export.manifest["bn_steps"]
    given, unset = (f"bn_steps={K}", "with bn_steps=None") if api else (f"--bn-steps {K}", "without --bn-steps")
    return (f"{given} is {describe_cost(c)} than one BN table per step on the validation split "
            f"(tolerance {describe_cost(c, c['tolerance'])}); {unset} rbtw chooses K by measurement")


def describe_cost(choice, cost=None):
    """"0.0123 BPC worse", "1.20 % perplexity better", "3.40 accuracy points worse" (or
    without a direction, ``cost`` given: a tolerance)."""
    metric, value = choice["metric"], choice["cost"] if cost is None else cost
    amount = {"bpc": f"{abs(value):.4f} BPC", "perplexity": f"{100 * abs(value):.2f} % perplexity",
              "accuracy": f"{100 * abs(value):.2f} accuracy points"}[metric]
    if cost is not None:
        return amount
    if not any(ch in "123456789" for ch in amount.split()[0]):
        return "no difference at this precision"
    return f"{amount} {'worse' if value > 0 else 'better'}"
