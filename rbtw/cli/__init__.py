"""Command-line interface: each command is a thin call into the library.

    rbtw.cli.app         the group, one-line errors, exit statuses
    rbtw.cli.training    rbtw train, runs, calibrate
    rbtw.cli.inference   rbtw eval, sample, info, export, emulate
    rbtw.cli.studies     rbtw reproduce, sweep, plot, demo
    rbtw.cli.datasets    rbtw data list, download, import
    rbtw.cli.progress    progress bars for the library's callbacks
"""

from rbtw.cli.app import main
from rbtw.cli import datasets, inference, studies, training  # noqa: F401  (they register their commands)

__all__ = ["main"]
