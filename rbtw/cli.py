"""Command-line interface: each command is a thin call into the library.

Errors a user can cause are raised as :class:`rbtw.errors.UserError` and reported here as one
line on stderr with exit status 2.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from rbtw import __version__
from rbtw.config import TASKS
from rbtw.errors import UserError


def _fail(message):
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _usage_message(e):
    where = f" (see: {e.ctx.command_path} --help)" if e.ctx is not None else ""
    return e.format_message().replace("\n", " ") + where


class _Group(click.Group):
    """A click group that reports user errors as one line on stderr and exits with status 2.

    That covers :class:`UserError` from the library and click's own usage errors (unknown
    option, bad value), which click would otherwise print with a usage banner.
    """

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:
            _fail(_usage_message(e))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as e:
            _fail(str(e))
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:
            _fail(_usage_message(e))
        except OSError as e:
            _fail(_os_error_message(e))
        except MemoryError:
            _fail("out of memory: choose smaller sizes (--hidden, --batch, --seq-len)")
        except KeyboardInterrupt:
            _interrupted()
        except SystemError as e:
            # Ctrl-C inside a compiled kernel reaches Python as a SystemError around it
            if isinstance(e.__cause__ or e.__context__, KeyboardInterrupt):
                _interrupted()
            raise


def _os_error_message(e):
    """One line for an operating-system error on a file: "PATH: reason"."""
    reason = e.strerror or type(e).__name__
    if e.filename is None:
        return f"{reason} ({e})" if str(e) and str(e) != reason else reason
    where = str(e.filename) + (f" -> {e.filename2}" if e.filename2 is not None else "")
    return f"{where}: {reason}"


def _interrupted():
    click.echo("\ninterrupted", err=True)
    sys.exit(130)


_Group.group_class = _Group


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rbtw")
def main():
    """Recurrent binary/ternary weights: train, export, run and emulate quantized BN-LSTMs."""
    import warnings
    # numeric problems are reported by the commands themselves (NaN stop, divergence), and
    # library chatter (numpy overflow, matplotlib) is not for the terminal
    warnings.simplefilter("ignore")


# ---------------------------------------------------------------------------------------------
# train

# TrainConfig fields settable from the command line: (option, field, type, help)
_VALUE_OPTIONS = [
    ("--cell", "cell", click.Choice(["lstm", "gru"]), "recurrent cell"),
    ("--quant", "quant", click.Choice(["fp", "none", "binary", "ternary"]), "weights of W_x and W_h (fp = none)"),
    ("--hidden", "hidden", click.IntRange(1), "hidden units H"),
    ("--layers", "layers", click.IntRange(1), "stacked recurrent layers"),
    ("--emb", "emb", click.IntRange(1), "embedding size (word LM)"),
    ("--dropout", "dropout", click.FloatRange(0, 1, max_open=True), "dropout probability (word LM)"),
    ("--seq-len", "seq_len", click.IntRange(1), "time steps per minibatch T"),
    ("--batch", "batch", click.IntRange(1), "minibatch size B"),
    ("--pixels-per-step", "pixels_per_step", click.IntRange(1), "sMNIST pixels fed per step"),
    ("--h0-noise", "h0_noise", click.FloatRange(0), "std of noise on h0 while training (sMNIST preset: 0.1)"),
    ("--epochs", "epochs", click.IntRange(1), "epochs"),
    ("--optimizer", "optimizer", click.Choice(["adam", "sgd"]), "optimiser"),
    ("--lr", "lr", click.FloatRange(0, min_open=True), "learning rate"),
    ("--lr-end", "lr_end", click.FloatRange(0, min_open=True), "Adam: decay geometrically to this rate"),
    ("--lr-warmdown", "lr_warmdown", click.Choice(["none", "cosine", "linear"]),
     "decay the rate per minibatch over the last part of the run"),
    ("--lr-warmdown-frac", "lr_warmdown_frac", click.FloatRange(0, 1, min_open=True),
     "fraction of all minibatches in the warm-down (default 0.25)"),
    ("--lr-warmdown-to", "lr_warmdown_to", click.FloatRange(0, 1),
     "rate at the last minibatch, as a fraction of the epoch's rate (default 0.01)"),
    ("--lr-warmdown-epochs", "lr_warmdown_epochs", click.IntRange(1),
     "end the warm-down with this epoch; later epochs keep its end rate (default: the last epoch)"),
    ("--clip-norm", "clip_norm", click.FloatRange(0, min_open=True), "clip the global gradient norm"),
    ("--adam-reset", "adam_reset", click.IntRange(0), "reset Adam every N minibatches (0: never)"),
    ("--max-batches", "max_batches", click.IntRange(0), "cap on minibatches per epoch (0: all)"),
    ("--checkpoint-every", "checkpoint_every", click.IntRange(1), "also checkpoint every N minibatches"),
    ("--eval-batch", "eval_batch", click.IntRange(1), "evaluation batch size"),
    ("--eval-max-batches", "eval_max_batches", click.IntRange(0), "cap on evaluation minibatches (0: all)"),
    ("--eval-weights", "eval_weights", click.Choice(["deterministic", "sampled", "expected"]), "evaluation weights"),
    ("--eval-stats", "eval_stats", click.Choice(["population", "batch"]), "evaluation BN statistics"),
    ("--seed", "seed", click.IntRange(0, 2**63 - 1), "random seed"),
    ("--dtype", "dtype", click.Choice(["float32", "float64"]), "floating-point type"),
]


def _config_options(f):
    for opt, field, typ, help_ in reversed(_VALUE_OPTIONS):
        f = click.option(opt, field, type=typ, default=None, help=help_)(f)
    f = click.option("--stochastic/--deterministic", "stochastic", default=None,
                     help="stochastic or deterministic quantization while training")(f)
    f = click.option("--bn/--no-bn", "bn", default=None,
                     help="batch norm on W_x·x, W_h·h and c (--no-bn: BinaryConnect-style baseline)")(f)
    f = click.option("--step-clip/--no-step-clip", "step_clip", default=None,
                     help="clip Adam steps of W_x, W_h to ±α (default: binary only)")(f)
    return f


def default_run_dir(config):
    parts = [config.task if config.task != "text" else f"text-{Path(config.text_file).stem}", config.cell, config.quant]
    if config.quant != "none":
        parts.append("stoch" if config.stochastic else "det")
    if not config.bn:
        parts.append("nobn")
    return Path("runs") / "-".join(parts)


class _EpochBar:
    """A click progress bar per epoch, driven by the trainer's progress callback."""

    def __init__(self):
        self.bar, self.epoch = None, None

    def __call__(self, run, loss):
        if self.epoch != run.epoch:
            self.close()
            self.epoch = run.epoch
            self.bar = click.progressbar(length=run.n_batches(), label=f"epoch {run.epoch + 1}/{run.config.epochs}",
                                         file=sys.stderr, show_pos=True, show_eta=True,
                                         item_show_func=lambda item: "" if item is None else f"loss {item:.3f}")
            self.bar.__enter__()
            self.bar.update(run.batch_index - 1)
        self.bar.update(1, loss)

    def close(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


class _SplitType(click.ParamType):
    """Three train/valid/test shares such as 90/5/5 or 0.8,0.1,0.1, scaled to sum to 1."""

    name = "TRAIN/VALID/TEST"

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return list(value)
        try:
            parts = [float(x) for x in value.replace(",", "/").split("/")]
        except ValueError:
            parts = []
        if len(parts) != 3 or min(parts) <= 0:
            self.fail(f"{value!r} is not three positive shares such as 90/5/5", param, ctx)
        return [x / sum(parts) for x in parts]


@main.command()
@click.argument("task", type=click.Choice(list(TASKS)))
@click.option("--preset", type=click.Choice(["quick", "paper"]), default=None,
              help="settings to start from  [default: quick]")
@_config_options
@click.option("--file", "text_file", type=click.Path(dir_okay=False), default=None,
              help="task text: the UTF-8 file to train a character LM on")
@click.option("--split", "text_split", type=_SplitType(), default=None,
              help="task text: train/valid/test shares of the file  [default: 90/5/5]")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="run directory (default runs/TASK-CELL-QUANT...)")
