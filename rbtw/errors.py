"""Errors a user can cause.

Library code raises :class:`UserError` for anything the user can fix (a missing file, a bad
option, a corrupt checkpoint).  The CLI turns it into one line on stderr and exit status 2;
any other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input: reported as one line, never a traceback."""


def whole_number(value, name, lo, hi=2 ** 63 - 1):
    """``value`` as an int when it is a whole number (not a bool) in [lo, hi], else a one-line UserError."""
    import numbers
    if type(value).__name__ in ("bool", "bool_") or not isinstance(value, numbers.Integral) or not lo <= value <= hi:
        raise UserError(f"{name} must be a whole number from {lo} to {hi:,}, not {value!r}")
    return int(value)


def os_error_message(e):
    """One line for an operating-system error on a file: "PATH: reason"."""
    reason = e.strerror or type(e).__name__
    if e.filename is None:
        return f"{reason} ({e})" if str(e) and str(e) != reason else reason
    where = str(e.filename) + (f" -> {e.filename2}" if e.filename2 is not None else "")
    return f"{where}: {reason}"


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
        print(f"error: {os_error_message(e)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
