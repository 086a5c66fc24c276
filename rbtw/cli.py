"""Command-line interface: each command is a thin call into the library.

Errors a user can cause are raised as :class:`rbtw.errors.UserError` and reported here as one
line on stderr with exit status 2.
"""

import sys

import click

from rbtw import __version__
from rbtw.errors import UserError


class _Group(click.Group):
    """A click group that reports :class:`UserError` as one line and exits with status 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rbtw")
def main():
    """Recurrent binary/ternary weights: train, export, run and emulate quantized BN-LSTMs."""


if __name__ == "__main__":
    main()