@click.option("--resume", is_flag=True,
              help="continue the run in --out from its checkpoint (options may only raise --epochs "
                   "or set --checkpoint-every)")
@click.option("--force", is_flag=True, help="start afresh even if --out holds a checkpoint")
@click.option("--data-dir", type=click.Path(file_okay=False), help="data cache (default $RBTW_DATA or ~/.cache/rbtw)")
def train(task, preset, out_dir, resume, force, data_dir, **options):
    """Train a model on TASK and report its test metric.

    TASK text trains a character LM on your own UTF-8 file: rbtw train text --file PATH.
    The run directory is locked while training: a second training into it fails at once.
    """
    from rbtw.api import fit
    from rbtw.config import build_config, metric_name, refuse_inapplicable
    from rbtw.train import Interrupted

    if resume and not out_dir:
        raise UserError("--resume needs --out: the run directory to continue")
    if resume and preset is not None:
        raise UserError("--preset does not apply to --resume: the run keeps its settings")
    given = {k: v for k, v in options.items() if v is not None}
    if resume:
        config, fields = None, dict(given, task=task)
    else:
        config, fields = build_config(task, preset or "quick", **options), {}
        refuse_inapplicable(config, options)
    out = Path(out_dir) if out_dir else default_run_dir(config)
    bar = _EpochBar()
    try:
        result = fit(config, out, resume=resume, force=force, data_dir=data_dir, progress=bar,
                     log=lambda line: click.echo(line, err=True), **fields)
    except Interrupted as e:
        bar.close()
        click.echo(f"\ninterrupted: checkpoint saved; continue with: rbtw train {task} --resume --out {out}",
                   err=True)
        sys.exit(128 + (e.signal or signal.SIGINT))      # 130 Ctrl-C, 143 SIGTERM
    finally:
        bar.close()
    c, name = result.config, metric_name(result.config.kind)
    part = f", first {c.eval_max_batches} test minibatches" if c.eval_max_batches else ""
    click.echo(f"{task} {c.cell} {c.quant}: test {name} {result.test[name]:.4f} "
               f"(weights {c.eval_weights}, {c.eval_stats} statistics{part}) -> {out}")


