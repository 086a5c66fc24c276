"""Side-by-side reproduction of the paper's claims on CPU budgets.

For each task, on the same data, seed and budget:

    fp              full-precision BN-LSTM
    binaryconnect   binary LSTM without BN (BinaryConnect-style baseline), stochastic training
    binary          binary BN-LSTM, stochastic training, deterministic evaluation
    ternary         ternary BN-LSTM, stochastic training, deterministic evaluation

plus GRU variants (fp, binary, ternary with BN) on PTB characters.  Budgets scale the models
(hidden size, minibatches per epoch, epochs) so that ``quick`` takes at most ~15 minutes and
``full`` at most ~2 hours on 2 cores; the scaled settings are printed in the report.

Each run is an ordinary training run in its own run directory, run by the sweep runner
(:mod:`rbtw.sweep`): Dask tasks on a local cluster of single-threaded worker processes, one
per core, or on an existing scheduler.  A finished run is not repeated, an interrupted one
resumes from its checkpoint.
"""

import contextlib
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rbtw.errors import UserError
from rbtw.machine import describe
from rbtw.rundir import RunDir

VARIANTS = {
    "fp": dict(quant="none", bn=True),
    "binaryconnect": dict(quant="binary", stochastic=True, bn=False),
    "binary": dict(quant="binary", stochastic=True, bn=True),
    "ternary": dict(quant="ternary", stochastic=True, bn=True),
}
GRU_VARIANTS = {
    "gru-fp": dict(cell="gru", quant="none", bn=True),
    "gru-binary": dict(cell="gru", quant="binary", stochastic=True, bn=True),
    "gru-ternary": dict(cell="gru", quant="ternary", stochastic=True, bn=True),
}
TASK_ORDER = ["ptb_char", "warpeace", "linux", "text8", "mnist", "ptb_word"]

# Per-task settings of each budget: TrainConfig fields on top of the "quick" preset.
_QUICK_CHAR = dict(hidden=128, seq_len=100, batch=64, epochs=2, max_batches=150, eval_max_batches=30)
BUDGETS = {
    "quick": {
        "ptb_char": _QUICK_CHAR,
        "warpeace": _QUICK_CHAR,
        "linux": _QUICK_CHAR,
        "text8": _QUICK_CHAR,
        "mnist": dict(hidden=64, batch=100, pixels_per_step=8, epochs=2, max_batches=150, eval_max_batches=20,
                      lr=4e-3, lr_end=1e-3),
        "ptb_word": dict(hidden=128, emb=128, seq_len=35, batch=32, epochs=2, max_batches=150,
                         eval_max_batches=40, dropout=0.3),
    },
    "full": {
        "ptb_char": dict(hidden=256, seq_len=100, batch=64, epochs=6, max_batches=250, eval_max_batches=None),
        "warpeace": dict(hidden=256, seq_len=100, batch=64, epochs=4, max_batches=150, eval_max_batches=60),
        "linux": dict(hidden=256, seq_len=100, batch=64, epochs=4, max_batches=150, eval_max_batches=60),
        "text8": dict(hidden=256, seq_len=180, batch=64, epochs=4, max_batches=100, eval_max_batches=40),
        "mnist": dict(hidden=100, batch=100, pixels_per_step=4, epochs=3, max_batches=150, eval_max_batches=None,
                      lr=4e-3, lr_end=1e-3),
        "ptb_word": dict(hidden=256, emb=256, seq_len=35, batch=32, epochs=4, max_batches=500,
                         eval_max_batches=None, dropout=0.5),
    },
}

# Figures from the paper that are at hand (docs/design.md §1.9); others are compared side by side only.
PAPER = {("ptb_word", "ternary"): ("test perplexity", 90.7, "small word LSTM: H 300, 80 epochs")}


@dataclass
class Job:
    task: str
    variant: str
    settings: dict
    out: Path
    result: dict = field(default_factory=dict)

    @property
    def name(self):
        return f"{self.task}/{self.variant}"

    def command(self, data_dir=None):
        cmd = [sys.executable, "-m", "rbtw.cli", "train", self.task, "--preset", "quick", "--out", str(self.out)]
        for key, value in self.settings.items():
            if key in ("quant",):
                cmd += ["--quant", value]
            elif key == "stochastic":
                cmd.append("--stochastic" if value else "--deterministic")
            elif key == "bn":
                cmd.append("--bn" if value else "--no-bn")
            elif value is None:
                cmd += [f"--{key.replace('_', '-')}", "0"]  # no limit
            else:
                cmd += [f"--{key.replace('_', '-')}", str(value)]
        if data_dir:
            cmd += ["--data-dir", str(data_dir)]
        return cmd

    def config(self):
        """The TrainConfig dict that :meth:`command` would train."""
        from rbtw.sweep import make_config
        return make_config(self.task, "quick", self.settings)  # None: no limit, as 0 on the command line

    def sweep_run(self):
        from rbtw.sweep import SweepRun
        return SweepRun(self.name, self.variant, {}, self.settings.get("seed", 0), self.config(), self.out)


