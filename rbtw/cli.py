"""Command-line interface: each command is a thin call into the library."""

import click

from rbtw import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rbtw")
def main():
    """Recurrent binary/ternary weights: train, export, run and emulate quantized BN-LSTMs."""


if __name__ == "__main__":
    main()
