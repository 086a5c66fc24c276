"""Progress of long commands: bars on a terminal, plain periodic lines elsewhere.

When stderr is a terminal, click draws a bar that redraws itself.  Anywhere else (a log file,
a pipe, a batch job) a bar would print nothing until the end, so :class:`Lines` writes one
plain line at most every ``PLAIN_SECONDS`` seconds, and one when the work is done:

    epoch 1/3: 40/150 minibatches (27 %), loss 2.345, 12 s, about 33 s left
"""

import sys
import time

import click

PLAIN_SECONDS = 10.0


def _terminal():
    return sys.stderr.isatty()


def _duration(seconds):
    seconds = int(round(seconds))
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min {seconds % 60:02d} s"


class Lines:
    """Plain progress lines on stderr: ``lines(done, total, note="")``, at most one every
    ``PLAIN_SECONDS`` seconds, and the one that reaches ``total`` if any came before it (work
    done within ``PLAIN_SECONDS`` prints nothing)."""

    def __init__(self, label, unit="", scale=None):
        self.label, self.unit, self.scale = label, unit, scale
        self.start = self.last = time.monotonic()
        self.done = None

    def _amount(self, x):
        return f"{x / self.scale:,.1f}" if self.scale else f"{x:,}"

    def __call__(self, done, total, note=""):
        now = time.monotonic()
        finished = total and done >= total and self.done is not None
        if done == self.done or (not finished and now - self.last < PLAIN_SECONDS):
            return
        self.last, self.done = now, done
        elapsed = now - self.start
        parts = [f"{self.label}: {self._amount(done)}/{self._amount(total)}{' ' + self.unit if self.unit else ''}"
                 + (f" ({100 * done // total} %)" if total else "")]
        if note:
            parts.append(note)
        parts.append(_duration(elapsed))
        left = elapsed * (total - done) / done if total and 0 < done < total else 0
        if left >= 1:
            parts.append(f"about {_duration(left)} left")
        click.echo(", ".join(parts), err=True)


class EpochBar:
    """Training progress per epoch, driven by the trainer's progress callback: a click bar on a
    terminal, plain lines elsewhere (``terminal`` overrides the guess)."""

    def __init__(self, terminal=None):
        self.terminal = _terminal() if terminal is None else terminal
        self.bar, self.lines, self.epoch = None, None, None

    def __call__(self, run, loss):
        label = f"epoch {run.epoch + 1}/{run.config.epochs}"
        if self.epoch != run.epoch:
            self.close()
            self.epoch = run.epoch
            if self.terminal:
                self.bar = click.progressbar(length=run.n_batches(), label=label, file=sys.stderr, show_pos=True,
                                             show_eta=True,
                                             item_show_func=lambda item: "" if item is None else f"loss {item:.3f}")
                self.bar.__enter__()
                self.bar.update(run.batch_index - 1)
            else:
                self.lines = Lines(label, "minibatches")
        if self.bar is not None:
            self.bar.update(1, loss)
        else:
            self.lines(run.batch_index, run.n_batches(), f"loss {loss:.3f}")

    def close(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


class Progress:
    """A click bar (on a terminal) or plain lines driven by progress(done, total) calls; a
    no-op until the first call."""

    def __init__(self, label, unit=""):
        self.label, self.unit, self.bar, self.lines, self.done = label, unit, None, None, 0

    def __enter__(self):
        return self

    def __call__(self, done, total):
        if not _terminal():
            self.lines = self.lines or Lines(self.label, self.unit)
            self.lines(done, total)
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr, show_pos=True,
                                         show_eta=True)
            self.bar.__enter__()
        if done > self.done:
            self.bar.update(done - self.done)
            self.done = done

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
        return False


class ByteBars:
    """One click bar per file label on a terminal, plain lines elsewhere: progress(label, done, total)."""

    def __init__(self):
        self.bar, self.label, self.done, self.lines = None, None, 0, None

    def __enter__(self):
        return self

    def __call__(self, label, done, total):
        if not total:
            return
        if not _terminal():
            if label != self.label:
                self.label, self.lines = label, Lines(label, "MB", scale=1e6)
            self.lines(done, total)
            return
        if label != self.label:
            self.close()
            self.label, self.done = label, 0
            self.bar = click.progressbar(length=total, label=label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.done)
        self.done = done

    def close(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None

    def __exit__(self, *exc):
        self.close()
        return False


def batch_bar(label, total):
    """A callback to call after each batch: a bar on a terminal, plain lines elsewhere (None
    for a single batch)."""
    if total <= 1:
        return None
    done = [0]
    if not _terminal():
        lines = Lines(label, "batches")

        def line():
            done[0] += 1
            lines(done[0], total)
        return line
    bar = click.progressbar(length=total, label=label, file=sys.stderr)
    bar.__enter__()

    def tick():
        bar.update(1)
        done[0] += 1
        if done[0] >= total:
            bar.__exit__(None, None, None)
    return tick


class RunProgress:
    """Runs ended (done or failed) of a sweep: a bar on a terminal, a plain line per run elsewhere; ``say`` prints a
    line without tearing the bar."""

    def __init__(self, label, total):
        self.label, self.total, self.bar = label, total, None
        self.ended = self.failed = 0

    def __enter__(self):
        if sys.stderr.isatty():
            self.bar = click.progressbar(length=self.total, label=self.label, file=sys.stderr, show_pos=True)
            self.bar.__enter__()
        return self

    def advance(self, status="done"):
        """One run ended with ``status`` (done, failed or interrupted); only done and failed
        runs move the count: an interrupted run is still to train."""
        if status == "interrupted":
            return
        self.ended += 1
        self.failed += status == "failed"
        if self.bar is not None:
            self.bar.update(1)
        else:
            failed = f" ({self.failed} failed)" if self.failed else ""
            click.echo(f"{self.label}: {self.ended}/{self.total} ended{failed}", err=True)

    def say(self, line):
        click.echo(("\n" if self.bar is not None else "") + line, err=True)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
        return False
