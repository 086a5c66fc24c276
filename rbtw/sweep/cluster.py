"""Where a sweep's tasks run, and the loop that submits them.

``connect`` gives a client of an existing scheduler (checked to be a Dask scheduler within
seconds, and waited on until it has a worker) or of a new LocalCluster of single-threaded worker
processes that Ctrl-C does not reach (the runner stops their runs cleanly instead).  ``run_all``
submits every stage whose dependencies have finished, resubmits busy ones, says when a run
resumes after a lost worker, and on Ctrl-C stops every run at a minibatch boundary.
"""

import os
import signal
import socket
import struct
import time
import warnings
from pathlib import Path

from rbtw.errors import UserError, is_finite
from rbtw.rundir import RunDir
from rbtw.sweep import runner
from rbtw.sweep.runner import (BUSY_RETRY_SECONDS, ONE_THREAD, STOP_GRACE_SECONDS, _import_dask, stage_done,
                               stage_task, task_spec)

CONNECT_TIMEOUT = 10.0      # seconds for a scheduler to answer as Dask
WAIT_WORKERS = 120.0        # default seconds to wait for a scheduler's first worker
MAX_WAIT_WORKERS = 7 * 24 * 3600   # its domain's end: a week


# ---------------------------------------------------------------------------------------------
# clusters


def local_cluster(workers=None, **kwargs):
    """A LocalCluster of ``workers`` single-threaded processes (default: one per core).

    BLAS, OpenMP and Numba are pinned to one thread in the workers' environment before they
    start; no memory limit (a run takes what it needs, as ``rbtw train`` would); the workers'
    statistical profiler is off (sampling every 10 ms, it costs about 2 % of a core).  Workers
    are never restarted for missing heartbeats (``worker-ttl`` off): on one machine a silent
    worker is a paused or suspended machine, and restarting its workers on resume threw away
    each run's progress since its last checkpoint (a dead worker process is still noticed at
    once, by its nanny).  The worker processes ignore SIGINT (a terminal's Ctrl-C reaches the
    whole process group): the runner stops their runs at a minibatch boundary instead
    (:func:`run_all`).

    The nannies live in this process and write the workers' thread settings into its environment
    before each worker starts (again when a lost worker is replaced); this process gets its own
    settings back once the workers are up and again when the cluster closes.  Left behind, a
    NUMBA_NUM_THREADS=1 made Numba refuse every later compilation here once its threads ran.
    """
    dask, distributed = _import_dask()
    n = workers or os.cpu_count() or 1
    settings = {"distributed.nanny.pre-spawn-environ":
                dict(dask.config.get("distributed.nanny.pre-spawn-environ"), **ONE_THREAD),
                "distributed.worker.profile.enabled": False,
                "distributed.scheduler.worker-ttl": None,
                "distributed.worker.preload": ["rbtw.sweep.worker"]}
    mine = {k: os.environ.get(k) for k in ONE_THREAD}
    with dask.config.set(settings):
        for k in ONE_THREAD:                                    # the config must win
            os.environ.pop(k, None)
        old = signal.signal(signal.SIGINT, signal.SIG_IGN) if _main_thread() else None
        try:
            with warnings.catch_warnings():     # another cluster holds 8787: Dask takes a free port and
                warnings.filterwarnings("ignore", message=r"Port \d+ is already in use")  # dashboard() names it
                cluster = _cluster_class(distributed)(n_workers=n, threads_per_worker=1, processes=True,
                                                      memory_limit=0, **kwargs)
        finally:
            if old is not None:
                signal.signal(signal.SIGINT, old)
            _restore_environ(mine)
    cluster.parent_environ = mine
    return cluster


def _restore_environ(values):
    """Set each variable of ``values`` back (None: absent)."""
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _cluster_class(distributed):
    # made on demand: Dask is an optional extra, imported only when a sweep runs
    class Cluster(distributed.LocalCluster):
        """A LocalCluster that gives this process its thread settings back when it closes."""
        parent_environ = {}

        def close(self, *args, **kwargs):
            try:
                return super().close(*args, **kwargs)
            finally:        # once: a later close (at garbage collection) leaves the environment be
                mine, self.parent_environ = self.parent_environ, {}
                _restore_environ(mine)
    return Cluster


def _main_thread():
    import threading
    return threading.current_thread() is threading.main_thread()


def probe_scheduler(address, timeout=CONNECT_TIMEOUT):
    """Raise UserError unless ``address`` (tcp://host:port or host:port) answers as Dask does:
    a Dask scheduler speaks first, a frame count and lengths in little-endian 64-bit words."""
    scheme, _, rest = address.rpartition("://")
    if scheme not in ("", "tcp"):
        return                                  # tls://, ucx://...: left to Dask's own connect
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"{address} is not a scheduler address such as tcp://host:8786")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as s:
            s.settimeout(timeout)
            head = _read(s, 16)
    except socket.timeout:
        raise UserError(f"no Dask scheduler answered at {address} within {timeout:g} s "
                        "(something listens there, but it is not Dask)") from None
    except OSError as e:
        raise UserError(f"cannot connect to the Dask scheduler at {address}: {e.strerror or e}") from None
    total, frames = struct.unpack("<QQ", head) if len(head) == 16 else (None, None)
    if total is None or not (0 < frames <= 64 and total < (1 << 24)):
        raise UserError(f"{address} answered, but not as a Dask scheduler (it sent {head[:12]!r})")


