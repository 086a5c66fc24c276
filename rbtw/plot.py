"""Learning curves from metrics.jsonl logs (needs matplotlib: ``pip install 'rbtw[plot]'``)."""

from pathlib import Path

from rbtw.errors import UserError
from rbtw.fileio import atomic_path


def read_log(path):
    """(log path, events) of a metrics log or a run directory; a damaged line is a UserError."""
    from rbtw.rundir import RunDir
    rd = RunDir.of_log(path)
    if not rd.metrics_path.is_file():
        raise UserError(f"{rd.metrics_path}: no such metrics log")
    return rd.metrics_path, rd.events()


def curves(events):
    """(steps, train losses) and (epochs, validation metric name, values) of one log."""
    train = [(e["step"], e["loss"]) for e in events if e.get("event") == "train"]
    epochs = [e for e in events if e.get("event") == "epoch"]
    metric = next((k for k in (epochs[0] if epochs else {}) if k.startswith("valid_") and k != "valid_loss"), None)
    valid = [(e["epoch"] + 1, e[metric]) for e in epochs] if metric else []
    return train, metric, valid


FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}


def _curves(path, events):
    """curves(events) of the log at ``path``, or a one-line UserError naming it."""
    try:
        return curves(events)
    except (KeyError, TypeError):
        raise UserError(f"{path} is not an rbtw metrics log (events lack their fields)") from None


def plot_logs(paths, out, labels=None):
    """Draw training loss and validation metric of each log into one image at ``out``: PNG,
    PDF or SVG by its suffix."""
    fmt = FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        raise UserError(f"{out}: the image format comes from the suffix: .png, .pdf or .svg")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("plotting needs matplotlib: pip install 'rbtw[plot]'") from None
    drawn = [(path, _curves(path, events)) for path, events in (read_log(p) for p in paths)]
    if not any(train or valid for _, (train, _, valid) in drawn):
        names = ", ".join(str(path) for path, _ in drawn)
        raise UserError(f"{names}: no training or validation events to plot (an empty log, or not an rbtw "
                        "metrics log)")
    fig, (ax_loss, ax_valid) = plt.subplots(1, 2, figsize=(11, 4))
    metric = None
    for k, (path, (train, metric_k, valid)) in enumerate(drawn):
        label = labels[k] if labels else path.parent.name
        metric = metric or metric_k
        if train:
            ax_loss.plot(*zip(*train), label=label, lw=1)
        if valid:
            ax_valid.plot(*zip(*valid), marker="o", label=label)
    ax_loss.set(xlabel="minibatch", ylabel="training loss (nats)", title="training loss")
    ax_valid.set(xlabel="epoch", ylabel=(metric or "valid").replace("_", " "), title="validation")
    for ax in (ax_loss, ax_valid):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=fmt, dpi=110)
    plt.close(fig)
    return Path(out)
