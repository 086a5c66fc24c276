"""A run's configuration: TrainConfig, the task table, the presets, and every rule about them.

This module owns what a configuration may be, whichever surface it comes from (the CLI, the
Python API, a sweep file, a reproduction): the fields and their types, their domains, which
options apply to which task, cell, quantization and optimiser, how a user's spelling is
normalised ("fp" is "none", 0 means "no limit"), and what a resumed or branched run may change.

    TrainConfig(**fields)        names, types and domains checked at construction
    config.validate()            ... and the rules between fields, and which options apply
    check_fields(dict, base)     the same checks for a table of fields as a user wrote them
    build_config(task, preset, *tables, **options)   a preset with the user's fields laid over it

Every surface (``rbtw train``, ``rbtw.fit``, sweep files, ``rbtw reproduce``) goes through these,
so each refuses the same mistakes with the same one-line UserError, which names the field.
An option that the run would ignore (dropout on a char model, step_clip on full precision,
lr_end with SGD) is refused unless it holds its default value, which leaves it unset.

Presets: ``paper`` (the official code's settings per task) and ``quick`` (minutes on 2 cores):

    task        T    batch  H     epochs  optimiser
    ptb_char    100  64     1000  50      Adam 2e-3
    warpeace    100  64     512   200     Adam 2e-3 → 1e-3
    linux       100  64     512   200     Adam 2e-3 → 1e-3
    text8       180  64     2000  100     Adam 1e-3
    mnist       784  100    100   200     Adam 4e-3 → 1e-3   (1 pixel per step, last h, noise 0.1 on h0)
    ptb_word    35   64     300   80      SGD 20, ÷4 on plateau, clip 0.25, dropout 0.5, emb 300

text (your own file, ``rbtw train text --file PATH``): the character settings of ptb_char.
quick: the same models scaled down (H 128, H 64 for mnist/pmnist; a capped number of
minibatches per epoch, except the small embedded ``default`` corpus, which trains and evaluates
on all of it) so that a run takes a few minutes on 2 cores; it shows trends, not the paper's
numbers.
(docs/design.md §1 gives the method these settings train, §1.9 the paper preset.)
"""

import math
import numbers
import os
from dataclasses import asdict, dataclass, fields

from rbtw.errors import UserError, finite_number, is_bool
from rbtw.kinds import CELLS, MODEL_KINDS
from rbtw.optim import WARMDOWNS
from rbtw.quant import EVAL_WEIGHTS, MODES

# task name -> model kind
TASKS = {
    "default": "char", "ptb_char": "char", "warpeace": "char", "linux": "char", "text8": "char",
    "ptb_word": "word", "mnist": "classify", "pmnist": "classify", "text": "char",
}
METRICS = {"char": "bpc", "word": "perplexity", "classify": "accuracy"}

N_PIXELS = 784                # sequential MNIST: pixels of an image, fed pixels_per_step at a time
TEXT_SPLITS = (0.9, 0.05, 0.05)   # task "text": train/valid/test fractions unless text_split says
LIMITS = ("adam_reset", "eval_max_batches", "max_batches")   # 0 (or None): no limit
MAX_COUNT = 2 ** 31 - 1       # sizes and counts: ids and indices are int32
MAX_SEED = 2 ** 63 - 1

# the values a field may take by name; "fp" is also accepted for quant (normalise)
CHOICES = {
    "task": tuple(TASKS), "cell": CELLS, "quant": MODES,
    "optimizer": ("adam", "sgd"), "lr_warmdown": WARMDOWNS,
    "eval_weights": EVAL_WEIGHTS, "eval_stats": ("population", "batch"),
    "dtype": ("float32", "float64"),
}
# command-line spelling of the fields whose option is not --FIELD-WITH-DASHES
_OPTIONS = {"text_file": "--file", "text_split": "--split", "stochastic": "--stochastic/--deterministic",
            "bn": "--bn/--no-bn", "step_clip": "--step-clip/--no-step-clip"}
_NOT_ON_THE_COMMAND_LINE = ("plateau_factor", "text_sha256", "log_every")


