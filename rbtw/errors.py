"""Errors a user can cause.

Library code raises :class:`UserError` for anything the user can fix (a missing file, a bad
option, a corrupt checkpoint).  The CLI turns it into one line on stderr and exit status 2;
any other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input: reported as one line, never a traceback."""


def run_script(main):
    """Run a script's ``main()``: a UserError or an operating-system error ends it with one
    line on stderr and exit status 2, Ctrl-C with status 130 (no traceback in either case)."""
    import sys
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
