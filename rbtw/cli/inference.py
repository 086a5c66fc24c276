"""rbtw eval, sample, info, export and emulate: using a trained model."""

import json
from pathlib import Path

import click

from rbtw.accel.design import ACT_FRAC, DOMAINS, PRESETS
from rbtw.cli.app import check_output, main
from rbtw.cli.progress import Progress, batch_bar
from rbtw.config import MAX_COUNT, MAX_SEED
from rbtw.errors import UserError


def _load(checkpoint, what="checkpoint"):
    from rbtw.checkpoint import read_checkpoint
    return read_checkpoint(checkpoint, what=what)


_ENGINE = click.option("--engine", type=click.Choice(["dense", "packed"]), default=None,
                       help="dense float model, or bit-packed accumulate-only kernels "
                            "(default: packed for an export, dense for a checkpoint)")


@main.command("eval")
@click.argument("model_path", metavar="CHECKPOINT|EXPORT", type=click.Path(dir_okay=False))
@click.option("--split", type=click.Choice(["valid", "test"]), default="test", show_default=True)
@_ENGINE
@click.option("--eval-weights", type=click.Choice(["deterministic", "sampled", "expected"]), default=None,
              help="weights to evaluate with (default: the run's setting)")
@click.option("--eval-stats", type=click.Choice(["population", "batch"]), default=None,
              help="BN statistics to evaluate with (default: the run's setting)")
@click.option("--max-batches", type=click.IntRange(0), default=None,
              help="evaluate only this many minibatches; 0: all of them  [default: the run's eval_max_batches]")
@click.option("--text", "text_file", type=click.Path(dir_okay=False),
              help="evaluate on this UTF-8 file instead of a split (language models): all of it, in "
                   "whole windows of T characters (char LMs) or B streams (word LMs)")
@click.option("--data-dir", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def eval_(model_path, split, engine, eval_weights, eval_stats, max_batches, text_file, data_dir, as_json):
    """Evaluate a checkpoint or an export on the valid or test split, or on a text (--text)."""
    from rbtw.numba_setup import skip_probes
    skip_probes()
    from rbtw.api import load
    from rbtw.data.corpus import read_text_file
    model = load(model_path, engine=engine, weights=eval_weights, stats=eval_stats, data_dir=data_dir)
    text = read_text_file(text_file, pipe_ok=True).decode("utf-8") if text_file else None
    with Progress(f"evaluating {text_file or split}", "batches") as progress:
        result = model.evaluate(text, split=split, max_batches=max_batches, data_dir=data_dir, progress=progress)
    where = text_file if text_file else split
    if as_json:
        click.echo(json.dumps(dict(result, split=where)))
    else:
        name = model.metric
        from rbtw.summary import count
        part = f", first {count(result['max_batches'], 'minibatch', 'minibatches')} only" if result["max_batches"] else ""
        click.echo(f"{where} {name} {result[name]:.4f}  (loss {result['loss']:.4f} nats over {result['n']:,} "
                   f"predictions{part}; {model.engine_name} engine, weights {result['eval_weights']}, "
                   f"{result['eval_stats']} statistics)")


def _encode_text(text, vocab, symbols):
    from rbtw.api import encode
    return encode(text, vocab, symbols)


@main.command()
@click.argument("model_path", metavar="CHECKPOINT|EXPORT", type=click.Path(dir_okay=False))
@click.option("--length", type=click.IntRange(0, MAX_COUNT), default=200, show_default=True,
              help="tokens to generate")
@click.option("--prime", default=None, help="text to start from (default: the first vocabulary entry)")
@click.option("--prime-file", type=click.Path(dir_okay=False, exists=True), help="read the prime from a UTF-8 file")
@click.option("--temperature", type=click.FloatRange(0), default=1.0, show_default=True)
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True)
@_ENGINE
def sample(model_path, length, prime, prime_file, temperature, seed, engine):
    """Generate text from a trained language model."""
    from rbtw.api import check_sampling, load
    from rbtw.numba_setup import skip_probes
    if prime is not None and prime_file:
        raise UserError("give --prime or --prime-file, not both")
    check_sampling(prime, length, temperature, seed)
    skip_probes()
    model = load(model_path, engine=engine)
    if model.config.kind == "classify" or not model.vocab:
        raise UserError("sampling needs a language model; this one is a classifier")
    if prime_file:
        from rbtw.data.corpus import read_text_file
        prime = read_text_file(prime_file, pipe_ok=True).decode("utf-8")
    import sys

    from rbtw.generate import write_pieces
    write_pieces(model.sample_stream(prime, length=length, temperature=temperature, seed=seed), sys.stdout)


