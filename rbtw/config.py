"""A run's configuration: TrainConfig, the task table, the presets, and every rule about them.

This module owns what a configuration may be, whichever surface it comes from (the CLI, the
Python API, a sweep file, a reproduction): the fields and their types, their domains, which
options apply to which task, cell and quantization, how a user's spelling is normalised
("fp" is "none", 0 means "no limit"), and what a resumed or branched run may change.

Presets: ``paper`` (the official code's settings per task) and ``quick`` (minutes on 2 cores):

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
(docs/design.md §1 gives the method these settings train, §1.9 the paper preset.)
"""

import math
from dataclasses import asdict, dataclass, fields

from rbtw.errors import UserError

# task name -> model kind
TASKS = {
    "default": "char", "ptb_char": "char", "warpeace": "char", "linux": "char", "text8": "char",
    "ptb_word": "word", "mnist": "classify", "pmnist": "classify", "text": "char",
}
METRICS = {"char": "bpc", "word": "perplexity", "classify": "accuracy"}

N_PIXELS = 784                # sequential MNIST: pixels of an image, fed pixels_per_step at a time
TEXT_SPLITS = (0.9, 0.05, 0.05)   # task "text": train/valid/test fractions unless text_split says
WARMDOWNS = ("none", "cosine", "linear")
LIMITS = ("adam_reset", "eval_max_batches", "max_batches")   # 0 (or None): no limit