@dataclass(init=False)
class TrainConfig:
    """Everything that defines a run.  Presets fill these in; every surface can override each.

    Made by name only: ``TrainConfig(hidden=256, quant="ternary")``.  Construction checks every
    field's name, type and domain (:func:`check_field`) and normalises its spelling;
    :meth:`validate` also checks the rules between fields and which options apply.
    """

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

    def __init__(self, *args, **values):
        if args:
            raise UserError("TrainConfig takes its fields by name, e.g. TrainConfig(hidden=256)")
        checked = check_fields(values)
        for f in fields(self):
            setattr(self, f.name, checked.get(f.name, f.default))

    @classmethod
    def field_names(cls):
        return [f.name for f in fields(cls)]

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict):
            raise UserError(f"a configuration is a dict of TrainConfig fields, not {type(d).__name__}")
        return cls(**check_fields(d))

    @property
    def kind(self):
        """The model kind of the task: "char", "word" or "classify"."""
        return TASKS[self.task]

    @property
    def eval_batch_size(self):
        """Sequences (char LM, classifier) or streams (word LM) of one evaluation minibatch."""
        return self.eval_batch or self.batch

    @property
    def t_max(self):
        """Time steps of one training sequence: 784 / pixels_per_step for the classifier, else T."""
        return N_PIXELS // self.pixels_per_step if self.kind == "classify" else self.seq_len

    def validate(self, scope=True):
        """Check every field (type, domain), the rules between fields and, for the fields of
        ``scope`` (True: all; False: none, as a resumed run, made by the rules of its day, is
        not judged again; or a collection of names), that an option set to
        anything but its default applies to this task, cell, quantization and optimiser.
        Returns self; raises a one-line UserError naming the first field at fault."""
        for f in fields(self):
            setattr(self, f.name, check_field(f.name, getattr(self, f.name)))
        for name, ok, why in BETWEEN_FIELDS:
            if not ok(self):
                raise UserError(f"{_named(name)}: {why}")
        for name, applies, why in OPTION_SCOPE:
            if (scope is True or (scope and name in scope)) and not applies(self) and getattr(self, name) != default(name):
                raise UserError(f"{_named_value(name, getattr(self, name))} does not apply: {why}; this run is "
                                f"{self.task} ({self.kind}) with {self.quant} weights and {self.optimizer}")
        return self


def default(name):
    """The dataclass default of field ``name``: the value that leaves an option unset."""
    return TrainConfig.__dataclass_fields__[name].default


def option_name(name):
    """How a field is written on the command line, e.g. "--seq-len" (for messages)."""
    return _OPTIONS.get(name, "--" + name.replace("_", "-"))


def _named(name):
    """A field as messages name it: "hidden (--hidden)", or just the name off the command line."""
    return name if name in _NOT_ON_THE_COMMAND_LINE else f"{name} ({option_name(name)})"


def _named_value(name, value):
    """A field set to ``value`` as messages name it: "dropout (--dropout) 0.3", and a flag by
    the half of its pair that sets it: "stochastic=True (--stochastic)"."""
    option = option_name(name)
    if isinstance(value, bool) and "/" in option:
        on, off = option.split("/")
        return f"{name}={value} ({on if value else off})"
    return f"{_named(name)} {value!r}"


# ---------------------------------------------------------------------------------------------
# one field: its type, its domain, its spelling


def _whole(lo, hi=MAX_COUNT):
    return (lambda v: lo <= v <= hi), f"a whole number from {lo:,} to {hi:,}"


_DOMAINS = {
    **{name: _whole(1) for name in ("hidden", "layers", "seq_len", "batch", "epochs", "log_every", "eval_batch",
                                    "checkpoint_every", "lr_warmdown_epochs")},
    **{name: _whole(0) for name in ("emb", "adam_reset", "max_batches", "eval_max_batches")},
    "seed": _whole(0, MAX_SEED),
    "pixels_per_step": (lambda v: 1 <= v <= N_PIXELS and N_PIXELS % v == 0, f"a divisor of {N_PIXELS}"),
    "dropout": (lambda v: 0 <= v < 1, "a probability in [0, 1)"),
    "h0_noise": (lambda v: v >= 0, "a number ≥ 0"),
    "lr": (lambda v: v > 0, "a number > 0"),
    "lr_end": (lambda v: v > 0, "a number > 0"),
    "clip_norm": (lambda v: v > 0, "a number > 0"),
    "plateau_factor": (lambda v: v >= 1, "a number ≥ 1"),
    "lr_warmdown_frac": (lambda v: 0 < v <= 1, "a fraction in (0, 1]"),
    "lr_warmdown_to": (lambda v: 0 <= v <= 1, "a fraction in [0, 1]"),
    "text_file": (lambda v: v != "", "a path"),
    "text_sha256": (lambda v: len(v) == 64 and all(c in "0123456789abcdef" for c in v), "64 hex digits"),
    "text_split": (lambda v: valid_split(v), "three positive fractions summing to 1"),
    **{name: ((lambda v, c=choices: v in c), "one of " + ", ".join(choices)) for name, choices in CHOICES.items()},
}