# ---------------------------------------------------------------------------------------------
# eval, sample, info


def _load(checkpoint):
    from rbtw.api import read_checkpoint
    return read_checkpoint(checkpoint)


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
@click.option("--max-batches", type=click.IntRange(1), default=None, help="evaluate only this many minibatches")
@click.option("--text", "text_file", type=click.Path(dir_okay=False),
              help="evaluate on this whole UTF-8 file instead of a split (language models)")
@click.option("--data-dir", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def eval_(model_path, split, engine, eval_weights, eval_stats, max_batches, text_file, data_dir, as_json):
    """Evaluate a checkpoint or an export on the valid or test split, or on a text (--text)."""
    from rbtw.numba_setup import skip_probes
    skip_probes()
    from rbtw.api import load
    from rbtw.data.corpus import read_text_file
    model = load(model_path, engine=engine, weights=eval_weights, stats=eval_stats)
    text = read_text_file(text_file).decode("utf-8") if text_file else None
    result = model.evaluate(text, split=split, max_batches=max_batches, data_dir=data_dir)
    where = text_file if text_file else split
    if as_json:
        click.echo(json.dumps(dict(result, split=where)))
    else:
        name = model.metric
        click.echo(f"{where} {name} {result[name]:.4f}  (loss {result['loss']:.4f} nats over {result['n']:,} "
                   f"predictions; {model.engine_name} engine, weights {result['eval_weights']}, "
                   f"{result['eval_stats']} statistics)")


def _encode_prime(text, vocab, level):
    from rbtw.api import encode
    return encode(text, vocab, level)


@main.command()
@click.argument("model_path", metavar="CHECKPOINT|EXPORT", type=click.Path(dir_okay=False))
@click.option("--length", type=click.IntRange(0), default=200, show_default=True, help="tokens to generate")
@click.option("--prime", default=None, help="text to start from (default: the first vocabulary entry)")
@click.option("--prime-file", type=click.Path(dir_okay=False, exists=True), help="read the prime from a UTF-8 file")
@click.option("--temperature", type=click.FloatRange(0), default=1.0, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@_ENGINE
def sample(model_path, length, prime, prime_file, temperature, seed, engine):
    """Generate text from a trained language model."""
    from rbtw.api import load
    from rbtw.numba_setup import skip_probes
    skip_probes()
    model = load(model_path, engine=engine)
    if model.config.kind == "classify" or not model.vocab:
        raise UserError("sampling needs a language model; this one is a classifier")
    if prime_file:
        try:
            prime = Path(prime_file).read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"{prime_file} is not UTF-8 text (byte {e.start})") from None
    click.echo(model.sample(prime, length=length, temperature=temperature, seed=seed))


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
        ckpt, _ = _load(model_path)
        lines = describe(ckpt.meta, ckpt.params)
    for line in lines:
        click.echo(line)


def _check_output(out, inputs, force=False, what="file"):
    """Refuse to write ``out`` over one of ``inputs`` (ever) or over an existing file (unless
    ``force``)."""
    out = Path(out)
    for path in inputs:
        if Path(path).exists() and out.exists() and os.path.samefile(out, path):
            raise UserError(f"{out} is an input of this command: choose another output {what}")
        if Path(path).resolve() == out.resolve():
            raise UserError(f"{out} is an input of this command: choose another output {what}")
    if out.is_dir():
        raise UserError(f"{out} is a directory: give a file name")
    if out.exists() and not force:
        raise UserError(f"{out} already exists: pass --force to replace it")


@main.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="replace OUT if it exists (never the checkpoint itself)")
@click.option("--bn-steps", type=click.IntRange(1), default=None,
              help="per-step BN tables for steps < K, one shared table (pooled statistics of the "
                   "later steps) for steps ≥ K; K ≥ T_max: one table per step  [default: 1]")
