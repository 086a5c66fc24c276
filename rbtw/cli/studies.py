"""rbtw reproduce, sweep, plot and demo: many runs, their reports and curves."""

import contextlib
import signal
import sys
from pathlib import Path

import click

from rbtw.cli.app import check_output, main
from rbtw.cli.progress import Progress, RunProgress
from rbtw.errors import UserError

@main.command()
@click.option("--budget", type=click.Choice(["quick", "full"]), default="quick", show_default=True,
              help="quick: ~6 min on 2 cores; full: ~1 hour (58.6 min measured)")
@click.option("--tasks", default=",".join(["ptb_char", "warpeace", "linux", "text8", "mnist", "ptb_word"]),
              show_default=True, help="comma-separated tasks")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/reproduce", show_default=True)
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              help="markdown report (default OUT/BUDGET/REPRODUCTION.md, replaced by every run)")
@click.option("--force", is_flag=True, help="replace the --report file if it exists")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="parallel runs: local Dask worker processes (default: cores)")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="run on an existing Dask scheduler instead, e.g. tcp://host:8786 (see rbtw sweep --help)")
@click.option("--data-dir", type=click.Path(file_okay=False))
def reproduce(budget, tasks, out_dir, report_path, force, workers, scheduler, data_dir):
    """Train fp, BinaryConnect, binary and ternary models side by side and write a report."""
    from rbtw.fileio import FORCE_OPTION
    from rbtw.reproduce import reproduce as run_reproduction
    text, failed = run_reproduction(budget, [t.strip() for t in tasks.split(",") if t.strip()], out_dir,
                                    report_path=report_path, force=force, force_hint=FORCE_OPTION,
                                    workers=workers, scheduler=scheduler,
                                    data_dir=data_dir, echo=lambda line: click.echo(line, err=True))
    click.echo(text)
    if failed:
        raise UserError(f"{len(failed)} run(s) failed: {', '.join(failed)} (logs: train.log in each run directory)")


@main.command(context_settings={"max_content_width": 100})
@click.argument("spec", metavar="SPEC|DIR", type=click.Path())
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="sweep directory: one run directory per run (not needed when SPEC is a sweep directory)")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="an existing Dask scheduler, e.g. tcp://host:8786 (default: a local cluster)")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="local cluster: worker processes, one thread each (default: cores)")
@click.option("--wait-workers", type=click.FloatRange(0), default=120.0, show_default=True, metavar="SECONDS",
              help="--scheduler: how long to wait for a first worker")
@click.option("--only", metavar="NAMES", default=None,
              help="train only these variants and/or arms (comma-separated); the summary covers all")
@click.option("--summary", "summary_only", is_flag=True,
              help="rebuild DIR/summary.json and summary.md from the run directories of DIR")
@click.option("--data-dir", type=click.Path(file_okay=False))
def sweep(spec, out_dir, scheduler, workers, wait_workers, only, summary_only, data_dir):
    """Train every run of a sweep file (or study) on Dask and summarise the seeds.

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
      [arms.cosine]                # optional: each run is a prefix, each arm a branch of it
      epochs = 10                  #   (epochs and warm-down fields only)
      lr_warmdown = "cosine"
      [until]                      # optional: then one epoch at a time at the schedule's end
      min_gain = 0.005             #   rate until the validation metric gains less than this
      max_epochs = 16
      [summary]
      conventions = true           # optional: test metric under each evaluation convention
                                   #   and after calibration (rbtw calibrate)

    \b
    Each run trains in DIR/VARIANT[-AXES]-seedS (with arms: DIR/prefix/NAME and DIR/ARM/NAME) as
    `rbtw train` would.  Runs are Dask tasks: on a local cluster (one single-threaded worker
    process per core, or --workers N), or on --scheduler ADDRESS (workers need rbtw installed and
    DIR and the data cache on a shared filesystem; the data directory is passed to them).
    Re-running the command (or `rbtw sweep DIR`) skips finished runs and resumes unfinished ones;
    a run killed with its worker is resumed from its last checkpoint, and said so.  A sweep file
    that adds seeds, variants, axis values or (where DIR has arms) arms extends DIR.  Ctrl-C or SIGTERM (kill PID) stops
    every run at its next minibatch boundary with its checkpoint saved.  DIR/summary.json and DIR/summary.md give
    per variant the mean, sd and 95 % Student-t interval over seeds, and paired differences
    against the reference.  Needs pip install 'rbtw[dist]'.
    """
    from rbtw import sweep as sw
    if summary_only:
        if out_dir and Path(out_dir) != Path(spec):
            raise UserError("--summary takes the sweep directory as its argument, without --out")
        sweep_ = sw.stored_sweep(spec)
        click.echo(sw.markdown(sw.write_summary(sweep_, spec)))
        return
    if Path(spec).is_dir():
        if out_dir and Path(out_dir).resolve() != Path(spec).resolve():
            raise UserError(f"{spec} is a sweep directory: resume it without --out (or give a sweep file)")
        out_dir = spec
    if not out_dir:
        raise UserError("--out DIR is required (the sweep directory)")
    from rbtw.sweep.cluster import check_wait_workers
    check_wait_workers(wait_workers)
    sweep_ = sw.load_sweep(spec)
    runs = sweep_.runs(out_dir)
    if only is not None:
        runs = sweep_.select(runs, [n.strip() for n in only.split(",") if n.strip()])
    data_dir = _data_dir_for_workers(sweep_, data_dir, check=not scheduler)
    sw._import_dask()
    sw.prepare_out(sweep_, out_dir, check_only=True)      # refused before a cluster starts ...
    results = _run_sweep(runs, out_dir, scheduler, workers, wait_workers, data_dir,
                         claim=lambda: sw.prepare_out(sweep_, out_dir))   # ... claimed once connected
    summary = sw.write_summary(sweep_, out_dir)
    click.echo(sw.markdown(summary))
    from rbtw.sweep.spec import SUMMARY_MD
    click.echo(f"summary: {Path(out_dir) / SUMMARY_MD}", err=True)
    failed = [name for name, r in results.items() if r["status"] == "failed"]
    if failed:
        raise UserError(f"{len(failed)} run(s) failed: {', '.join(failed)} (see summary.md and train.log)")


