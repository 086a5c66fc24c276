"""rbtw train: the options of TrainConfig on the command line, and the run's progress."""

import signal
import sys
from pathlib import Path

import click

from rbtw.cli.app import main
from rbtw.cli.progress import EpochBar
from rbtw.calibrate import BATCHES as CALIBRATION_BATCHES
from rbtw.config import CHOICES, TASKS
from rbtw.errors import UserError

# TrainConfig fields settable from the command line: (option, field, type, help).  The types
# only parse; domains and which options apply are rbtw.config's (one place for every surface).
_QUANTS = ["fp", *CHOICES["quant"]]
_VALUE_OPTIONS = [
    ("--cell", "cell", click.Choice(CHOICES["cell"]), "recurrent cell"),
    ("--quant", "quant", click.Choice(_QUANTS), "weights of W_x and W_h (fp = none)"),
    ("--hidden", "hidden", click.INT, "hidden units H"),
    ("--layers", "layers", click.INT, "stacked recurrent layers"),
    ("--emb", "emb", click.INT, "embedding size (word LM)"),
    ("--dropout", "dropout", click.FLOAT, "dropout probability (word LM)"),
    ("--seq-len", "seq_len", click.INT, "time steps per minibatch T (language models)"),
    ("--batch", "batch", click.INT, "minibatch size B (at most the sequences of the training split)"),
    ("--pixels-per-step", "pixels_per_step", click.INT, "sMNIST pixels fed per step (a divisor of 784)"),
    ("--h0-noise", "h0_noise", click.FLOAT, "std of noise on h0 while training (sMNIST preset: 0.1)"),
    ("--epochs", "epochs", click.INT, "epochs"),
    ("--optimizer", "optimizer", click.Choice(CHOICES["optimizer"]), "optimiser"),
    ("--lr", "lr", click.FLOAT, "learning rate"),
    ("--lr-end", "lr_end", click.FLOAT, "Adam: decay geometrically to this rate"),
    ("--lr-warmdown", "lr_warmdown", click.Choice(CHOICES["lr_warmdown"]),
     "decay the rate per minibatch over the last part of the run"),
    ("--lr-warmdown-frac", "lr_warmdown_frac", click.FLOAT,
     "fraction of all minibatches in the warm-down (default 0.25)"),
    ("--lr-warmdown-to", "lr_warmdown_to", click.FLOAT,
     "rate at the last minibatch, as a fraction of the epoch's rate (default 0.01)"),
    ("--lr-warmdown-epochs", "lr_warmdown_epochs", click.INT,
     "end the warm-down with this epoch; later epochs keep its end rate (default: the last epoch)"),
    ("--clip-norm", "clip_norm", click.FLOAT, "clip the global gradient norm"),
    ("--adam-reset", "adam_reset", click.INT, "reset Adam every N minibatches (0: never)"),
    ("--max-batches", "max_batches", click.INT, "cap on minibatches per epoch (0: all)"),
    ("--checkpoint-every", "checkpoint_every", click.INT, "also checkpoint every N minibatches"),
    ("--eval-batch", "eval_batch", click.INT, "evaluation batch size"),
    ("--eval-max-batches", "eval_max_batches", click.INT, "cap on evaluation minibatches (0: all)"),
    ("--eval-weights", "eval_weights", click.Choice(CHOICES["eval_weights"]),
     "evaluation weights (sampled, expected: stochastically trained binary/ternary models)"),
    ("--eval-stats", "eval_stats", click.Choice(CHOICES["eval_stats"]), "evaluation BN statistics"),
    ("--seed", "seed", click.INT, "random seed"),
    ("--dtype", "dtype", click.Choice(CHOICES["dtype"]), "floating-point type"),
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
@click.option("--show-config", is_flag=True,
              help="print every setting the run would have (the preset with your options, or the run "
                   "--resume continues) and exit without training")
def train(task, preset, out_dir, resume, force, data_dir, show_config, **options):
    """Train a model on TASK and report its test metric.

    TASK text trains a character LM on your own UTF-8 file: rbtw train text --file PATH.
    The run directory is locked while training: a second training into it fails at once.
    An option the run would ignore (--dropout on a char model, --step-clip on full precision)
    is refused.  Long runs print a progress line every few seconds when stderr is not a terminal.
    """
    from rbtw.api import fit
    from rbtw.config import build_config, metric_name
    from rbtw.summary import count
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
    if show_config:
        _show_config(config or _resumed_config(out_dir, fields), task, preset, given, resume)
        return
    out = Path(out_dir) if out_dir else default_run_dir(config)
    bar = EpochBar()
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
    part = f", first {count(c.eval_max_batches, 'test minibatch', 'test minibatches')}" if c.eval_max_batches else ""
    click.echo(f"{task} {c.cell} {c.quant}: test {name} {result.test[name]:.4f} "
               f"(weights {c.eval_weights}, {c.eval_stats} statistics{part}) -> {out}")
    _say_best(out, name)


def _say_best(out, metric):
    """Name best.npz on stderr when validation was better at an earlier epoch than at the last."""
    from rbtw.checkpoint import load_meta
    from rbtw.rundir import RunDir
    rd = RunDir(out)
    try:
        best, last = load_meta(rd.best_path)["epoch"], load_meta(rd.checkpoint_path)["epoch"]
        valid = {e["epoch"] + 1: e.get(f"valid_{metric}") for e in rd.epochs()}
    except (OSError, UserError):
        return
    if best < last and valid.get(best) is not None and valid.get(last) is not None:
        click.echo(f"validation {metric} was best after epoch {best} ({valid[best]:.4f}; "
                   f"{valid[last]:.4f} after epoch {last}): that model is {rd.best_path}", err=True)


def _resumed_config(out_dir, fields):
    from rbtw.api import resumed_config
    return resumed_config(out_dir, **fields)


def _show_config(config, task, preset, given, resume):
    where = "the run in --out, resumed" if resume else f"preset {preset or 'quick'}"
    mine = ", ".join(_as_typed(k, v) for k, v in given.items()) or "no options"
    click.echo(f"# rbtw train {task}: {where}, with {mine}")
    width = max(len(k) for k in config.to_dict())
    for k, v in config.to_dict().items():
        click.echo(f"{k:<{width}}  {v}")


def _as_typed(field, value):
    """An option as the user would type it: "--hidden 256", "--stochastic", "--no-bn",
    "--split 0.9/0.05/0.05" (the shares as parsed)."""
    from rbtw.config import option_name
    option = option_name(field)
    if isinstance(value, bool):               # a --flag/--no-flag pair: the half that was given
        on, _, off = option.partition("/")
        return on if value else off or f"{on} false"
    if isinstance(value, (list, tuple)):
        value = "/".join(f"{x:g}" if isinstance(x, float) else str(x) for x in value)
    return f"{option} {value}"


@main.command("runs")
@click.argument("root", metavar="[DIR]", type=click.Path(file_okay=False), default="runs")
def runs(root):
    """List the run directories under DIR (default runs/, searched recursively): task, variant
    (cell, weights, BN), status (finished, unfinished, failed, training, unreadable), epochs and metric."""
    from rbtw.rundir import find_runs, run_rows
    if not Path(root).is_dir():
        raise UserError(f"{root}: no such directory")
    rows = run_rows(find_runs(root), root)
    if not rows:
        click.echo(f"no run directories under {root}")
        return
    header = ("run", "task", "variant", "status", "epochs", "metric")
    widths = [max(len(str(r[k])) for r in [dict(zip(header, header))] + rows) for k in header]
    for row in [dict(zip(header, header))] + rows:
        click.echo("  ".join(str(row[k]).ljust(w) for k, w in zip(header, widths)).rstrip())


@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--batches", type=click.IntRange(1), default=CALIBRATION_BATCHES, show_default=True,
              help="training minibatches to re-estimate the BN statistics with")