def export_(checkpoint, out, force, bn_steps):
    """Write a packed model: bit-packed weights, BN folded per step, a checksummed manifest."""
    from rbtw.export import build_export
    from rbtw.export_format import write_export
    from rbtw.summary import describe_export
    _check_output(out, [checkpoint], force)
    ckpt, _ = _load(checkpoint)
    export = build_export(ckpt.meta, ckpt.params, ckpt.stats, bn_steps=bn_steps)
    size = write_export(out, export)
    click.echo(f"wrote {out}")
    for line in describe_export(export, size)[:10]:
        click.echo(line)


# ---------------------------------------------------------------------------------------------
# emulate: the accelerator model


def _emulation_data(export, config, data_dir, text_file):
    """The test split of the export's task, or --text FILE (char LMs) as a test split."""
    from rbtw.tasks import given_text, load_task_data
    if text_file is None:
        data = load_task_data(config, data_dir)
        if data.vocab is not None and data.vocab != export.manifest.get("vocab"):
            raise UserError("the model's vocabulary does not match the data set")
        return data
    if config.kind != "char":
        raise UserError("--text needs a character-level language model")
    try:
        text = Path(text_file).read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{text_file} is not UTF-8 text (byte {e.start})") from None
    vocab = export.manifest["vocab"]
    return given_text(_encode_prime(text, vocab, "char"), vocab)


def _batch_bar(label, total):
    """A progress bar on a terminal (None elsewhere): a callback to call after each batch."""
    if not sys.stderr.isatty() or total <= 1:
        return None
    bar = click.progressbar(length=total, label=label, file=sys.stderr)
    bar.__enter__()
    done = [0]

    def tick():
        bar.update(1)
        done[0] += 1
        if done[0] >= total:
            bar.__exit__(None, None, None)
    return tick


@main.command()
@click.argument("export_path", metavar="EXPORT", type=click.Path(dir_okay=False))
@click.option("--design", "design_name", type=click.Choice(["fp12", "binary", "ternary", "binary-eq", "ternary-eq"]),
              default=None, help="PE type; -eq: more PEs in the fp12 array's area "
                                 "(default: the export's own: binary, ternary, or fp12 for full precision)")
@click.option("--rows", type=click.IntRange(1), default=16, show_default=True, help="PE array rows R")
@click.option("--cols", type=click.IntRange(1), default=16, show_default=True, help="PE array columns C")
@click.option("--sram-kb", type=click.FloatRange(0), default=64.0, show_default=True, help="weight SRAM, KiB")
@click.option("--clock-mhz", type=click.FloatRange(0, min_open=True), default=500.0, show_default=True)
@click.option("--dram-gbps", type=click.FloatRange(0, min_open=True), default=12.8, show_default=True)
@click.option("--act-frac", type=click.IntRange(1, 20), default=12, show_default=True,
              help="fraction bits of h, x and c (h, x width = frac + 4)")