@main.command()
@click.argument("model_path", metavar="[CHECKPOINT|EXPORT]", type=click.Path(dir_okay=False), required=False)
@click.option("--system", is_flag=True, help="the CPU features Numba sees and the kernel path that runs, and why")
def info(model_path, system):
    """Describe a checkpoint or an export: configuration, sizes, weight memory."""
    from rbtw.export_format import is_export, read_export
    from rbtw.summary import describe, describe_export
    if system:
        from rbtw.kernels.isa import describe as describe_system
        from rbtw.kernels.ops import describe_threads
        for line in describe_system() + [describe_threads()]:
            click.echo(line)
    if model_path is None:
        if not system:
            raise click.UsageError("give a CHECKPOINT or EXPORT, or --system")
        return
    if is_export(model_path):
        lines = describe_export(read_export(model_path), Path(model_path).stat().st_size)
    else:
        from rbtw.checkpoint import MODEL_FILE
        ckpt, _ = _load(model_path, MODEL_FILE)
        lines = describe(ckpt.meta, ckpt.params)
    for line in lines:
        click.echo(line)


@main.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="replace OUT if it exists (never the checkpoint itself)")
@click.option("--bn-steps", type=click.IntRange(1), default=None,
              help="per-step BN tables for steps < K, one shared table (pooled statistics of the "
                   "later steps) for steps ≥ K; K ≥ T_max: one table per step  [default: the smallest K "
                   "within the tolerance of one table per step on the validation split]")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="data cache holding the validation split that measures K")
def export_(checkpoint, out, force, bn_steps, data_dir):
    """Write a packed model: bit-packed weights, BN folded per step, a checksummed manifest.

    The BN tables are chosen by measurement: K per-step tables and one shared after, K the
    smallest whose validation metric is within a tolerance (0.005 BPC, 0.5 % perplexity, 0.5
    accuracy points) of one table per step; an explicit --bn-steps that costs more warns.
    """
    from rbtw.export import export_checkpoint
    from rbtw.export_format import write_export
    from rbtw.summary import bn_warning, describe_export
    from rbtw.checkpoint import check_model_output
    from rbtw.fileio import FORCE_OPTION
    check_model_output(out, checkpoint, force, what="export", force_hint=FORCE_OPTION)
    ckpt, _ = _load(checkpoint)
    export = export_checkpoint(ckpt, bn_steps, data_dir=data_dir, log=lambda line: click.echo(line, err=True))
    size = write_export(out, export)
    click.echo(f"wrote {out}")
    for line in describe_export(export, size)[:10]:
        click.echo(line)
    warning = bn_warning(export)
    if warning:
        click.echo(f"warning: {warning}", err=True)


# ---------------------------------------------------------------------------------------------
# emulate: the accelerator model