def plan(budget, tasks, out_dir):
    """The runs of a reproduction: one Job per (task, variant)."""
    if budget not in BUDGETS:
        raise UserError(f"unknown budget {budget!r}; choose quick or full")
    unknown = [t for t in tasks if t not in TASK_ORDER]
    if unknown:
        raise UserError(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASK_ORDER)}")
    jobs = []
    for task in tasks:
        variants = dict(VARIANTS)
        if task == "ptb_char":
            variants.update(GRU_VARIANTS)
        for variant, model in variants.items():
            settings = dict(BUDGETS[budget][task], **model)
            jobs.append(Job(task, variant, settings, Path(out_dir) / budget / task / variant))
    return jobs


def finished(job):
    """The test event of a finished run, or None."""
    return RunDir(job.out).final_test()


def reproduce(budget, tasks, out_dir, *, report_path=None, force=False, workers=None, scheduler=None,
              data_dir=None, echo=print, force_hint=None):
    """Train every run of the reproduction, write the report (and, where matplotlib is
    installed, learning curves in OUT/BUDGET); returns (report text, names of failed runs).
    ``report_path`` replaces an existing file only with ``force``; the default report,
    OUT/BUDGET/REPRODUCTION.md, is the reproduction's own and is replaced by every run.
    ``force_hint``: how a refusal names the override (default ``force=True``; the command
    passes ``--force``)."""
    from rbtw.config import TrainConfig
    from rbtw.fileio import FORCE_KEYWORD, atomic_open, check_output
    from rbtw.tasks import load_task_data
    if report_path is not None:       # before any training: the report must have somewhere to go
        check_output(report_path, [], force=force, what="report", force_hint=force_hint or FORCE_KEYWORD)
    if not tasks:
        raise UserError("--tasks names no task: give a comma-separated list, e.g. ptb_char,mnist")
    from rbtw.data import resolve_data_dir
    jobs = plan(budget, tasks, out_dir)
    for task in tasks:  # fail early, before any training, when data is missing
        load_task_data(TrainConfig(task=task, emb=1), data_dir)
    data_dir = str(Path(resolve_data_dir(data_dir)).resolve())      # for workers without $RBTW_DATA
    workers = workers or os.cpu_count() or 1
    where = f"on {scheduler}" if scheduler else f"{workers} at a time"
    echo(f"{len(jobs)} runs, {where}, in {out_dir}/{budget}")
    start = time.time()
    run_jobs(jobs, workers, data_dir, echo=echo, scheduler=scheduler)
    conv = None
    probe = next((j for j in jobs if j.task == "ptb_char" and j.variant == "ternary" and "error" not in j.result
                  and finished(j)), None)
    if probe is not None:
        conv = (probe.name, conventions(probe, data_dir))
    command = "rbtw reproduce --budget " + budget + " --tasks " + ",".join(tasks)
    text = report(jobs, budget, command, conv, total_seconds=time.time() - start)
    path = Path(report_path) if report_path else Path(out_dir) / budget / "REPRODUCTION.md"
    with atomic_open(path, "w") as f:
        f.write(text + "\n")
    _plot_curves(jobs, tasks, Path(out_dir) / budget, echo)
    return text, [j.name for j in jobs if "error" in j.result]


def _plot_curves(jobs, tasks, where, echo):
    try:
        from rbtw.plot import plot_logs
        for task in tasks:
            tjobs = [j for j in jobs if j.task == task and finished(j)]
            if tjobs:
                echo(f"curves: {plot_logs([j.out for j in tjobs], where / f'curves-{task}.png', labels=[j.variant for j in tjobs])}")
    except UserError as e:
        echo(f"no plots: {e}")


def run_jobs(jobs, workers=None, data_dir=None, echo=print, scheduler=None):
    """Run the jobs through the sweep runner: Dask tasks on a local cluster of ``workers``
    single-threaded processes, or on ``scheduler``.  Finished runs are skipped."""
    from rbtw import sweep
    runs = [job.sweep_run() for job in jobs]
    for job in jobs:
        if finished(job) is not None:
            echo(f"  {job.name}: already finished")
    results = {}
    if any(finished(j) is None for j in jobs):
        stop_file = sweep.stop_file_for(Path(jobs[0].out).parents[1])      # in OUT/BUDGET
        client, cluster = sweep.connect(scheduler, workers, echo=echo)    # first: a bad address makes nothing
        try:
            stop_file.parent.mkdir(parents=True, exist_ok=True)

            def progress(result):
                if not result.get("skipped"):
                    done = sum(1 for j in jobs if finished(j) is not None)
                    echo(f"  {done}/{len(jobs)} runs finished")
            with sweep.TermAsInterrupt():       # SIGTERM stops the runs at a boundary, as Ctrl-C does
                results = sweep.run_all(runs, client, data_dir, echo=lambda line: echo(f"  {line}"),
                                        progress=progress, stop_file=str(stop_file.resolve()))
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
            with contextlib.suppress(OSError):      # a read-only OUT: no stop file was made
                stop_file.unlink(missing_ok=True)
    for job in jobs:
        result = results.get(job.name, {})
        if result.get("status") == "failed":
            job.result["error"] = result["error"]
        if "seconds" in result:
            job.result["wall_seconds"] = round(result["seconds"], 1)
        test = finished(job)
        if test is not None:
            job.result.update(test)
            job.result.setdefault("wall_seconds", _wall_from_log(job))
    return jobs