@click.option("--compare", is_flag=True, help="side-by-side table: fp12 vs binary vs ternary, equal area included")
@click.option("--steps", type=click.IntRange(1), default=None,
              help="emulate at least this many time steps (default: the whole split)")
@click.option("--text", "text_file", type=click.Path(dir_okay=False, exists=True),
              help="run on this UTF-8 text (char LMs)")
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
              act_frac=act_frac, act_bits=act_frac + 4, cell_frac=act_frac)
    design_name = design_name or {"binary": "binary", "ternary": "ternary"}.get(export.spec["quant"], "fp12")
    design = dm.preset(design_name, **kw)
    data = _emulation_data(export, config, data_dir, text_file)
    B = config.eval_batch or config.batch
    max_batches = -(-steps // (B * config.seq_len)) if steps else None
    for line in report.emulation(export, design, data, config, max_batches=max_batches,
                                 compare_kw=kw if compare else None, progress=_batch_bar):
        click.echo(line)


# ---------------------------------------------------------------------------------------------
# reproduce, plot


@main.command()
@click.option("--budget", type=click.Choice(["quick", "full"]), default="quick", show_default=True,
              help="quick: ~6 min on 2 cores; full: ~1 hour (58.6 min measured)")
@click.option("--tasks", default=",".join(["ptb_char", "warpeace", "linux", "text8", "mnist", "ptb_word"]),
              show_default=True, help="comma-separated tasks")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/reproduce", show_default=True)
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              help="markdown report (default OUT/BUDGET/REPRODUCTION.md)")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="parallel runs: local Dask worker processes (default: cores)")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="run on an existing Dask scheduler instead, e.g. tcp://host:8786 (see rbtw sweep --help)")
@click.option("--data-dir", type=click.Path(file_okay=False))
def reproduce(budget, tasks, out_dir, report_path, workers, scheduler, data_dir):
    """Train fp, BinaryConnect, binary and ternary models side by side and write a report."""
    from rbtw.reproduce import reproduce as run_reproduction
    text, failed = run_reproduction(budget, [t.strip() for t in tasks.split(",") if t.strip()], out_dir,
                                    report_path=report_path, workers=workers, scheduler=scheduler,
                                    data_dir=data_dir, echo=lambda line: click.echo(line, err=True))
    click.echo(text)
    if failed:
        raise UserError(f"{len(failed)} run(s) failed: {', '.join(failed)} (logs: train.log in each run directory)")


@main.command(context_settings={"max_content_width": 100})
@click.argument("spec", metavar="SPEC|DIR", type=click.Path())
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="sweep directory: one run directory per run")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="an existing Dask scheduler, e.g. tcp://host:8786 (default: a local cluster)")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="local cluster: worker processes, one thread each (default: cores)")
@click.option("--summary", "summary_only", is_flag=True,
              help="rebuild DIR/summary.json and summary.md from the run directories of DIR")
