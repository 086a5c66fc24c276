"""Errors a user can cause.

Library code raises :class:`UserError` for anything the user can fix (a missing file, a bad
option, a corrupt checkpoint).  The CLI turns it into one line on stderr and exit status 2;
any other exception is a bug and keeps its traceback.
"""

import math


class UserError(Exception):
    """A problem with the user's input: reported as one line, never a traceback."""


def is_bool(value):
    """True for Python's and NumPy's booleans, which are never numbers here (True is not 1)."""
    return type(value).__name__ in ("bool", "bool_")


def is_number(value):
    """Whether a value read from JSON (or TOML) is a number: true and false are not."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def quoted(value, width=40):
    """A value read from a file, as a one-line message quotes it: JSON, cut to ``width``."""
    import json
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def is_real(value):
    """A JSON number that converts to a float (±inf and nan included; an integer beyond the
    float range is not)."""
    if not is_number(value):
        return False
    try:
        float(value)
    except OverflowError:
        return False
    return True


def is_finite(value):
    """A JSON number that is a finite float: not ±inf, nan, or an integer too large for a float."""
    if not is_number(value):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:                       # an int beyond the float range
        return False


def is_whole(value, lo=0):
    """A JSON whole number ≥ ``lo`` (not true or false)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= lo


INT64_MAX = 2 ** 63 - 1


def whole_number(value, name, lo, hi=INT64_MAX):
    """``value`` as an int when it is a whole number (not a bool) in [lo, hi], else a one-line
    UserError naming ``name``."""
    import numbers
    if is_bool(value) or not isinstance(value, numbers.Integral) or value < lo:
        domain = f"≥ {lo}" if hi == INT64_MAX else f"from {lo} to {hi:,}"
        raise UserError(f"{name} must be a whole number {domain}, not {value!r}")
    if value > hi:
        raise UserError(f"{name} must be at most {hi:,}, not {value!r}")
    return int(value)


def finite_number(value, name, lo=None, hint=""):
    """``value`` as a float when it is a finite real number (not a bool) ≥ lo (lo None: any),
    else a one-line UserError naming ``name`` (``hint``, if given, follows the domain)."""
    import math
    import numbers
    if (is_bool(value) or not isinstance(value, numbers.Real) or not math.isfinite(_as_float(value))
            or (lo is not None and value < lo)):
        domain = "" if lo is None else f" ≥ {lo}"
        raise UserError(f"{name} must be a finite number{domain}{f' ({hint})' if hint else ''}, not {value!r}")
    return float(value)


def _as_float(value):
    """A real number as a float; an integer too large for one as infinity (not OverflowError)."""
    try:
        return float(value)
    except OverflowError:
        return float("inf") if value > 0 else float("-inf")


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
