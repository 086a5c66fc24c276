"""What ``rbtw info`` reports about a checkpoint: configuration, sizes, weight memory."""

from rbtw import models

MEMORY_BITS = (32, 12, 2, 1)


def weight_memory(spec):
    """Bytes of the recurrent weight matrices (W_x, W_h of every layer) at 32, 12, 2 and 1 bits.

    Binary weights need 1 bit, ternary 2; the paper's full-precision hardware baseline uses 12.
    Scales α (one per matrix) and BN terms are counted separately by the packed export.
    """
    n = models.recurrent_weight_count(spec)
    return {bits: n * bits / 8 for bits in MEMORY_BITS}


def describe(meta, params):
    """Lines of text describing a checkpoint."""
    spec = models.ModelSpec.from_dict(meta["spec"])
    counts = models.count_parameters(params, spec)
    cfg = meta["config"]
    lines = [
        f"task        {cfg['task']} ({spec.kind}), trained {meta['epoch']} epoch(s), {meta['step']} minibatches",
        f"model       {spec.layers} x {spec.cell.upper()} H={spec.hidden}, inputs {spec.n_in}, outputs {spec.n_out}"
        + (f", embedding {spec.emb}" if spec.emb else ""),
        f"weights     {spec.quant}{' stochastic' if spec.stochastic else ''}, batch norm {'on' if spec.bn else 'off'}",
        f"parameters  {counts['total']:,} in all: {counts['quantized']:,} quantized, "
        f"{counts['full_precision']:,} full precision",
        "recurrent weight memory (W_x, W_h):",
    ]
    mem = weight_memory(spec)
    for bits in MEMORY_BITS:
        lines.append(f"  {bits:>2} bits/weight  {mem[bits] / 1024:12,.1f} KiB   ({mem[32] / mem[bits]:.0f}x less than 32-bit)")
    lines.append("configuration:")
    width = max(len(k) for k in cfg)
    lines.extend(f"  {k:<{width}}  {v}" for k, v in cfg.items())
    return lines


def describe_export(export, file_bytes):
    """Lines of text describing a packed export of ``file_bytes`` bytes on disk."""
    from rbtw.export import size_breakdown
    spec = export.spec
    parts = size_breakdown(export)
    kinds = sorted({m["kind"] for m in export.manifest["matrices"].values()})
    lines = [
        f"size on disk  {file_bytes:,} bytes ({file_bytes / 1024:,.1f} KiB)",
        f"  weights       {parts['weights']:,} bytes ({', '.join(kinds)}, rows padded to 64 bits)",
        f"  BN tables     {parts['bn_tables']:,} bytes (per-step scale and shift, float32)",
        f"  full precision {parts['full_precision']:,} bytes (embeddings, output layer, h0/c0), "
        f"manifest and alignment {file_bytes - sum(parts.values()):,} bytes",
        f"model         {spec['layers']} x {spec['cell'].upper()} H={spec['hidden']}, {spec['kind']} task "
        f"{export.manifest['task']}, weights {spec['quant']}",
        "matrices:",
    ]
    for name, m in export.manifest["matrices"].items():
        lines.append(f"  {name:<10} {m['kind']:<8} {m['rows']} x {m['cols']}  alpha {m['alpha']:.6g}")
    return lines