@click.option("--data-dir", type=click.Path(file_okay=False))
def sweep(spec, out_dir, scheduler, workers, summary_only, data_dir):
    """Train every run of a sweep file on Dask and summarise the seeds.

    \b
    SPEC (TOML or JSON):
      task = "ptb_char"            # the task of every run
      preset = "quick"             # quick or paper (default quick)
      seeds = [0, 1, 2]            # each variant runs once per seed
      reference = "fp"             # optional: paired differences against it
      [options]                    # TrainConfig fields of every run
      epochs = 2
      checkpoint_every = 50        # checkpoint every N minibatches, too
      [grid]                       # tables are variants, arrays are axes
      fp = { quant = "none" }
      ternary = { quant = "ternary", stochastic = true }
      hidden = [128, 256]          # crossed with every variant

    \b
    Each run trains in DIR/VARIANT[-AXES]-seedS as `rbtw train` would.  Runs are Dask tasks:
    on a local cluster (one single-threaded worker process per core, or --workers N), or on
    --scheduler ADDRESS (workers need rbtw installed and DIR and the data cache on a shared
    filesystem).  Re-running the command skips finished runs and resumes unfinished ones; a
    run killed with its worker is resumed from its last checkpoint.  DIR/summary.json and
    DIR/summary.md give per variant the mean, sd and 95 % Student-t interval over seeds, and
    paired differences against the reference.  Needs pip install 'rbtw[dist]'.
    """
    from rbtw import sweep as sw
    if summary_only:
        if out_dir and Path(out_dir) != Path(spec):
            raise UserError("--summary takes the sweep directory as its argument, without --out")
        sweep_ = sw.stored_sweep(spec)
        click.echo(sw.markdown(sw.write_summary(sweep_, spec)))
        return
    if not out_dir:
        raise UserError("--out DIR is required (the sweep directory)")
    sweep_ = sw.load_sweep(spec)
    runs = sweep_.runs(out_dir)
    if not scheduler:
        from rbtw.config import TrainConfig
        from rbtw.tasks import load_task_data
        load_task_data(TrainConfig(task=sweep_.task, emb=1), data_dir)  # fail early when data is missing
    sw._import_dask()
    sw.prepare_out(sweep_, out_dir)
    results = _run_sweep(runs, scheduler, workers, data_dir)
    summary = sw.write_summary(sweep_, out_dir)
    click.echo(sw.markdown(summary))
    click.echo(f"summary: {Path(out_dir) / 'summary.md'}", err=True)
    failed = [name for name, r in results.items() if r["status"] == "failed"]
    if failed:
        raise UserError(f"{len(failed)} run(s) failed: {', '.join(failed)} (see summary.md and train.log)")


def _run_sweep(runs, scheduler, workers, data_dir):
    """Run ``runs`` through the Dask runner with a progress bar; the CLI side of rbtw.sweep.run_all."""
    from rbtw import sweep as sw
    todo = [r for r in runs if sw.finished_test(r.out) is None]
    if not todo:
        click.echo(f"all {len(runs)} runs have finished; nothing to train", err=True)
        return {r.name: {"status": "done", "skipped": True} for r in runs}
    client, cluster = sw.connect(scheduler, workers)
    try:
        n = len(client.scheduler_info()["workers"])
        where = scheduler or f"a local cluster of {n} worker{'s' if n != 1 else ''}"
        link = sw.dashboard(client, local=cluster is not None)
        dash = f"; dashboard {link}" if link else "; no dashboard (pip install bokeh)" if cluster else ""
        click.echo(f"{len(todo)} of {len(runs)} runs to train on {where}{dash}", err=True)
        with click.progressbar(length=len(runs), label="runs", file=sys.stderr, show_pos=True) as bar:
            return sw.run_all(runs, client, data_dir, echo=lambda line: click.echo("\n" + line, err=True),
                              progress=lambda result: bar.update(1))
    except KeyboardInterrupt:
        click.echo("\ninterrupted: run the same command again to resume", err=True)
        sys.exit(130)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


@main.command()
@click.argument("logs", nargs=-1, required=True, type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False), default="curves.png", show_default=True,
              help="image file: .png, .pdf or .svg")
def plot(logs, out):
    """Draw learning curves of one or more runs (metrics.jsonl files or run directories)."""
    from rbtw.plot import plot_logs
    from rbtw.rundir import RunDir
    inputs = [RunDir(p).metrics_path if Path(p).is_dir() else Path(p) for p in logs]
    _check_output(out, inputs, force=True, what="image")
    click.echo(f"wrote {plot_logs(logs, out)}")


# ---------------------------------------------------------------------------------------------
# demo: the README's main job


