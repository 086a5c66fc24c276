"""Presets: ``paper`` (the official code's settings per task) and ``quick`` (minutes on 2 cores).

Each preset maps a task to TrainConfig fields; anything given on the command line wins.

paper (DESIGN.md §1, from the official code):

    task        T    batch  H     epochs  optimiser
    ptb_char    100  64     1000  50      Adam 2e-3
    warpeace    100  64     512   200     Adam 2e-3 → 1e-3
    linux       100  64     512   200     Adam 2e-3 → 1e-3
    text8       180  64     2000  100     Adam 1e-3
    mnist       784  100    100   200     Adam 4e-3 → 1e-3   (1 pixel per step, last h, noise 0.1 on h0)
    ptb_word    35   64     300   80      SGD 20, ÷4 on plateau, clip 0.25, dropout 0.5, emb 300

text (your own file, ``rbtw train text --file PATH``): the character settings of ptb_char.

quick: the same models scaled down (H 128, a capped number of minibatches per epoch) so that
a run takes a few minutes on 2 cores; it shows trends, not the paper's numbers.
"""

from rbtw.errors import UserError
from rbtw.train import TASKS, TrainConfig

_CHAR_PAPER = dict(seq_len=100, batch=64, hidden=1000, epochs=50, lr=2e-3)
_MNIST_PAPER = dict(batch=100, hidden=100, epochs=200, lr=4e-3, lr_end=1e-3, pixels_per_step=1, h0_noise=0.1)
_WORD_PAPER = dict(seq_len=35, batch=64, hidden=300, emb=300, epochs=80, optimizer="sgd", lr=20.0,
                   clip_norm=0.25, dropout=0.5, eval_batch=64)

PAPER = {
    "default": _CHAR_PAPER,
    "ptb_char": _CHAR_PAPER,
    "warpeace": dict(seq_len=100, batch=64, hidden=512, epochs=200, lr=2e-3, lr_end=1e-3),
    "linux": dict(seq_len=100, batch=64, hidden=512, epochs=200, lr=2e-3, lr_end=1e-3),
    "text8": dict(seq_len=180, batch=64, hidden=2000, epochs=100, lr=1e-3),
    "mnist": _MNIST_PAPER,
    "pmnist": _MNIST_PAPER,
    "ptb_word": _WORD_PAPER,
    "text": _CHAR_PAPER,
}

_CHAR_QUICK = dict(seq_len=100, batch=64, hidden=128, epochs=3, max_batches=150, eval_max_batches=40,
                   lr=2e-3)
_MNIST_QUICK = dict(batch=100, hidden=64, epochs=2, max_batches=100, eval_max_batches=20, lr=4e-3,
                    lr_end=1e-3, pixels_per_step=4, h0_noise=0.1)

QUICK = {
    "default": dict(seq_len=100, batch=64, hidden=128, epochs=10, lr=2e-3, eval_max_batches=None),
    "ptb_char": _CHAR_QUICK,
    "warpeace": _CHAR_QUICK,
    "linux": _CHAR_QUICK,
    "text8": _CHAR_QUICK,
    "mnist": _MNIST_QUICK,
    "pmnist": _MNIST_QUICK,
    "ptb_word": dict(seq_len=35, batch=32, hidden=128, emb=128, epochs=3, optimizer="sgd", lr=20.0,
                     clip_norm=0.25, dropout=0.3, max_batches=300, eval_max_batches=60, eval_batch=32),
    "text": dict(seq_len=100, batch=64, hidden=128, epochs=10, max_batches=150, eval_max_batches=40, lr=2e-3),
}

PRESETS = {"paper": PAPER, "quick": QUICK}


def build_config(task, preset="quick", **overrides):
    """A TrainConfig for ``task``: dataclass defaults, then the preset, then ``overrides``.

    Overrides whose value is None are ignored (the CLI passes None for options not given).
    """
    if task not in TASKS:
        raise UserError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    values = {"task": task}
    values.update(PRESETS[preset][task])
    unknown = set(overrides) - set(TrainConfig.field_names())
    if unknown:
        raise UserError(f"unknown option(s): {', '.join(sorted(unknown))}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    for name in ("adam_reset", "eval_max_batches", "max_batches"):
        if values.get(name) == 0:  # 0 from the command line means "no limit"
            values[name] = None
    return TrainConfig(**values).validate()
