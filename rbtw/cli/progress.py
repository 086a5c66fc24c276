"""Progress shown on a terminal: bars driven by the library's progress callbacks."""

import sys

import click


class EpochBar:
    """A click progress bar per epoch, driven by the trainer's progress callback."""

    def __init__(self):
        self.bar, self.epoch = None, None

    def __call__(self, run, loss):
        if self.epoch != run.epoch:
            self.close()
            self.epoch = run.epoch
            self.bar = click.progressbar(length=run.n_batches(), label=f"epoch {run.epoch + 1}/{run.config.epochs}",
                                         file=sys.stderr, show_pos=True, show_eta=True,
                                         item_show_func=lambda item: "" if item is None else f"loss {item:.3f}")
            self.bar.__enter__()
            self.bar.update(run.batch_index - 1)
        self.bar.update(1, loss)

    def close(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


class Progress:
    """A click bar driven by progress(done, total) calls; a no-op until the first call."""

    def __init__(self, label):
        self.label, self.bar, self.done = label, None, 0

    def __enter__(self):
        return self

    def __call__(self, done, total):
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
    """One click bar per file label, on a terminal only: progress(label, done, total)."""

    def __init__(self):
        self.bar, self.label, self.done = None, None, 0

    def __enter__(self):
        return self

    def __call__(self, label, done, total):
        if not sys.stderr.isatty() or not total:
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
    """A progress bar on a terminal (None elsewhere): a callback to call after each batch."""
    if not sys.stderr.isatty() or total <= 1:
        return None
    bar = click.progressbar(length=total, label=label, file=sys.stderr)
    bar.__enter__()
    done = [0]

    def tick():
        bar.update(1)
        done[0] += 1
        if done[0] >= total:
            bar.__exit__(None, None, None)
    return tick


class RunProgress:
    """Runs done of a sweep: a bar on a terminal, a plain line per run elsewhere; ``say`` prints a
    line without tearing the bar."""

    def __init__(self, label, total):
        self.label, self.total, self.done, self.bar = label, total, 0, None

    def __enter__(self):
        if sys.stderr.isatty():
            self.bar = click.progressbar(length=self.total, label=self.label, file=sys.stderr, show_pos=True)
            self.bar.__enter__()
        return self

    def advance(self):
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        else:
            click.echo(f"{self.label}: {self.done}/{self.total} done", err=True)

    def say(self, line):
        click.echo(("\n" if self.bar is not None else "") + line, err=True)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
        return False
