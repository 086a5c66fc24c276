"""A Dask worker preload for rbtw's local clusters: the worker process ignores SIGINT.

A terminal's Ctrl-C goes to the whole process group; the sweep runner stops its runs cleanly
itself (rbtw.sweep.cluster.run_all), so its workers must not die of it mid-minibatch.
"""

import signal
import threading


def dask_setup(worker):
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