def _field_types():
    """field -> (base type, None allowed) from the dataclass annotations."""
    out = {}
    for f in fields(TrainConfig):
        parts = getattr(f.type, "__args__", (f.type,))
        out[f.name] = (next(p for p in parts if p is not type(None)), type(None) in parts)
    return out


_TYPES = _field_types()


def _typed(name, value):
    """``value`` as the field's type (ints stay whole, floats finite, paths str), or raise."""
    base, optional = _TYPES[name]
    if value is None and optional:
        return None
    if base is bool and is_bool(value):
        return bool(value)
    if base is int and not is_bool(value) and _is_integer(value):
        return int(value)
    if base is float and not is_bool(value) and isinstance(value, numbers.Real):
        return finite_number(value, _named(name))
    if base is str and isinstance(value, (str, os.PathLike)) and (name == "text_file" or isinstance(value, str)):
        return os.fspath(value)
    if base is list and isinstance(value, (list, tuple)):
        return list(value)
    wanted = {int: "a whole number", float: "a number", bool: "true or false", str: "a string",
              list: "a list"}[base]
    raise UserError(f"{_named(name)} must be {wanted}{' or None' if optional else ''}, not {value!r}")


def _is_integer(value):
    return isinstance(value, numbers.Integral)


def check_field(name, value):
    """One field's value in canonical form (its type, its spelling), or a one-line UserError
    naming the field: an unknown name, a wrong type (a bool is not a number, 32.7 is not a
    whole number), a number that is not finite, or a value outside the field's domain."""
    if name not in _TYPES:
        raise UserError(f"unknown configuration field {name!r}")
    value = normalise({name: value})[name]
    value = _typed(name, value)
    if value is not None and name in _DOMAINS:
        ok, what = _DOMAINS[name]
        if not ok(value):
            raise UserError(f"{_named(name)} must be {what}, not {value!r}")
    if name == "text_split" and value is not None:
        value = [float(x) for x in value]
    return value


def check_fields(values, base=None):
    """Check a dict of TrainConfig fields as a user wrote them (a sweep file's table, ``fit``'s
    keywords, a JSON config); returns them in canonical form.

    Each name must be a field and each value of its type and in its domain (:func:`check_field`).
    With ``base`` (a TrainConfig, or a dict of fields with the task), the fields laid over it
    must also make a valid configuration as a whole: the rules between fields, and that each
    field given applies to the task, cell, quantization and optimiser (:meth:`TrainConfig.validate`
    with the given fields in scope; as :func:`build_config` judges fields laid over a preset).
    Raises a one-line UserError naming the field at fault.
    """
    if not isinstance(values, dict):
        raise UserError(f"configuration fields come as a table (a dict), not {type(values).__name__}")
    unknown = [k for k in values if not isinstance(k, str) or k not in _TYPES]
    if unknown:
        raise UserError(f"unknown configuration field(s): {', '.join(sorted(map(repr, unknown)))}")
    checked = {name: check_field(name, value) for name, value in values.items()}
    if base is not None:
        merged = base.to_dict() if isinstance(base, TrainConfig) else check_fields(base)
        TrainConfig(**dict(merged, **checked)).validate(scope=set(checked))
    return checked


def valid_split(split):
    """True for three positive fractions summing to 1."""
    try:
        parts = [float(x) for x in split]
    except (TypeError, ValueError, OverflowError):      # OverflowError: an int beyond float's range
        return False
    return (len(parts) == 3 and all(math.isfinite(x) for x in parts) and min(parts) > 0
            and abs(sum(parts) - 1) < 1e-6)


