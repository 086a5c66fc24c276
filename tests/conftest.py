"""Fixtures shared by the test modules: Dask clusters for the sweep runner.

Ctrl-C as a user at a terminal has it: a shell without job control starts a background job with
SIGINT ignored, and that disposition passes to every process the tests start, where the trainer
then (rightly) leaves SIGINT alone; the tests of Ctrl-C would fail only when the suite runs in
the background.  So the suite's own process takes Python's default handler back at import, and
its children start with SIGINT at its default, as they do from a terminal.
"""

import contextlib
import json
import logging
import signal
import subprocess
import sys
import time

import pytest

if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="module")
def client():
    """One 2-worker LocalCluster, built as the CLI builds it, shared by a module's tests."""
    distributed = pytest.importorskip("distributed")
    from rbtw import sweep as sw
    cluster = sw.local_cluster(2, silence_logs=logging.ERROR, dashboard_address=":0")
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@contextlib.contextmanager
def external_cluster(tmp_path, workers=1, env=None):
    """A `dask scheduler` (and ``workers`` `dask worker` processes) started as a user would, on
    127.0.0.1; yields the scheduler's address."""
    file = tmp_path / "scheduler.json"
    common = ["--no-dashboard"]
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--scheduler-file", str(file), *common], env=env, stderr=subprocess.DEVNULL)]
    procs += [subprocess.Popen([sys.executable, "-m", "dask", "worker", "--scheduler-file", str(file), "--nthreads",
                                "1", "--host", "127.0.0.1", *common], env=env, stderr=subprocess.DEVNULL)
              for _ in range(workers)]
    try:
        yield _scheduler_address(file, deadline=time.time() + 60)
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=30)


def _scheduler_address(file, deadline):
    """The address in a scheduler file once the scheduler has written it whole: the file can
    exist, empty or half written, a moment before its JSON does."""
    while True:
        try:
            return json.loads(file.read_text())["address"]
        except (OSError, ValueError, KeyError):
            if time.time() > deadline:
                raise
            time.sleep(0.1)
