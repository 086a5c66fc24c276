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
        f"  BN tables     {parts['bn_tables']:,} bytes ({rows} rows: {layout}; scale and shift, float32)",
        f"  output layer  {parts['output']:,} bytes (output layer{' and embedding' if 'emb.E' in export.arrays else ''}, "
        f"float32)",
        f"  h0/c0         {parts['state']:,} bytes; manifest and alignment {file_bytes - total:,} bytes",
        f"model         {spec['layers']} x {spec['cell'].upper()} H={spec['hidden']}, {spec['kind']} task "
        f"{export.manifest['task']}, weights {spec['quant']}",
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