def metric_name(kind):
    """The metric of a model kind: "bpc", "perplexity" or "accuracy"."""
    return METRICS[kind]


def task_metric(task):
    """The metric of a task (through its model kind, TASKS)."""
    return METRICS[TASKS[task]]


HIGHER_IS_BETTER = ("accuracy",)    # every other metric: lower is better


def improvement(metric, before, after):
    """How much ``after`` improves on ``before`` under ``metric`` (negative: it is worse)."""
    return after - before if metric in HIGHER_IS_BETTER else before - after


def normalise(values):
    """A copy of ``values`` (TrainConfig fields) in canonical spelling: quant "fp" is "none";
    0 for a limit (``LIMITS``) means no limit (None)."""
    out = dict(values)
    if out.get("quant") == "fp":
        out["quant"] = "none"
    for name in LIMITS:
        if name in out and not is_bool(out[name]) and _is_integer(out[name]) and out[name] == 0:
            out[name] = None
    return out


# ---------------------------------------------------------------------------------------------
# rules between fields: (field blamed, holds for the config?, why not)

BETWEEN_FIELDS = [
    ("emb", lambda c: c.kind != "word" or c.emb > 0, "the word LM needs an embedding size > 0"),
    ("text_file", lambda c: c.task != "text" or c.text_file is not None, "the text task needs a file"),
]

# which options apply: (field, applies to the config?, why not).  A field at its default
# (``default``) is unset and always accepted; any other value must apply.
OPTION_SCOPE = [
    ("dropout", lambda c: c.kind == "word", "it applies to the word LM only"),
    ("emb", lambda c: c.kind == "word", "it applies to the word LM only"),
    ("seq_len", lambda c: c.kind != "classify",
     "it applies to language models (sMNIST's steps are 784 / --pixels-per-step)"),
    ("pixels_per_step", lambda c: c.kind == "classify", "it applies to mnist/pmnist only"),
    ("h0_noise", lambda c: c.kind == "classify", "it applies to mnist/pmnist only"),
    ("stochastic", lambda c: c.quant != "none", "it applies to binary/ternary weights only"),
    ("step_clip", lambda c: c.optimizer == "adam" and c.quant != "none",
     "it clips Adam's steps of binary/ternary weights only"),
    ("adam_reset", lambda c: c.optimizer == "adam", "it applies to Adam only"),
    ("lr_end", lambda c: c.optimizer == "adam", "it applies to Adam only"),
    ("plateau_factor", lambda c: c.optimizer == "sgd", "it applies to SGD only"),
    *((name, lambda c: c.lr_warmdown != "none", "it applies with --lr-warmdown cosine or linear only")
      for name in ("lr_warmdown_frac", "lr_warmdown_to", "lr_warmdown_epochs")),
    ("eval_weights", lambda c: c.quant != "none" and c.stochastic,
     "other weights than deterministic exist for stochastically trained binary/ternary models only"),
    ("eval_stats", lambda c: c.bn, "a model without batch norm has no statistics"),
    *((name, lambda c: c.task == "text", "it belongs to the text task only")
      for name in ("text_file", "text_split", "text_sha256")),
]


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
    The fields the user gives are judged (:meth:`TrainConfig.validate`); a preset's setting
    that the user's choices make inapplicable (mnist's ``lr_end`` after ``optimizer="sgd"``)
    falls back to its default instead.
    """
    if not isinstance(task, str) or task not in TASKS:
        raise UserError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    if not isinstance(preset, str) or preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    given = {}
    for layer in (*layers, {k: v for k, v in overrides.items() if v is not None}):
        given.update(check_fields(layer))
    config = TrainConfig(**dict(PRESETS[preset][task], task=task, **given))
    return _without_inert_settings(config, given).validate(scope=set(given))


def _without_inert_settings(config, given):
    """``config`` with the settings nobody gave (not in ``given``) that do not apply reset to
    their defaults."""
    for name, applies, _ in OPTION_SCOPE:
        if name not in given and not applies(config):
            setattr(config, name, default(name))
    return config


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
    values.update(check_fields({k: v for k, v in given.items() if v is not None}))
    return TrainConfig(**values)
