"""Errors a user can cause.

Library code raises :class:`UserError` for anything the user can fix (a missing file, a bad
option, a corrupt checkpoint).  The CLI turns it into one line on stderr and exit status 2;
any other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input: reported as one line, never a traceback."""