def _data_dir_for_workers(sweep_, data_dir, check):
    """The data directory as an absolute path, for workers that do not share this environment;
    checked here (for a local cluster) so that missing data fails before any training."""
    from rbtw.data import resolve_data_dir
    if check:
        from rbtw.config import TrainConfig
        from rbtw.tasks import load_task_data
        load_task_data(TrainConfig(task=sweep_.task, emb=1), data_dir)
    return str(Path(resolve_data_dir(data_dir)).resolve())


def _pending(run):
    """Whether a run has something left to do; a run whose log is damaged counts (its task
    reports it as failed, and the others train)."""
    from rbtw import sweep as sw
    try:
        return not sw.stage_done(run)
    except UserError:
        return True


def _run_sweep(runs, out_dir, scheduler, workers, wait_workers, data_dir, claim=lambda: None):
    """Run ``runs`` through the Dask runner with progress; the CLI side of rbtw.sweep.run_all."""
    from rbtw import sweep as sw
    todo = [r for r in runs if _pending(r)]
    if not todo:
        claim()
        click.echo(f"all {len(runs)} runs have finished; nothing to train", err=True)
        return {r.key: {"status": "done", "skipped": True} for r in runs}
    echo = lambda line: click.echo(line, err=True)  # noqa: E731
    stop_file = sw.stop_file_for(out_dir)
    client, cluster = sw.connect(scheduler, workers, wait_workers=wait_workers, echo=echo)
    asked = sw.TermAsInterrupt()
    try:
        claim()                 # only once connected: a scheduler that cannot be reached claims no DIR
        n = sw.worker_count(client)
        where = scheduler or f"a local cluster of {n} worker{'s' if n != 1 else ''}"
        link = sw.dashboard(client, local=cluster is not None)
        dash = f"; dashboard {link}" if link else "; no dashboard (pip install bokeh)" if cluster else ""
        echo(f"{len(todo)} of {len(runs)} runs to train on {where}{dash}")
        with RunProgress("runs", len(runs)) as bar, asked:
            return sw.run_all(runs, client, data_dir, echo=bar.say, progress=lambda result: bar.advance(result["status"]),
                              stop_file=str(stop_file.resolve()))
    except KeyboardInterrupt:
        echo("interrupted: every run saved its checkpoint; run the same command again to resume")
        sys.exit(128 + (asked.signal or signal.SIGINT))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
        with contextlib.suppress(OSError):      # a read-only directory: no stop file was made
            stop_file.unlink(missing_ok=True)


@main.command()
@click.argument("logs", nargs=-1, required=True, type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False), default="curves.png", show_default=True,
              help="image file: .png, .pdf or .svg")
@click.option("--force", is_flag=True, help="replace OUT if it exists")
def plot(logs, out, force):
    """Draw learning curves of one or more runs (metrics.jsonl files or run directories)."""
    from rbtw.plot import plot_logs
    from rbtw.rundir import RunDir
    inputs = [RunDir(p).metrics_path if Path(p).is_dir() else Path(p) for p in logs]
    check_output(out, inputs, force=force, what="image")
    click.echo(f"wrote {plot_logs(logs, out)}")


# ---------------------------------------------------------------------------------------------
# demo: the README's main job


@main.command()
@click.option("--hidden", type=click.IntRange(1), default=128, show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=30, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/demo", show_default=True)
@click.option("--force", is_flag=True, help="train both runs again even if OUT holds them")
def demo(hidden, epochs, out_dir, force):
    """Train a ternary and a full-precision BN-LSTM of the same size on the embedded corpus.

    The two runs go in parallel processes (one BLAS thread each); their test BPC is printed
    side by side.  Run again, finished runs are reported as they are and unfinished ones resume.
    """
    from rbtw.demo import run_demo
    with Progress("epochs") as progress:
        results, seconds = run_demo(hidden, epochs, out_dir, force=force,
                                    echo=lambda line: click.echo(line, err=True), on_progress=progress)
    from rbtw.summary import count
    click.echo(f"embedded corpus, BN-LSTM H={hidden}, {count(epochs, 'epoch')}, {seconds:.0f} s:")
    for name, test in results:
        click.echo(f"  {name:<15} test BPC {test['test_bpc']:.3f}")