def _read(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def check_wait_workers(wait_workers):
    """``wait_workers`` if it is a finite number of seconds from 0 to MAX_WAIT_WORKERS, else a
    one-line UserError."""
    if not (is_finite(wait_workers) and 0 <= wait_workers <= MAX_WAIT_WORKERS):
        raise UserError(f"--wait-workers (wait_workers) must be a number of seconds from 0 to "
                        f"{MAX_WAIT_WORKERS:,}, not {wait_workers!r}")
    return wait_workers


def connect(scheduler=None, workers=None, wait_workers=WAIT_WORKERS, echo=None):
    """(client, cluster): a client of ``scheduler``, or of a new LocalCluster (cluster not None).

    An existing scheduler must answer as Dask within seconds, and have a worker within
    ``wait_workers`` seconds (it is said when it has none): a finite number from 0 to a week."""
    import logging
    check_wait_workers(wait_workers)
    _, distributed = _import_dask()
    if not scheduler:
        cluster = local_cluster(workers, silence_logs=logging.ERROR)
        return distributed.Client(cluster), cluster
    probe_scheduler(scheduler)
    try:
        client = distributed.Client(scheduler, timeout=f"{CONNECT_TIMEOUT:g}s")
    except (OSError, TimeoutError, ValueError, MemoryError) as e:
        raise UserError(f"cannot connect to the Dask scheduler at {scheduler}: "
                        f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not worker_count(client):
        if echo:
            echo(f"the scheduler at {scheduler} has no workers; waiting up to {wait_workers:g} s for one "
                 "(--wait-workers)")
        try:
            client.wait_for_workers(1, timeout=wait_workers)
        except (TimeoutError, OSError):
            client.close()
            raise UserError(f"the scheduler at {scheduler} has no workers (waited {wait_workers:g} s); "
                            f"start one: dask worker {scheduler}") from None
    return client, None


def dashboard(client, local=False):
    """The dashboard address, or None when the scheduler serves none.

    A local scheduler without bokeh serves no dashboard pages; its address is not offered.
    """
    import importlib.util
    if local and importlib.util.find_spec("bokeh") is None:
        return None
    try:
        if "dashboard" in client.scheduler_info().get("services", {}):
            return client.dashboard_link
    except Exception:  # informational only
        return None
    return None


# ---------------------------------------------------------------------------------------------
# the loop


def worker_count(client):
    """How many workers the scheduler has now.

    Read from the cluster-wide total, not from ``len(info["workers"])``: the client refreshes
    its cached identity in the background with the per-worker details left out, and a refresh
    landing between ``scheduler_info()``'s own fetch and its return gives an empty ``workers``
    — a cluster of 0 while every worker trains on.  The totals are all it asks for
    (``n_workers=0``); a Dask without the total ignores that and lists every worker.
    """
    info = client.scheduler_info(n_workers=0)
    return info["n_workers"] if "n_workers" in info else len(info["workers"])


class _Loop:
    """State of one :func:`run_all`: what waits, what runs, what has been said."""

    def __init__(self, runs, client, data_dir, echo, progress, retry_seconds, stop_file):
        self.client, self.data_dir, self.echo, self.progress = client, data_dir, echo, progress
        self.retry_seconds, self.stop_file = retry_seconds, stop_file
        self.results, self.futures, self.waiting = {}, {}, []
        self.said_busy, self.said_attempts = set(), {}
        self.submitted = {}         # key: when the run's stage was first submitted in this sweep
        self.workers = None
        for r in runs:
            try:
                done = stage_done(r)
            except UserError as e:      # a damaged log: that run (and its arms) fail, the rest train
                self.finish(r, {"status": "failed", "error": str(e)})
                continue
            if done:
                self.finish(r, {"status": "done", "skipped": True})
            else:
                self.waiting.append(r)

    def finish(self, run, result):
        self.results[run.key] = result
        if result["status"] == "failed":
            self.echo(f"{run.key}: FAILED: {result['error']}")
        if self.progress:
            self.progress(result)

    def submit(self, run, delay=0.0):
        self.submitted.setdefault(run.key, time.time())
        # among queued tasks an arm goes before a new prefix, so that begun chains tend to finish
        # first; not a guarantee: a worker freed by a prefix may take a queued prefix before its
        # arm is submitted (seen in a study)
        f = self.client.submit(_delayed_stage, delay, task_spec(run), self.data_dir, self.stop_file,
                               key=f"rbtw-{run.key.replace('/', '-')}-{time.time_ns()}", pure=False,
                               priority=1 if run.stage == "arm" else 0)
        self.futures[f] = run

    def submit_ready(self):
        for run in list(self.waiting):
            prefix = run.prefix
            if prefix is not None and prefix.key in self.results and self.results[prefix.key]["status"] != "done":
                self.waiting.remove(run)
                self.finish(run, {"status": self.results[prefix.key]["status"],
                                  "error": f"its prefix {prefix.key} did not finish"})
            elif prefix is None or prefix.key in self.results:
                self.waiting.remove(run)
                self.submit(run)

    def collect(self, future):
        run = self.futures.pop(future)
        try:
            result = future.result()
        except Exception as e:  # the task itself was lost, e.g. its workers died too often
            text = str(e).splitlines()[0] if str(e) else ""
            result = {"status": "failed", "error": f"{type(e).__name__}: {text}"}
        if result["status"] == "busy":
            if run.key not in self.said_busy:
                self.echo(f"{run.key}: {result['error']}; trying again every {self.retry_seconds:g} s")
                self.said_busy.add(run.key)
            self.submit(run, self.retry_seconds)
        else:
            self.finish(run, result)

    def notice(self):
        """Say when a run's stage starts a further attempt (its worker was lost) or a worker leaves.
        A stage's first attempt is no news, whatever its log holds from before it was submitted (an
        earlier sweep's attempts, or an arm's copy of its prefix's log)."""
        for run in self.futures.values():
            try:
                attempts = RunDir(run.out).of_kind("attempt")
            except (OSError, UserError):
                continue
            here = [a for a in attempts if a.get("time", 0) >= self.submitted[run.key]]
            if len(here) > self.said_attempts.get(run.key, 1):
                a = here[-1]
                self.echo(f"{run.key}: attempt {len(attempts)} on {a.get('host')} (pid {a.get('pid')}), "
                          "resumed from its last checkpoint")
                self.said_attempts[run.key] = len(here)
        try:
            n = worker_count(self.client)
        except Exception:
            return
        if self.workers is not None and n < self.workers:
            self.echo(f"{self.workers - n} worker(s) left the cluster ({self.workers} → {n}); "
                      "their runs are rescheduled and resume from their checkpoints")
        self.workers = n


class TermAsInterrupt:
    """While open (main thread only), SIGTERM at its default — which would kill the sweep at once
    and its local workers' runs with it, losing their minibatches since the last checkpoint —
    raises KeyboardInterrupt instead, so the runner stops every run at its next minibatch
    boundary as for Ctrl-C.  ``signal`` says which signal stopped the sweep (None: Ctrl-C)."""

    def __init__(self):
        self.signal, self._old = None, None

    def _on_term(self, signum, frame):
        self.signal = signum
        raise KeyboardInterrupt

    def __enter__(self):
        import threading
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            self._old = signal.signal(signal.SIGTERM, self._on_term)
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
        return False


def run_all(runs, client, data_dir=None, echo=None, progress=None, retry_seconds=BUSY_RETRY_SECONDS,
            stop_file=None):
    """Run every unfinished stage of ``runs`` as a Dask task on ``client``; returns {key: result}.

    Finished stages are skipped without a task (then no client is needed).  A stage is submitted
    once what it depends on (an arm's prefix) has finished.  ``progress(result)`` is called once
    per stage when it ends.  Failures of single runs are results, not exceptions.  Ctrl-C
    (KeyboardInterrupt) creates ``stop_file`` — every running task then stops its run at the
    next minibatch boundary, saving its checkpoint — waits for them, and raises
    KeyboardInterrupt again.
    """
    from distributed import wait
    echo = echo or (lambda line: None)
    data_dir = str(Path(data_dir).resolve()) if data_dir else None
    loop = _Loop(runs, client, data_dir, echo, progress, retry_seconds, stop_file)
    try:
        loop.submit_ready()
        while loop.futures:
            try:
                done, _ = wait(list(loop.futures), timeout=runner.NOTICE_SECONDS, return_when="FIRST_COMPLETED")
            except TimeoutError:            # nothing ended within the notice interval
                done = []
            loop.notice()
            for future in done:
                loop.collect(future)
            loop.submit_ready()
    except KeyboardInterrupt:
        _stop(loop, echo)
        raise
    return loop.results


def _stop(loop, echo):
    """Ask every running task to stop at its next boundary and wait for them to save."""
    from distributed import wait
    if not loop.stop_file or not loop.futures:
        return
    Path(loop.stop_file).touch()
    echo(f"stopping {len(loop.futures)} run(s) at their next minibatch boundary (checkpoints saved)…")
    try:
        wait(list(loop.futures), timeout=STOP_GRACE_SECONDS)
    except Exception:           # a second Ctrl-C or a timeout: the checkpoints written so far stay
        pass
    for future in list(loop.futures):
        if future.done():
            loop.collect(future)


def _delayed_stage(delay, spec, data_dir, stop_file):
    if delay:
        time.sleep(delay)
    return stage_task(spec, data_dir, stop_file)
