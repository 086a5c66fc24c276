"""The click group of every command, and how errors reach the user.

Errors a user can cause are raised as :class:`rbtw.errors.UserError` and reported here as one
line on stderr with exit status 2; Ctrl-C ends a command with "interrupted" and status 130.
"""

import sys

import click

from rbtw import fileio
from rbtw.errors import UserError, os_error_message
from rbtw.fileio import end_quietly_on_closed_pipe, reader_gone
from rbtw.version import __version__


def check_output(out, inputs=(), force=False, what="file", **kw):
    """The commands' rule for outputs: rbtw.fileio.check_output, its refusal naming the
    command's option (--force), not the Python API's keyword."""
    kw.setdefault("force_hint", fileio.FORCE_OPTION)
    return fileio.check_output(out, inputs, force, what, **kw)


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
        except BrokenPipeError as e:            # --help | head
            _closed_pipe(e)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as e:
            _fail(str(e))
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:
            _fail(_usage_message(e))
        except BrokenPipeError as e:            # rbtw ... | head: the reader has what it wanted
            _closed_pipe(e)
        except OSError as e:
            _fail(os_error_message(e))
        except MemoryError:
            _fail("out of memory: choose smaller sizes (--hidden, --batch, --seq-len)")
        except KeyboardInterrupt:
            _interrupted()
        except SystemError as e:
            # Ctrl-C inside a compiled kernel reaches Python as a SystemError around it
            if isinstance(e.__cause__ or e.__context__, KeyboardInterrupt):
                _interrupted()
            raise


def _closed_pipe(error):
    """End quietly (status 0) when the reader of stdout has gone; a broken pipe elsewhere is an
    error like any other."""
    if reader_gone(sys.stdout):
        end_quietly_on_closed_pipe(sys.stdout)
    _fail(os_error_message(error))


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