@click.option("--threshold", "thresholds", default=None, metavar="θ[,θ...]",
              help="ternary: candidate thresholds τ/α, the best on the validation split is kept "
                   "[default: 1/3,0.4,0.5,0.6, then on in steps of 0.1 up to 0.9 while the largest wins]")
@click.option("--no-statistics", is_flag=True, help="keep the BN statistics (choose the threshold only)")
@click.option("--valid-batches", type=click.IntRange(1), default=None,
              help="validation minibatches to choose with (default: the whole split)")
@click.option("--force", is_flag=True, help="replace OUT if it exists (never the checkpoint itself)")
@click.option("--data-dir", type=click.Path(file_okay=False))
def calibrate(checkpoint, out, batches, thresholds, no_statistics, valid_batches, force, data_dir):
    """Calibrate the deterministic model on the validation split.

    Re-estimates the BN population statistics under the deterministic weights (full precision:
    under its own weights) and, for ternary weights, chooses the threshold τ = θ·α; writes the
    calibrated model to OUT (a checkpoint whose parameters are the input's).  Export OUT as any
    checkpoint.
    """
    from rbtw.calibrate import calibrate_file
    theta = None
    if thresholds is not None:
        try:
            theta = [float(x) for x in thresholds.split(",") if x.strip()]
        except ValueError:
            raise UserError(f"--threshold {thresholds!r}: give numbers such as 0.3333,0.5") from None
    from rbtw.fileio import FORCE_OPTION
    report = calibrate_file(checkpoint, out, batches=batches, thresholds=theta, statistics=not no_statistics,
                            valid_batches=valid_batches, force=force, data_dir=data_dir,
                            log=lambda line: click.echo(line, err=True), force_hint=FORCE_OPTION)
    from rbtw.summary import describe_calibration
    click.echo(f"{describe_calibration(report)} -> {out}")
