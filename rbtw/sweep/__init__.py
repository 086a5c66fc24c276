"""Sweeps and studies: many training runs (variants × axes × seeds, and arms) on Dask.

A sweep file (TOML or JSON) names the task, a preset, options shared by every run, a grid of
named variants (each a table of TrainConfig overrides) and axes to cross with them (arrays of
values of one TrainConfig field), the seeds, and optionally a reference variant:

    task = "ptb_char"
    preset = "quick"
    seeds = [0, 1, 2]
    reference = "fp"
    [options]
    epochs = 2
    checkpoint_every = 50
    [grid]
    fp = { quant = "none" }
    ternary = { quant = "ternary", stochastic = true }
    hidden = [128, 256]

Runs: variant × (values of every axis) × seed, each in DIR/NAME with NAME such as
``ternary-hidden128-seed0``, trained exactly as ``rbtw train`` would.  A run's configuration is:
dataclass defaults, the preset's values for the task, ``options``, the variant, the axis
values, the seed.  DIR/sweep.json keeps the sweep; a DIR that holds another sweep is refused,
unless the new file only adds seeds, variants, axis values or (to a sweep that has arms) arms:
the runs DIR has are kept.

A study adds, optionally:

    [arms.constant]                 # arms: each run above becomes a shared prefix in
    epochs = 10                     # DIR/prefix/NAME, and every arm a branch of it in DIR/ARM/NAME
    [arms.cosine]                   # (rbtw.train.branch: the arm changes only what lies ahead —
    epochs = 10                     # epochs and the warm-down)
    lr_warmdown = "cosine"
    lr_warmdown_frac = 0.3
    lr_warmdown_to = 0.02
    [until]                         # after the schedule, one more epoch at a time at its end rate
    min_gain = 0.005                # until the last epoch improved the validation metric by less
    max_epochs = 16                 # than this, or this many epochs (arms, or plain runs)
    [summary]
    conventions = true              # test metric under each evaluation convention, per run

Modules: ``spec`` (the file and its runs), ``runner`` (one task: a run, an arm and its
extensions), ``cluster`` (local clusters, existing schedulers, the submission loop),
``summary`` (records, groups, paired gaps), ``report`` (summary.md).
"""

from rbtw.sweep.cluster import (CONNECT_TIMEOUT, TermAsInterrupt, connect, dashboard, local_cluster, probe_scheduler,
                                 run_all, worker_count)
from rbtw.sweep.runner import (BUSY_RETRY_SECONDS, INSTALL_HINT, ONE_THREAD, _import_dask, foreign_config, stage_done,
                               stage_task, stop_file_for, train_one)
from rbtw.sweep.spec import (SPEC_NAME, Sweep, SweepRun, load_sweep, make_config, parse_spec, prepare_out,
                             read_spec, stored_sweep)
from rbtw.sweep.summary import collect, summarize, t_interval, write_summary
from rbtw.sweep.report import markdown

__all__ = ["BUSY_RETRY_SECONDS", "CONNECT_TIMEOUT", "TermAsInterrupt", "INSTALL_HINT", "ONE_THREAD", "SPEC_NAME",
           "Sweep", "SweepRun", "collect", "connect", "dashboard", "foreign_config", "load_sweep", "local_cluster", "make_config",
           "markdown", "parse_spec", "prepare_out", "probe_scheduler", "read_spec", "run_all", "stage_done", "worker_count",
           "stage_task", "stop_file_for", "stored_sweep", "summarize", "t_interval", "train_one", "write_summary",
           "_import_dask"]


def finished_test(run_dir):
    """The test event of a finished run, or None."""
    from rbtw.rundir import RunDir
    return RunDir(run_dir).final_test()