@main.command()
@click.option("--hidden", type=click.IntRange(1), default=128, show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=30, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/demo", show_default=True)
def demo(hidden, epochs, out_dir):
    """Train a ternary and a full-precision BN-LSTM of the same size on the embedded corpus.

    The two runs go in parallel processes (one BLAS thread each); their test BPC is printed
    side by side.
    """
    out = Path(out_dir)
    variants = [("ternary", ["--quant", "ternary", "--stochastic"]), ("full precision", ["--quant", "fp"])]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    procs = []
    start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    for name, args in variants:
        run_dir = out / name.replace(" ", "-")
        cmd = [sys.executable, "-m", "rbtw.cli", "train", "default", "--hidden", str(hidden), "--epochs", str(epochs),
               "--out", str(run_dir), "--force", *args]
        log = open(out / f"{name.replace(' ', '-')}.log", "w")
        procs.append((name, run_dir, subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    click.echo(f"training {len(procs)} models (H={hidden}, {epochs} epochs) on the embedded corpus; logs in {out}/",
               err=True)
    _wait_with_progress([(run_dir, proc) for _, run_dir, proc, _ in procs], epochs)
    results = []
    for name, run_dir, proc, log in procs:
        code = proc.wait()
        log.close()
        if code != 0:
            raise UserError(f"the {name} run failed (exit {code}); see {out}/{name.replace(' ', '-')}.log")
        results.append((name, _final_test(run_dir)))
    click.echo(f"embedded corpus, BN-LSTM H={hidden}, {epochs} epochs, {time.time() - start:.0f} s:")
    for name, test in results:
        click.echo(f"  {name:<15} test BPC {test['test_bpc']:.3f}")


def _epochs_done(run_dir):
    from rbtw.rundir import RunDir
    try:
        return len(RunDir(run_dir).epochs())
    except (OSError, UserError):
        return 0


def _wait_with_progress(runs, epochs):
    """Wait for the processes of ``runs`` [(run_dir, process)], with a bar of epochs done."""
    total = epochs * len(runs)
    with click.progressbar(length=total, label="epochs", file=sys.stderr, show_pos=True, show_eta=True) as bar:
        done = 0
        while True:
            running = any(proc.poll() is None for _, proc in runs)
            now = min(sum(_epochs_done(run_dir) for run_dir, _ in runs), total)
            if now > done:
                bar.update(now - done)
                done = now
            if not running:
                return
            time.sleep(0.5)


def _final_test(run_dir):
    from rbtw.rundir import RunDir
    test = RunDir(run_dir).final_test()
    if test is None:
        raise UserError(f"{run_dir} has no test result")
    return test


# --- data: corpora (rbtw.data) ------------------------------------------------------------------

_DATA_DIR_HELP = "cache directory for data sets (default: $RBTW_DATA, else ~/.cache/rbtw)"


def _data_dir_option(f):
    return click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                        help=_DATA_DIR_HELP)(f)


def _data_dir(ctx, data_dir):
    """The subcommand's --data-dir, else the group's (either beats $RBTW_DATA)."""
    return data_dir or ctx.find_object(dict).get("data_dir")


@main.group("data")
@_data_dir_option
@click.pass_context
def data_group(ctx, data_dir):
    """Data sets: list what is present, download canonical files, import local copies."""
    ctx.ensure_object(dict)["data_dir"] = data_dir


@data_group.command("list")
@_data_dir_option
@click.option("--recheck", is_flag=True,
              help="hash the stored files again instead of trusting the manifest")
@click.pass_context
def data_list(ctx, data_dir, recheck):
    """Show each data set, where it is, and whether it is present and checked."""
    from rbtw.data import dataset_rows, resolve_data_dir

    data_dir = _data_dir(ctx, data_dir)
    click.echo(f"data directory: {resolve_data_dir(data_dir)}")
    for row in dataset_rows(data_dir, recheck=recheck):
        click.echo(f"{row['name']:<9} {row['status']:<13} {row['where']}")
        click.echo(f"{'':<9} {row['note']}")


@data_group.command("download")
@click.argument("name")
@click.option("--mirror", default=None, metavar="URL",
              help="fetch <URL>/<source>/<file> instead of the canonical URLs "
                   "(default: $RBTW_MIRROR)")
@_data_dir_option
@click.pass_context
def data_download(ctx, name, mirror, data_dir):
    """Fetch NAME's canonical files, check size and checksum, store them in the cache.

    An interrupted transfer is resumed by running the command again.
    """
    from rbtw.data import download

    sdir = download(name, _data_dir(ctx, data_dir), mirror=mirror, echo=click.echo)
    click.echo(f"{name}: ready in {sdir}")


@data_group.command("import")
@click.argument("name")
@click.argument("path", type=click.Path(path_type=str))
@_data_dir_option
@click.pass_context
def data_import(ctx, name, path, data_dir):
    """Copy a local copy of NAME (a file, or a directory holding its files) into the cache."""
    from rbtw.data import import_path

    sdir = import_path(name, path, _data_dir(ctx, data_dir), echo=click.echo)
    click.echo(f"{name}: ready in {sdir}")


if __name__ == "__main__":
    main()
