"""An exclusive lock on a run directory, held for the life of a training process.

``DIR/.lock`` is locked with ``fcntl.flock``; the operating system releases the lock when the
holder exits in any way (normal return, exception, SIGKILL, a lost machine's NFS client), so a
stale lock of a dead process never blocks a later run.  The holder's pid and host are written
into the file for the error message only; they play no part in the locking.

    with RunLock(run_dir):           # raises RunBusy at once if another process holds it
        ...train...

The holder removes the lock file before it unlocks it, so a run leaves no ``.lock`` behind
(a command that fails leaves a directory as it found it), and a directory that the lock
created and that is empty when the lock is released (a run that failed before writing
anything) is removed again.  Removing a lock file is safe only with the check that
:meth:`RunLock.acquire` makes after locking: a process that opened the file before its holder
removed it gets the lock on a file no longer linked at ``DIR/.lock``, notices, and tries again
on the new one — so two processes never both hold ``DIR``.  (A holder killed by SIGKILL leaves
the file; the next holder locks it and removes it in turn.)
"""

import fcntl
import os
import socket
from pathlib import Path

from rbtw.errors import UserError

LOCK_NAME = ".lock"


class RunBusy(UserError):
    """Another live process holds the run directory."""


class RunLock:
    """Exclusive, non-blocking lock on ``run_dir`` (created if missing)."""

    def __init__(self, run_dir):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd = None
        self._made_dir = False

    def acquire(self):
        self._made_dir = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
                os.close(fd)
                raise RunBusy(f"{self.path.parent} is in use by {holder}; "
                              "wait for it to finish or choose another run directory (out=, --out)") from None
            if self._still_linked(fd):
                break
            os.close(fd)   # its holder removed the file while we waited: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd
        return self

    def _still_linked(self, fd):
        """Whether the locked file is still the one at ``self.path`` (not removed by a releaser)."""
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)

    def release(self):
        if self._fd is not None:
            self.path.unlink(missing_ok=True)      # while still held: see the module docstring
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
            if self._made_dir and not any(self.path.parent.iterdir()):
                self.path.parent.rmdir()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


def is_held(run_dir):
    """Whether a live process holds the lock of ``run_dir`` now (it is training)."""
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
