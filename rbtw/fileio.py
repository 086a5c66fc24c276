"""Where files may be written, and atomic writes (a temporary name, then a rename).

A reader never sees a half-written file, and an interrupted write leaves the old file intact.

A file the user names as an output (an export, a plot, a report) goes through
:func:`check_output` first, on every surface (the CLI and the Python API): it is never one of
the command's inputs, never replaces an existing file without ``force`` (the refusal names the
override as the caller's surface spells it: ``--force`` or ``force=True``), and never lands in a
directory that does not exist (none is created for it).  The library's own directories (a
run directory, a sweep directory, the data cache) are made by :func:`atomic_path` as needed.
"""

import contextlib
import os
import tempfile
from pathlib import Path

from rbtw.errors import UserError


def reader_gone(out):
    """True when ``out`` is a pipe (or socket) whose reader has closed it: poll says POLLERR or
    POLLHUP on its descriptor.  False for anything else (a file, a terminal, no descriptor), so
    a BrokenPipeError from elsewhere is not mistaken for ``rbtw ... | head``."""
    import select
    try:
        poller = select.poll()
        poller.register(out.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def end_quietly_on_closed_pipe(out):
    """A reader closed the pipe ``out`` writes to (``rbtw ... | head``): end with status 0
    (SystemExit), ``out``'s file descriptor pointed at /dev/null so that no later flush (the
    interpreter's own, at exit) fails and prints."""
    try:
        out.flush()
    except (BrokenPipeError, OSError, ValueError):
        pass
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
    except (OSError, ValueError, AttributeError):          # not a file descriptor
        pass
    raise SystemExit(0)


# How a user asks to replace an existing output, as the refusal names it: the command line's
# option, the Python API's keyword, or (a caller that serves both) the two.
FORCE_OPTION = "--force"
FORCE_KEYWORD = "force=True"
FORCE_EITHER = f"{FORCE_OPTION} ({FORCE_KEYWORD})"


def check_output(out, inputs=(), force=False, what="file", *, force_hint=FORCE_EITHER):
    """Refuse to write the user-named file ``out``: over one of ``inputs`` (ever), onto a
    directory, into a parent that does not exist, is not a directory or cannot be written, or
    over an existing file (unless ``force``).  Returns ``out`` as a Path; raises a one-line
    UserError otherwise.

    ``force_hint`` is how the caller's user overrides the last refusal, as its message names it:
    FORCE_OPTION for a command (rbtw.cli.app.check_output passes it), FORCE_KEYWORD for the
    Python API; the default names both, for a caller that serves either."""
    if not isinstance(out, (str, os.PathLike)) or os.fspath(out) in ("", b""):
        raise UserError(f"an output {what} is a path (str or os.PathLike), not {out!r}")
    if os.fsdecode(out).endswith(("/", os.sep)):       # Path() would drop the slash and write a file
        raise UserError(f"{os.fsdecode(out)} names a directory: give a file name")
    out = Path(out)
    for path in inputs:
        if path is not None and _same_file(out, Path(path)):
            raise UserError(f"{out} is an input of this command: choose another output {what}")
    if out.is_dir():
        raise UserError(f"{out} is a directory: give a file name")
    if out.is_symlink() and not out.exists():
        raise UserError(f"{out} is a symbolic link that leads nowhere (or in a loop): give another name")
    parent = out.parent
    if not parent.exists():
        raise UserError(f"{out}: the directory {parent} does not exist (create it first)")
    if not parent.is_dir():
        raise UserError(f"{out}: {parent} is not a directory")
    try:                                  # a real probe: permissions, read-only file systems, root
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise UserError(f"{out}: cannot write in {parent} ({e.strerror or type(e).__name__})") from None
    if out.exists() and not force:
        raise UserError(f"{out} already exists: pass {force_hint} to replace it")
    return out


def _same_file(a, b):
    if os.path.realpath(a) == os.path.realpath(b):      # realpath: a symlink loop is no error
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def is_temporary(name):
    """Whether a file name is the shape of :func:`atomic_path`'s temporary files (".NAME.xxxx.tmp"),
    which a process killed mid-write leaves behind."""
    return name.startswith(".") and name.endswith(".tmp")


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:                  # name the file asked for, not the temporary one
        raise OSError(e.errno, e.strerror, str(path)) from None
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path, mode="wb"):
    """Open a temporary file for writing; rename it onto ``path`` when the block succeeds."""
    with atomic_path(path) as tmp:
        with open(tmp, mode) as f:
            yield f


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