def _wall_from_log(job):
    return round(sum(e.get("seconds", 0) for e in RunDir(job.out).epochs()), 1)


def metric_of(task):
    from rbtw.config import task_metric
    return task_metric(task)


def weight_kib(job):
    """Recurrent weight memory of the run's model in KiB (1, 2 or 32 bits per weight)."""
    from rbtw.checkpoint import load_checkpoint
    from rbtw.models import ModelSpec, recurrent_weight_count
    meta = load_checkpoint(RunDir(job.out).checkpoint_path).meta
    spec = ModelSpec.from_dict(meta["spec"])
    from rbtw.quant import BITS
    bits = BITS[spec.quant]
    return recurrent_weight_count(spec) * bits / 8 / 1024


def conventions(job, data_dir=None):
    """Test metric of a finished run under both evaluation conventions."""
    from rbtw.checkpoint import read_checkpoint
    from rbtw.config import TrainConfig
    from rbtw.evaluate import CONVENTION_LABELS, CONVENTIONS, evaluate
    from rbtw.tasks import load_task_data
    ckpt, spec = read_checkpoint(RunDir(job.out).checkpoint_path)
    config = TrainConfig.from_dict(ckpt.meta["config"])
    data = load_task_data(config, data_dir)
    out = {}
    for name, (weights, batch_stats) in CONVENTIONS.items():
        out[CONVENTION_LABELS[name]] = evaluate(ckpt.params, ckpt.stats, spec, data, "test", config, weights=weights,
                              batch_stats=batch_stats)[metric_of(job.task)]
    return out


def fmt(task, value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if task == "mnist":
        return f"{100 * value:.2f} %"
    if task == "ptb_word":
        return f"{value:.1f}"
    return f"{value:.3f}"


def report(jobs, budget, command, conv=None, total_seconds=None):
    """The markdown report."""
    lines = [f"# Reproduction ({budget} budget)", "", f"Command: `{command}`", "",
             f"Machine: {describe()} ({platform.machine()}, Python {platform.python_version()}).", ""]
    if total_seconds is not None:
        lines += [f"Wall time of the whole reproduction: {total_seconds / 60:.1f} min.", ""]
    lines += ["Evaluation: test split, population batch-norm statistics, deterministic weights "
              "(what hardware runs), unless stated.", ""]
    by_task = {}
    for job in jobs:
        by_task.setdefault(job.task, []).append(job)
    for task, tjobs in by_task.items():
        metric = metric_of(task)
        s = BUDGETS[budget][task]
        lines += [f"## {task}", "", "Settings: " + ", ".join(f"{k}={v}" for k, v in s.items()), "",
                  f"| variant | test {metric} | Δ vs fp | recurrent weights | wall time | paper |",
                  "|---|---|---|---|---|---|"]
        fp = next((j.result.get(f"test_{metric}") for j in tjobs if j.variant == "fp"), None)
        gru_fp = next((j.result.get(f"test_{metric}") for j in tjobs if j.variant == "gru-fp"), None)
        for job in tjobs:
            value = job.result.get(f"test_{metric}")
            base = gru_fp if job.variant.startswith("gru") else fp
            delta = "—" if value is None or base is None or job.variant in ("fp", "gru-fp") else _delta(task, value, base)
            paper = PAPER.get((task, job.variant))
            kib = f"{weight_kib(job):,.1f} KiB" if RunDir(job.out).has_checkpoint() else "—"
            wall = f"{job.result.get('wall_seconds', 0) / 60:.1f} min" if "wall_seconds" in job.result else "—"
            status = fmt(task, value) if "error" not in job.result else f"failed: {job.result['error']}"
            lines.append(f"| {job.variant} | {status} | {delta} | {kib} | {wall} | "
                         f"{f'{paper[1]} ({paper[2]})' if paper else '—'} |")
        lines.append("")
    if conv:
        name, values = conv
        lines += [f"## Evaluation conventions ({name})", "", "| convention | test metric |", "|---|---|"]
        lines += [f"| {label} | {fmt(name.split('/')[0], v)} |" for label, v in values.items()]
        lines.append("")
    return "\n".join(lines)


def _delta(task, value, base):
    if task == "mnist":
        return f"{100 * (value - base):+.2f} pt"
    if task == "ptb_word":
        return f"{value - base:+.1f}"
    return f"{value - base:+.3f}"