def _emulation_data(export, config, data_dir, text_file):
    """(data, config): the test split of the export's task, or --text FILE (char LMs) as a test
    split, all of it (T shortened for a text shorter than it, as `rbtw eval --text` does)."""
    from rbtw.tasks import fit_to_given, given_text, load_task_data
    if text_file is None:
        from rbtw.symbols import recorded
        data = load_task_data(config, data_dir, recorded(config.kind, export.manifest.get("symbols"),
                                                         export.manifest.get("vocab")))
        if data.vocab is not None and data.vocab != export.manifest.get("vocab"):
            raise UserError("the model's vocabulary does not match the data set")
        return data, config
    if config.kind != "char":
        raise UserError("--text needs a character-level language model")
    from rbtw.data.corpus import read_text_file
    text = read_text_file(text_file, pipe_ok=True).decode("utf-8")
    from rbtw.symbols import recorded
    vocab = export.manifest["vocab"]
    symbols = recorded("char", export.manifest.get("symbols"), vocab)
    ids = _encode_text(text, vocab, symbols)
    return given_text(ids, vocab, symbols=symbols), fit_to_given(config, len(ids))


def _design_range(field):
    """The click type of a design field's option: its domain (rbtw.accel.design.DOMAINS), so that
    --help shows the range that is enforced and a value outside it is refused naming the option
    (nan, which no range refuses, meets the design's own check)."""
    kind, lo, hi, _ = DOMAINS[field]
    return click.IntRange(lo, hi) if kind == "whole" else click.FloatRange(lo, hi)


@main.command()
@click.argument("export_path", metavar="EXPORT", type=click.Path(dir_okay=False))
@click.option("--design", "design_name", type=click.Choice(PRESETS),
              default=None, help="PE type; -eq: more PEs in the fp12 array's area "
                                 "(default: the export's own: binary, ternary, or fp12 for full precision)")
@click.option("--rows", type=_design_range("rows"), default=16, show_default=True, help="PE array rows R")
@click.option("--cols", type=_design_range("cols"), default=16, show_default=True, help="PE array columns C")
@click.option("--sram-kb", type=_design_range("sram_kb"), default=64.0, show_default=True, help="weight SRAM, KiB")
@click.option("--clock-mhz", type=_design_range("clock_mhz"), default=500.0, show_default=True)
@click.option("--dram-gbps", type=_design_range("dram_gbps"), default=12.8, show_default=True)
@click.option("--act-frac", type=click.IntRange(*ACT_FRAC), default=12, show_default=True,
              help="fraction bits of h, x and c (h, x width = frac + 4; c width = frac + 8)")
@click.option("--compare", is_flag=True, help="side-by-side table: fp12 vs binary vs ternary, equal area included")
@click.option("--steps", type=click.IntRange(1), default=None,
              help="emulate at least this many time steps (default: the whole split)")
@click.option("--text", "text_file", type=click.Path(dir_okay=False, exists=True),
              help="run on this UTF-8 text (char LMs): all of it, in windows of T characters (shorter "
                   "for a shorter text)")
@click.option("--data-dir", type=click.Path(file_okay=False))
def emulate(export_path, design_name, rows, cols, sram_kb, clock_mhz, dram_gbps, act_frac, compare, steps,
            text_file, data_dir):
    """Run an export on an emulated binary/ternary LSTM/GRU accelerator: cycles, memory, energy, area."""
    from rbtw.numba_setup import skip_probes
    skip_probes()
    from rbtw.accel import design as dm
    from rbtw.accel import report
    from rbtw.config import TrainConfig
    from rbtw.export_format import read_export
    export = read_export(export_path)
    config = TrainConfig.from_dict(export.manifest["config"])
    kw = dict(rows=rows, cols=cols, sram_kb=sram_kb, clock_mhz=clock_mhz, dram_gbps=dram_gbps,
              **dm.formats(act_frac))
    design_name = design_name or {"binary": "binary", "ternary": "ternary"}.get(export.spec["quant"], "fp12")
    design = dm.preset(design_name, **kw)
    data, config = _emulation_data(export, config, data_dir, text_file)
    B = config.eval_batch_size
    max_batches = -(-steps // (B * config.t_max)) if steps else 0       # 0: the whole split
    for line in report.emulation(export, design, data, config, max_batches=max_batches,
                                 compare_kw=kw if compare else None, progress=batch_bar):
        click.echo(line)