@dataclass
class TrainConfig:
    """Everything that defines a run.  Presets fill these in; every surface can override each."""

    task: str = "default"
    # model
    cell: str = "lstm"
    hidden: int = 128
    layers: int = 1
    emb: int = 0
    dropout: float = 0.0
    quant: str = "none"
    stochastic: bool = False
    bn: bool = True
    # data
    seq_len: int = 100
    batch: int = 64
    pixels_per_step: int = 1            # sMNIST: 1 pixel per step (784 steps) as in the paper
    h0_noise: float = 0.0               # std of noise on h0 while training (sMNIST: 0.1, see ModelSpec)
    text_file: str | None = None        # task "text": the UTF-8 file (absolute once a run starts)
    text_sha256: str | None = None      # task "text": hash of its bytes, recorded when a run starts
    text_split: list | None = None      # task "text": train/valid/test fractions (None: 90/5/5)
    # optimisation
    epochs: int = 1
    optimizer: str = "adam"
    lr: float = 2e-3
    lr_end: float | None = None         # geometric decay to this rate at the last epoch (Adam)
    clip_norm: float | None = None      # global gradient-norm clip
    step_clip: bool | None = None       # clip Adam steps of W_x, W_h to ±α; None: binary only
    adam_reset: int | None = 500        # reset Adam every N minibatches (and at every epoch)
    plateau_factor: float = 4.0         # SGD: divide the rate when validation stops improving
    lr_warmdown: str = "none"           # per-minibatch decay at the end of the run: none, cosine, linear
    lr_warmdown_frac: float = 0.25      # ... over this fraction of all minibatches of the run
    lr_warmdown_to: float = 0.01        # ... down to this fraction of the epoch's rate
    lr_warmdown_epochs: int | None = None  # ... ending with this epoch; later ones keep its end rate
                                        #     (None: the last epoch; pinned when a run is extended)
    max_batches: int | None = None      # cap on training minibatches per epoch (budgets)
    checkpoint_every: int | None = None  # also checkpoint every N minibatches within an epoch
    # evaluation
    eval_batch: int | None = None
    eval_max_batches: int | None = None
    eval_weights: str = "deterministic"
    eval_stats: str = "population"
    # bookkeeping
    seed: int = 0
    dtype: str = "float32"
    log_every: int = 20

    @classmethod
    def field_names(cls):
        return [f.name for f in fields(cls)]

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        known = set(cls.field_names())
        unknown = set(d) - known
        if unknown:
            raise UserError(f"unknown configuration field(s): {', '.join(sorted(unknown))}")
        return cls(**d)

    @property
    def kind(self):
        """The model kind of the task: "char", "word" or "classify"."""
        return TASKS[self.task]

    @property
    def t_max(self):
        """Time steps of one training sequence: 784 / pixels_per_step for the classifier, else T."""
        return N_PIXELS // self.pixels_per_step if self.kind == "classify" else self.seq_len

    def validate(self):
        """Check every field's domain; returns self (raises UserError on the first problem)."""
        if self.task not in TASKS:
            raise UserError(f"unknown task {self.task!r}; choose from {', '.join(TASKS)}")
        for name in ("lr", "lr_end", "clip_norm", "dropout", "h0_noise", "plateau_factor"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise UserError(f"{name} must be a finite number, not {value}")
        for ok, message in _domain_checks(self):
            if not ok:
                raise UserError(message)
        return self


def _domain_checks(c):
    return [
        (c.cell in ("lstm", "gru"), f"unknown cell {c.cell!r}; choose lstm or gru"),
        (c.quant in ("none", "binary", "ternary"), f"unknown quantization {c.quant!r}"),
        (c.optimizer in ("adam", "sgd"), f"unknown optimizer {c.optimizer!r}"),
        (c.eval_weights in ("deterministic", "sampled", "expected"), f"unknown eval weights {c.eval_weights!r}"),
        (c.eval_stats in ("population", "batch"), f"unknown eval statistics {c.eval_stats!r}"),
        (c.dtype in ("float32", "float64"), f"unknown dtype {c.dtype!r}"),
        (c.hidden >= 1 and c.layers >= 1 and c.batch >= 1 and c.seq_len >= 1, "sizes must be positive"),
        (c.epochs >= 1 and c.lr > 0, "epochs and lr must be positive"),
        (0.0 <= c.dropout < 1.0, "dropout must be in [0, 1)"),
        (c.kind != "word" or c.emb > 0, "the word LM needs --emb > 0"),
        (N_PIXELS % c.pixels_per_step == 0, f"pixels per step must divide {N_PIXELS}"),
        (c.h0_noise >= 0, "h0 noise must be non-negative"),
        (c.lr_warmdown in WARMDOWNS, f"unknown warm-down {c.lr_warmdown!r}; choose none, cosine or linear"),
        (0.0 < c.lr_warmdown_frac <= 1.0, "the warm-down fraction must be in (0, 1]"),
        (0.0 <= c.lr_warmdown_to <= 1.0, "the warm-down end factor must be in [0, 1]"),
        (c.task != "text" or c.text_file is not None, "the text task needs a file (--file PATH)"),
        (c.task == "text" or (c.text_file is None and c.text_split is None),
         "a text file (--file) and its split (--split) belong to the text task only"),
        (c.text_split is None or valid_split(c.text_split),
         f"a split is three positive fractions summing to 1, not {c.text_split}"),
        (c.checkpoint_every is None or c.checkpoint_every >= 1, "checkpoint_every must be positive"),
        (c.lr_warmdown_epochs is None or c.lr_warmdown_epochs >= 1, "the warm-down's last epoch must be positive"),
        (c.seed >= 0, "the seed must be non-negative"),
        (c.log_every >= 1, "log_every must be positive"),
    ]


def valid_split(split):
    """True for three positive fractions summing to 1."""
    try:
        parts = [float(x) for x in split]
    except (TypeError, ValueError):
        return False
    return len(parts) == 3 and min(parts) > 0 and abs(sum(parts) - 1) < 1e-6


def metric_name(kind):
    """The metric of a model kind: "bpc", "perplexity" or "accuracy"."""
    return METRICS[kind]


# ---------------------------------------------------------------------------------------------
# spelling: what a user writes -> a TrainConfig field's value


def normalise(values):
    """A copy of ``values`` (TrainConfig fields) in canonical spelling: quant "fp" is "none";
    0 for a limit (``LIMITS``) means no limit (None)."""
    out = dict(values)
    if out.get("quant") == "fp":
        out["quant"] = "none"
    for name in LIMITS:
        if out.get(name) == 0 and not isinstance(out.get(name), bool):
            out[name] = None
    return out


# ---------------------------------------------------------------------------------------------
# presets

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


def build_config(task, preset="quick", *layers, **overrides):
    """A validated TrainConfig for ``task``: dataclass defaults, the preset, then each dict of
    ``layers`` and the keyword ``overrides`` in turn, each in the user's spelling (normalised).

    Overrides whose value is None are ignored (the CLI passes None for options not given).
    """
    if task not in TASKS:
        raise UserError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    values = {"task": task}
    values.update(PRESETS[preset][task])
    for layer in (*layers, {k: v for k, v in overrides.items() if v is not None}):
        unknown = set(layer) - set(TrainConfig.field_names())
        if unknown:
            raise UserError(f"unknown option(s): {', '.join(sorted(unknown))}")
        values.update(normalise(layer))
    return TrainConfig(**values).validate()


# ---------------------------------------------------------------------------------------------
# which options apply: (field, applies to the config?, why not)

OPTION_SCOPE = [
    ("dropout", lambda c: c.kind == "word", "--dropout applies to the word LM only"),
    ("emb", lambda c: c.kind == "word", "--emb applies to the word LM only"),
    ("stochastic", lambda c: c.quant != "none" or not c.stochastic,
     "--stochastic applies to binary/ternary weights only"),
    ("pixels_per_step", lambda c: c.kind == "classify", "--pixels-per-step applies to mnist/pmnist only"),
    ("h0_noise", lambda c: c.kind == "classify" or c.h0_noise == 0, "--h0-noise applies to mnist/pmnist only"),
    ("step_clip", lambda c: c.optimizer == "adam", "--step-clip applies to Adam only"),
    ("adam_reset", lambda c: c.optimizer == "adam", "--adam-reset applies to Adam only"),
    ("lr_end", lambda c: c.optimizer == "adam", "--lr-end applies to Adam only"),
    ("lr_warmdown_epochs", lambda c: c.lr_warmdown != "none" or c.lr_warmdown_epochs is None,
     "--lr-warmdown-epochs applies with --lr-warmdown cosine or linear only"),
]


def refuse_inapplicable(config, given):
    """Refuse options in ``given`` (field -> value, None: not given) that ``config``'s task,
    cell, quantization or optimiser would ignore."""
    for field, applies, why in OPTION_SCOPE:
        if given.get(field) is not None and not applies(config):
            raise UserError(f"{why}; this run is {config.task} with {config.quant} weights and {config.optimizer}")


# ---------------------------------------------------------------------------------------------
# resuming and branching a run

# Fields a resumed run may change: they extend the run or only change how often it is saved.
RESUME_MAY_CHANGE = ("epochs", "checkpoint_every")
# Fields a branch (rbtw.train.branch) may change: the budget and the warm-down ahead.
BRANCHABLE = ("epochs", "lr_warmdown", "lr_warmdown_frac", "lr_warmdown_to", "lr_warmdown_epochs")


def resume_config(saved, given):
    """The configuration of a resumed run: ``saved`` with the fields ``given`` may change.

    ``given`` (a TrainConfig or None) must agree with ``saved`` in every field that changes
    the run's trajectory; ``epochs`` may be raised to train longer.  A warm-down keeps the
    span it was planned over (``lr_warmdown_epochs`` is pinned to the saved epochs), so the
    added epochs continue at its end rate instead of raising the rate again.
    """
    if given is None:
        return saved
    differ = [f"{name} {getattr(given, name)!r} (the run has {getattr(saved, name)!r})"
              for name in TrainConfig.field_names()
              if name not in RESUME_MAY_CHANGE and getattr(given, name) != getattr(saved, name)]
    if differ:
        raise UserError("a resumed run keeps its own configuration (only the epochs and checkpoint_every "
                        "may change); these options differ: " + "; ".join(differ))
    resumed = dict(saved.to_dict(), **{k: getattr(given, k) for k in RESUME_MAY_CHANGE})
    if saved.lr_warmdown != "none" and saved.lr_warmdown_epochs is None and given.epochs != saved.epochs:
        resumed["lr_warmdown_epochs"] = saved.epochs
    return TrainConfig(**resumed)


def resume_overrides(saved, given):
    """``saved`` with the options ``given`` (field -> value in the user's spelling, None: not
    given) laid over it, for :func:`resume_config` to check."""
    values = saved.to_dict()
    values.update(normalise({k: v for k, v in given.items() if v is not None}))
    return TrainConfig(**values)
