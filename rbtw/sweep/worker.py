"""A Dask worker preload for rbtw's local clusters: the worker process ignores SIGINT, and does
not print the heartbeat failure of a cluster that is closing.

A terminal's Ctrl-C goes to the whole process group; the sweep runner stops its runs cleanly
itself (rbtw.sweep.cluster.run_all), so its workers must not die of it mid-minibatch.  When the
sweep then closes its cluster, a worker whose heartbeat raced the scheduler's shutdown logs
"Failed to communicate with scheduler during heartbeat" with a traceback of distributed's
internals — on the sweep's stderr, after its one line saying every run saved its checkpoint.
That record is dropped; a worker that truly loses its scheduler mid-sweep is noticed by the
runner (lost workers are reported, and their runs resume).
"""

import logging
import signal
import threading

HEARTBEAT_FAILURE = "Failed to communicate with scheduler during heartbeat"


class DropHeartbeatFailure(logging.Filter):
    """A filter for the "distributed.worker" logger that drops the heartbeat failure record."""

    def filter(self, record):
        return not record.getMessage().startswith(HEARTBEAT_FAILURE)


def dask_setup(worker):
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    logger = logging.getLogger("distributed.worker")
    if not any(isinstance(f, DropHeartbeatFailure) for f in logger.filters):
        logger.addFilter(DropHeartbeatFailure())
