"""Training loop, evaluation, checkpoints and the metrics log.

A run lives in one directory:

    config.json       the full TrainConfig (written once, at the start)
    metrics.jsonl     one JSON object per line: {"event": "train"|"epoch"|"test"|..., ...}
    checkpoint.npz    parameters, BN statistics, optimiser state, RNG state and position;
                      written atomically at the start, at the end of every epoch, every
                      ``checkpoint_every`` minibatches, and on Ctrl-C

A checkpoint only ever holds the state at a minibatch boundary.  Ctrl-C (SIGINT) or SIGTERM does
not interrupt a minibatch: it sets a flag, and the loop stops at the next boundary (a minibatch,
an evaluation batch, or the end of a checkpoint write), saves and raises KeyboardInterrupt.
Evaluation changes no state, so an interrupted evaluation is simply redone on resume.

``--resume`` continues from the checkpoint exactly: the batch order of an epoch comes from
(seed, epoch) alone, and the generator that draws quantized weights and dropout masks is
restored from its saved state, so an interrupted and resumed run ends with the same weights
and the same test metric as an uninterrupted one, bit for bit.  Resuming trims events that
lie past the checkpoint from metrics.jsonl (they were logged after the state that was saved),
so the log holds each training event once.

Evaluation defaults to what hardware runs: population statistics and deterministic weights.
``eval_stats="batch"`` with ``eval_weights="sampled"`` is the official code's convention.

Task "text" trains a character LM on any UTF-8 file (``text_file``), cut 90/5/5 % unless
``text_split`` says otherwise.  A run records the file's absolute path and the sha256 of its
bytes in its configuration; loading the task again (resume, eval) with a file whose bytes
changed is an error.

Metrics: bits per character (BPC) = mean cross-entropy / ln 2; perplexity = exp(mean
cross-entropy per word); accuracy for the classifier.
"""

import json
import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from rbtw import models, optim
from rbtw.checkpoint import load_checkpoint, save_checkpoint
from rbtw.errors import UserError
from rbtw.fileio import atomic_open
from rbtw.metrics import score

# task name -> model kind
TASKS = {
    "default": "char", "ptb_char": "char", "warpeace": "char", "linux": "char", "text8": "char",
    "ptb_word": "word", "mnist": "classify", "pmnist": "classify", "text": "char",
}

# task "text": a character LM on the user's own UTF-8 file, cut train/valid/test by default
TEXT_SPLITS = (0.9, 0.05, 0.05)


@dataclass
class TrainConfig:
    """Everything that defines a run.  Presets fill these in; the CLI can override each."""

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
        return TASKS[self.task]

    def validate(self):
        if self.task not in TASKS:
            raise UserError(f"unknown task {self.task!r}; choose from {', '.join(TASKS)}")
        checks = [
            (self.cell in ("lstm", "gru"), f"unknown cell {self.cell!r}; choose lstm or gru"),
            (self.quant in ("none", "binary", "ternary"), f"unknown quantization {self.quant!r}"),
            (self.optimizer in ("adam", "sgd"), f"unknown optimizer {self.optimizer!r}"),
            (self.eval_weights in ("deterministic", "sampled", "expected"), f"unknown eval weights {self.eval_weights!r}"),
            (self.eval_stats in ("population", "batch"), f"unknown eval statistics {self.eval_stats!r}"),
            (self.dtype in ("float32", "float64"), f"unknown dtype {self.dtype!r}"),
            (self.hidden >= 1 and self.layers >= 1 and self.batch >= 1 and self.seq_len >= 1, "sizes must be positive"),
            (self.epochs >= 1 and self.lr > 0, "epochs and lr must be positive"),
            (0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)"),
            (self.kind != "word" or self.emb > 0, "the word LM needs --emb > 0"),
            (784 % self.pixels_per_step == 0, "pixels per step must divide 784"),
            (self.h0_noise >= 0, "h0 noise must be non-negative"),
            (self.lr_warmdown in optim.WARMDOWNS, f"unknown warm-down {self.lr_warmdown!r}; choose none, cosine or linear"),
            (0.0 < self.lr_warmdown_frac <= 1.0, "the warm-down fraction must be in (0, 1]"),
            (0.0 <= self.lr_warmdown_to <= 1.0, "the warm-down end factor must be in [0, 1]"),
            (self.task != "text" or self.text_file is not None, "the text task needs a file (--file PATH)"),
            (self.task == "text" or (self.text_file is None and self.text_split is None),
             "a text file (--file) and its split (--split) belong to the text task only"),
            (self.text_split is None or _valid_split(self.text_split),
             f"a split is three positive fractions summing to 1, not {self.text_split}"),
            (self.checkpoint_every is None or self.checkpoint_every >= 1, "checkpoint_every must be positive"),
            (self.lr_warmdown_epochs is None or self.lr_warmdown_epochs >= 1,
             "the warm-down's last epoch must be positive"),
            (self.seed >= 0, "the seed must be non-negative"),
            (self.log_every >= 1, "log_every must be positive"),
        ]
        for name in ("lr", "lr_end", "clip_norm", "dropout", "h0_noise", "plateau_factor"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise UserError(f"{name} must be a finite number, not {value}")
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        return self


def _valid_split(split):
    try:
        parts = [float(x) for x in split]
    except (TypeError, ValueError):
        return False
    return len(parts) == 3 and min(parts) > 0 and abs(sum(parts) - 1) < 1e-6


# ---------------------------------------------------------------------------------------------
# data


class TaskData:
    """The splits of a task and how to batch them.

    char/word: streams of ids with ``vocab``; classify: (x, y) arrays.
    """

    def __init__(self, kind, train, valid, test, vocab=None, n_in=None, n_out=None, source=None,
                 text_sha256=None):
        self.kind, self.train, self.valid, self.test = kind, train, valid, test
        self.vocab = vocab
        self.n_in = n_in if n_in is not None else len(vocab)
        self.n_out = n_out if n_out is not None else len(vocab)
        self.source = source
        self.text_sha256 = text_sha256   # task "text": sha256 of the file's bytes

    def batches(self, split, config, rng=None, batch=None):
        """Minibatches of one split as (inputs, targets)."""
        from rbtw.data import char_batches, mnist_batches, word_batches
        data = getattr(self, split)
        B = batch or config.batch
        if self.kind == "char":
            yield from char_batches(data, config.seq_len, B, rng)
        elif self.kind == "word":
            yield from word_batches(data, config.seq_len, B)
        else:
            k = config.pixels_per_step
            for x, y in mnist_batches(data[0], data[1], B, rng):
                yield np.ascontiguousarray(x.reshape(len(x), 784 // k, k).transpose(1, 0, 2)), y


def load_task_data(config, data_dir=None):
    """Load the data set of ``config.task`` (raises UserError with a hint when it is absent)."""
    from rbtw.data import load_corpus, load_mnist
    if config.task == "text":
        return load_text_task(config)
    if config.kind == "classify":
        m = load_mnist(data_dir, permuted=config.task == "pmnist", seed=config.seed)
        return TaskData("classify", m.train, m.valid, m.test, n_in=config.pixels_per_step, n_out=10,
                        source=config.task)
    corpus = load_corpus(config.task, data_dir)
    return TaskData(corpus.level, corpus.train, corpus.valid, corpus.test, vocab=list(corpus.vocab),
                    source=config.task)


def load_text_task(config):
    """The text task: ``config.text_file`` cut by ``config.text_split``, its hash checked.

    Every split must hold more than one segment of ``seq_len`` symbols.
    """
    from rbtw.data import load_text
    splits = tuple(config.text_split or TEXT_SPLITS)
    corpus = load_text(config.text_file, splits, sha256=config.text_sha256)
    for split in ("train", "valid", "test"):
        n = len(getattr(corpus, split))
        if n <= config.seq_len:
            raise UserError(f"{config.text_file}: the {split} split has {n:,} symbols, too few for "
                            f"sequences of {config.seq_len}; use a longer text, a smaller --seq-len "
                            "or another --split")
    return TaskData("char", corpus.train, corpus.valid, corpus.test, vocab=list(corpus.vocab),
                    source=config.text_file, text_sha256=corpus.info["sha256"])


def model_spec(config, data):
    return models.ModelSpec(
        kind=config.kind, n_in=data.n_in, n_out=data.n_out, cell=config.cell, hidden=config.hidden,
        layers=config.layers, emb=config.emb, dropout=config.dropout, quant=config.quant,
        stochastic=config.stochastic, bn=config.bn, h0_noise=config.h0_noise,
        t_max=784 // config.pixels_per_step if config.kind == "classify" else config.seq_len)


# ---------------------------------------------------------------------------------------------
# evaluation


def metric_name(kind):
    return {"char": "bpc", "word": "perplexity", "classify": "accuracy"}[kind]


def evaluate(params, stats, spec, data, split, config, *, weights=None, batch_stats=None, rng=None,
             max_batches=None, should_stop=None):
    """Evaluate the float model on one split (see :func:`evaluate_engine`).

    Defaults come from the config: deterministic weights and population statistics unless it
    says otherwise.
    """
    weights = weights or config.eval_weights
    batch_stats = (config.eval_stats == "batch") if batch_stats is None else batch_stats
    rng = rng if rng is not None else np.random.default_rng([config.seed, 7919])
    engine = models.DenseEngine(params, stats, spec, weights=weights, batch_stats=batch_stats, rng=rng)
    return evaluate_engine(engine, data, split, config, max_batches=max_batches, should_stop=should_stop)


class Stop(KeyboardInterrupt):
    """Raised at a minibatch boundary after a Ctrl-C was noted (see :meth:`Run.run`)."""


def evaluate_engine(engine, data, split, config, *, max_batches=None, should_stop=None):
    """Evaluate an engine (dense or packed) on one split.

    Char LM: segments of T from the start of the split, each from the initial state; word LM:
    contiguous streams with the state carried; classifier: the split's examples in order.
    Returns {"loss": nats per prediction, metric: value, "n": predictions}.
    ``should_stop()``, when given, is asked before every batch; True raises :class:`Stop`.
    """
    max_batches = max_batches if max_batches is not None else config.eval_max_batches
    nll, n, correct = 0.0, 0, 0
    state = None
    B = config.eval_batch or config.batch
    for k, (inputs, targets) in enumerate(data.batches(split, config, batch=B)):
        if max_batches is not None and k >= max_batches:
            break
        if should_stop is not None and should_stop():
            raise Stop
        if engine.kind == "word" and state is not None and state[0][0].shape[0] != inputs.shape[1]:
            state = None
        logits, final = engine.forward(inputs, state)
        b_nll, b_n, b_correct = score(logits, targets)
        nll, n, correct = nll + b_nll, n + b_n, correct + b_correct
        if engine.kind == "word":
            state = models.detach_state(final)
    if n == 0:
        raise UserError(f"the {split} split is too small for one batch")
    mean = nll / n
    out = {"loss": mean, "n": n}
    if engine.kind == "char":
        out["bpc"] = mean / math.log(2)
    elif engine.kind == "word":
        out["perplexity"] = math.exp(mean)
    else:
        out["accuracy"] = correct / n
    return out


# ---------------------------------------------------------------------------------------------
# the training loop


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class Diverged(UserError):
    """The run ended far worse than a uniform guess: it diverged (the checkpoint is kept)."""


# Fields a resumed run may change: they extend the run or only change how often it is saved.
RESUME_MAY_CHANGE = ("epochs", "checkpoint_every")


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
        raise UserError("--resume continues a run as it was configured; these options differ: "
                        + "; ".join(differ))
    resumed = dict(saved.to_dict(), **{k: getattr(given, k) for k in RESUME_MAY_CHANGE})
    if saved.lr_warmdown != "none" and saved.lr_warmdown_epochs is None and given.epochs != saved.epochs:
        resumed["lr_warmdown_epochs"] = saved.epochs
    return TrainConfig(**resumed)


def epoch_rate(config, epoch, sgd_rate):
    """An epoch's rate before the warm-down: Adam's geometric schedule (``lr_end``), or SGD's
    current plateau rate ``sgd_rate``."""
    c = config
    return sgd_rate if c.optimizer == "sgd" else optim.geometric(c.lr, c.lr_end, c.epochs, epoch)


def warmdown_factor(config, n_batches, step):
    """The warm-down's factor on the rate at minibatch ``step`` (0-based, over the whole run).

    The warm-down spans the first ``lr_warmdown_epochs`` (default: all) epochs of
    ``n_batches`` minibatches; past its end the factor stays at ``lr_warmdown_to``.
    """
    c = config
    span = (c.lr_warmdown_epochs or c.epochs) * n_batches
    return optim.warmdown(c.lr_warmdown, step, span, c.lr_warmdown_frac, c.lr_warmdown_to)


def chance_loss(n_out):
    """Cross-entropy (nats) of a uniform guess over ``n_out`` classes."""
    return math.log(max(n_out, 2))


DIVERGED_FACTOR = 1.5    # a loss above 1.5 × the uniform guess's is a failed run


def estimate_peak_bytes(config, data):
    """A rough upper estimate of the training process's peak memory for ``config`` on ``data``.

    Parameters with their latent copies, gradients and Adam moments (≈ 8 copies of every
    weight), plus the activations kept for backpropagation through time: per layer and step
    ≈ 32 B×H numbers (gates before and after BN, c, h, their nonlinearities), and the output
    layer's logits, probabilities and gradient (3 T×B×V), and the BN population statistics,
    which have one row per time step of ``seq_len`` (≈ 4 (2G + H) numbers per step and layer).
    """
    bytes_per = np.dtype(config.dtype).itemsize
    H, L, V = config.hidden, config.layers, data.n_out
    if config.kind == "classify":
        T = 784 // config.pixels_per_step
        B = min(max(config.batch, config.eval_batch or 0), len(data.train[0]))
        n_in, T_out = config.pixels_per_step, 1
    else:
        T = min(config.seq_len, len(data.train))
        n_seg = max(len(data.train) // T, 1)
        B = min(max(config.batch, config.eval_batch or 0), n_seg)
        n_in, T_out = (config.emb or data.n_in), T
    gates = 4 if config.cell == "lstm" else 3
    weights = sum(gates * H * ((n_in if k == 0 else H) + H) for k in range(L)) + (H + 1) * V
    if config.kind == "word":
        weights += data.n_in * config.emb
    activations = L * T * B * H * 32 + 3 * T_out * B * V + T * B * n_in
    t_stats = 784 // config.pixels_per_step if config.kind == "classify" else config.seq_len
    stats = 4 * t_stats * L * (2 * gates * H + H) if config.bn else 0
    return int((8 * weights + activations + stats) * bytes_per)


def available_bytes():
    """Memory the process may still use: MemAvailable, capped by RLIMIT_AS (None: unknown)."""
    import resource
    limits = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append(soft)
    return min(limits) if limits else None


def check_memory(config, data):
    """Refuse a configuration whose estimated peak memory exceeds what is available."""
    need, have = estimate_peak_bytes(config, data), available_bytes()
    if have is not None and need > have:
        raise UserError(f"this run needs about {need / 2**30:,.1f} GiB of memory (hidden {config.hidden}, "
                        f"batch {config.batch}, seq-len {config.seq_len}), more than the "
                        f"{have / 2**30:,.1f} GiB available; choose smaller sizes")


def make_optimizer(config, spec):
    if config.optimizer == "sgd":
        return optim.SGD(config.lr, clip_norm=config.clip_norm)
    clip_steps = config.step_clip if config.step_clip is not None else config.quant == "binary"
    clip = models.quantized_names(spec) if clip_steps else {}
    return optim.Adam(config.lr, clip=clip, reset_every=config.adam_reset)


class Run:
    """A training run in ``out_dir``: fresh, or resumed from its checkpoint.

    A fresh run replaces whatever run ``out_dir`` held (config.json, metrics.jsonl and the
    checkpoint, which is written at once so that it always belongs to this run).  A resumed
    run takes its configuration from the checkpoint; ``config``, if given, may only raise
    ``epochs`` or change ``checkpoint_every`` (:func:`resume_config`).  The caller holds the
    directory's lock (rbtw.runlock.RunLock) while it constructs and runs a Run.
    """

    def __init__(self, config, out_dir, data=None, data_dir=None, resume=False, log=None):
        self.out_dir = Path(out_dir)
        self.log = log or (lambda line: print(line, file=sys.stderr))
        ckpt_path = self.out_dir / "checkpoint.npz"
        if resume:
            if not ckpt_path.exists():
                raise UserError(f"nothing to resume: {ckpt_path} does not exist")
            ckpt = load_checkpoint(ckpt_path)
            saved = TrainConfig.from_dict(ckpt.meta["config"])
            config = resume_config(saved, config)
            if config.epochs < ckpt.meta["epoch"]:
                raise UserError(f"the run has already trained {ckpt.meta['epoch']} epochs; "
                                f"--epochs {config.epochs} cannot shorten it")
        elif config is None:
            raise UserError("a fresh run needs a configuration")
        config = config.validate()
        self.data = data if data is not None else load_task_data(config, data_dir)
        if config.task == "text" and not resume:  # remember which file, and which bytes
            config = replace(config, text_file=str(Path(config.text_file).expanduser().resolve()),
                             text_sha256=self.data.text_sha256)
        self.config = config
        check_memory(config, self.data)
        self.spec = model_spec(config, self.data)
        self.dtype = np.dtype(config.dtype)
        self.opt = make_optimizer(config, self.spec)
        self.plateau = optim.Plateau(config.lr, config.plateau_factor)
        self._stop_requested = False
        self.stop_signal = None            # the signal that asked for the stop, if one did
        self._boundary = True
        if resume:
            self._restore(ckpt)
            self._write_config()
            self._trim_log()
            for stale in self.out_dir.glob(".*.tmp"):   # a write cut off by a killed process
                stale.unlink(missing_ok=True)
        else:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.params, self.stats = models.init(self.spec, np.random.default_rng([config.seed, 1]), self.dtype)
            self.rng = np.random.default_rng([config.seed, 2])
            self.epoch, self.batch_index, self.step = 0, 0, 0
            self.epoch_losses = []
            self.carry = None
            self.best = None
            self._write_config()
            (self.out_dir / "metrics.jsonl").unlink(missing_ok=True)
            self.save()
        self.saved_step = self.step

    # -- checkpoints ---------------------------------------------------------------------------

    def _write_config(self):
        with atomic_open(self.out_dir / "config.json", "w") as f:
            json.dump(self.config.to_dict(), f, indent=2)

    def _meta(self):
        return {
            "config": self.config.to_dict(), "spec": self.spec.to_dict(), "vocab": self.data.vocab,
            "task": self.config.task, "epoch": self.epoch, "batch_index": self.batch_index,
            "step": self.step, "rng": self.rng.bit_generator.state, "plateau": self.plateau.state_dict(),
            "best": self.best, "optimizer_t": int(self.opt.t), "epoch_losses": self.epoch_losses,
        }

    def save(self):
        """Write the checkpoint; only ever called at a minibatch boundary."""
        extra = {}
        if self.carry is not None:
            for k, layer in enumerate(self.carry):
                for j, s in enumerate(layer):
                    extra[f"carry/{k}/{j}"] = s
        save_checkpoint(self.out_dir / "checkpoint.npz", self._meta(), self.params, self.stats,
                        self.opt.state_dict(), extra)

    def _restore(self, ckpt):
        meta = ckpt.meta
        if self.data.vocab is not None and meta.get("vocab") != self.data.vocab:
            raise UserError("the checkpoint's vocabulary does not match the data set")
        try:
            models.check_params(ckpt.params, self.spec)
        except ValueError as e:
            raise UserError(f"the checkpoint does not match its configuration: {e}") from None
        self.params, self.stats = ckpt.params, ckpt.stats
        self.opt.load_state_dict(ckpt.optimizer)
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = meta["rng"]
        self.epoch, self.batch_index, self.step = meta["epoch"], meta["batch_index"], meta["step"]
        self.epoch_losses = list(meta.get("epoch_losses", []))
        self.plateau.load_state_dict(meta["plateau"])
        self.best = meta["best"]
        carry = {}
        for key, value in ckpt.extra.items():
            _, k, j = key.split("/")
            carry.setdefault(int(k), {})[int(j)] = value
        self.carry = [tuple(carry[k][j] for j in sorted(carry[k])) for k in sorted(carry)] or None

    def _trim_log(self):
        """Drop logged events that lie past the checkpoint: the resumed run logs them again.

        Kept: events up to the checkpoint's step; of those, epoch summaries only of epochs the
        checkpoint has completed, and test results only from before its step.
        """
        path = self.out_dir / "metrics.jsonl"
        if not path.exists():
            return
        kept = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                event = json.loads(line)
                step = int(event.get("step", 0))
            except (ValueError, TypeError, AttributeError):
                continue  # a line cut short by a crash
            kind = event.get("event")
            if step > self.step or (kind == "epoch" and event.get("epoch", 0) >= self.epoch) \
                    or (kind == "test" and step >= self.step):
                continue
            kept.append(line + "\n")
        with atomic_open(path, "w") as f:
            f.writelines(kept)

    # -- logging -------------------------------------------------------------------------------

    def record(self, **event):
        event["time"] = round(time.time(), 3)
        with open(self.out_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(event) + "\n")

    # -- Ctrl-C --------------------------------------------------------------------------------

    def request_stop(self):
        """Ask the loop to stop at the next minibatch boundary (what Ctrl-C does)."""
        self._stop_requested = True

    def _should_stop(self):
        return self._stop_requested

    def _check_stop(self):
        if self._stop_requested:
            raise Stop

    def _on_signal(self, signum, frame):
        if self._stop_requested:
            raise KeyboardInterrupt  # a second signal: leave now; the last checkpoint stays
        self._stop_requested = True
        self.stop_signal = signum

    def _install_signals(self):
        """Make SIGINT (when Python's default handler has it) and SIGTERM (when at its default,
        which kills at once) set the stop flag, in the main thread only; returns the handlers
        replaced, to restore.  A signal someone else handles, or ignores, is left alone
        (e.g. SIGINT of a background job of a non-interactive shell)."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_signal)
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_signal)
        return previous

    # -- training ------------------------------------------------------------------------------

    def lr_for_epoch(self, epoch):
        return epoch_rate(self.config, epoch, self.plateau.lr)

    def lr_at(self, epoch, batch_index):
        """The rate for minibatch ``batch_index`` of ``epoch``: the epoch's rate times the warm-down."""
        step = epoch * self.n_batches() + batch_index
        return self.lr_for_epoch(epoch) * warmdown_factor(self.config, self.n_batches(), step)

    def epoch_batches(self, epoch):
        """The minibatches of an epoch: their order depends on (seed, epoch) only."""
        rng = np.random.default_rng([self.config.seed, 3, epoch])
        batches = self.data.batches("train", self.config, rng)
        if self.config.max_batches is not None:
            batches = (b for k, b in zip(range(self.config.max_batches), batches))
        return batches

    def n_batches(self):
        if not hasattr(self, "_n_batches"):
            self._n_batches = sum(1 for _ in self.data.batches("train", self.config, np.random.default_rng(0)))
            if self.config.max_batches is not None:
                self._n_batches = min(self._n_batches, self.config.max_batches)
        return self._n_batches

    def train_batch(self, inputs, targets):
        c = self.config
        state = self.carry if self.spec.kind == "word" else None
        if state is not None and state[0][0].shape[0] != inputs.shape[1]:
            state = None
        loss, grads, final = models.loss_and_grads(self.params, self.stats, self.spec, inputs, targets,
                                                   rng=self.rng, state=state)
        if not math.isfinite(loss):
            raise NonFiniteLoss(
                f"the loss became {loss} at epoch {self.epoch + 1}, batch {self.batch_index + 1}; stopped, "
                f"the last good checkpoint (after {self.saved_step} minibatches) is kept in {self.out_dir}")
        if c.clip_norm and c.optimizer == "adam":
            grads, _ = optim.clip_by_global_norm(grads, c.clip_norm)
        self.opt.step(self.params, grads)
        if self.spec.kind == "word":
            self.carry = models.detach_state(final)
        return float(loss)

    def run(self, progress=None):
        """Train to the configured number of epochs; returns the final test metrics.

        ``progress(run, loss)`` is called after every minibatch (the CLI draws a bar with it).
        Ctrl-C (or SIGTERM, as sent by ``kill``, a batch scheduler or a service manager) in the
        main thread only sets a flag: the loop stops at the next minibatch boundary, saves a
        checkpoint there and raises KeyboardInterrupt.  A second signal leaves at once, keeping
        the last checkpoint written.  A KeyboardInterrupt raised at a
        boundary (e.g. by ``progress``) also saves first.
        """
        c = self.config
        previous = self._install_signals()
        try:
            while self.epoch < c.epochs:
                self._run_epoch(progress)
            return self.finish()
        except KeyboardInterrupt:
            if self._boundary:
                self.save()
                self.record(event="interrupted", epoch=self.epoch, batch=self.batch_index, step=self.step)
            raise
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _save_here(self):
        self.save()
        self.saved_step = self.step

    def _run_epoch(self, progress):
        c = self.config
        lr = self.lr_for_epoch(self.epoch)
        self.opt.lr = lr
        if self.batch_index == 0:
            self.opt.reset()  # the official code resets Adam at every epoch
            self.carry = None
            self.epoch_losses = []
        start = time.time()
        for k, (inputs, targets) in enumerate(self.epoch_batches(self.epoch)):
            if k < self.batch_index:
                continue  # resumed mid-epoch: these were done before the interruption
            self._check_stop()
            self._boundary = False
            lr = self.opt.lr = self.lr_at(self.epoch, k)
            loss = self.train_batch(inputs, targets)
            self.epoch_losses.append(loss)
            self.batch_index = k + 1
            self.step += 1
            self._boundary = True
            if self.step % c.log_every == 0:
                self.record(event="train", epoch=self.epoch, batch=self.batch_index, step=self.step,
                            loss=loss, lr=lr)
            if c.checkpoint_every and self.batch_index % c.checkpoint_every == 0:
                self._save_here()
            if progress is not None:
                progress(self, loss)
        valid = evaluate(self.params, self.stats, self.spec, self.data, "valid", c, should_stop=self._should_stop)
        name = metric_name(self.spec.kind)
        if c.optimizer == "sgd":
            self.plateau.update(valid["loss"])
        if self.best is None or valid["loss"] < self.best:
            self.best = valid["loss"]
        losses = self.epoch_losses
        train_loss = float(np.mean(losses)) if losses else None
        self.record(event="epoch", epoch=self.epoch, step=self.step, lr=lr, train_loss=train_loss,
                    valid_loss=valid["loss"], **{f"valid_{name}": valid[name]},
                    seconds=round(time.time() - start, 3))
        self.log(f"epoch {self.epoch + 1}/{c.epochs}: {self._train_and_valid(train_loss, valid)}")
        self.epoch += 1
        self.batch_index = 0
        self.epoch_losses = []
        self._save_here()
        self._check_diverged(valid, "validation")
        self._check_stop()

    def _train_and_valid(self, train_loss, valid):
        """"train bpc 1.90, valid bpc 1.95" in one unit (classifier: loss in nats, accuracy)."""
        name = metric_name(self.spec.kind)
        if train_loss is None:
            train = "no training minibatch"
        elif name == "bpc":
            train = f"train bpc {train_loss / math.log(2):.4f}"
        elif name == "perplexity":
            train = f"train perplexity {math.exp(min(train_loss, 700)):.2f}"
        else:
            train = f"train loss {train_loss:.4f} nats"
        return f"{train}, valid {name} {valid[name]:.4f}"

    def _check_diverged(self, result, split):
        limit = DIVERGED_FACTOR * chance_loss(self.data.n_out)
        if not math.isfinite(result["loss"]) or result["loss"] > limit:
            raise Diverged(
                f"the run diverged: {split} loss {result['loss']:.4g} nats is far worse than a uniform guess "
                f"({chance_loss(self.data.n_out):.3f} nats); try a smaller --lr (checkpoint kept in {self.out_dir})")

    def finish(self):
        """Evaluate the final model on the test split and record it."""
        name = metric_name(self.spec.kind)
        test = evaluate(self.params, self.stats, self.spec, self.data, "test", self.config,
                        should_stop=self._should_stop)
        self.record(event="test", epoch=self.epoch, step=self.step, test_loss=test["loss"],
                    **{f"test_{name}": test[name]}, eval_weights=self.config.eval_weights,
                    eval_stats=self.config.eval_stats)
        self._check_diverged(test, "test")
        return test


# ---------------------------------------------------------------------------------------------
# branching a run

BRANCHABLE = ("epochs", "lr_warmdown", "lr_warmdown_frac", "lr_warmdown_to", "lr_warmdown_epochs")


def _first_rate_change(old, new, n_batches, done):
    """The first of the minibatches 0 … done − 1 whose planned rate differs, or None.

    The planned rate is the epoch's rate times the warm-down's factor; an SGD run's plateau
    rate is state, carried by the checkpoint, so its base rate counts as ``lr`` here.
    """
    def rate(c, step):
        return epoch_rate(c, step // n_batches, c.lr) * warmdown_factor(c, n_batches, step)
    return next((s for s in range(done) if rate(old, s) != rate(new, s)), None)


def branch(src_dir, dst_dir, **changes):
    """Copy the run in ``src_dir`` to ``dst_dir`` with a longer budget or another warm-down.

    The copy continues (``Run(None, dst_dir, resume=True)``) exactly as if it had been started
    with the new settings, because the settings may only change what lies ahead: the epochs
    (not fewer than are done) and the warm-down, as long as every minibatch already trained
    keeps the rate it was trained with (the decay starts later, or ends later and holds its
    end rate: ``lr_warmdown_epochs``).  Two schedules that
    share their first S minibatches can so share one run of them.  Test events are dropped
    from the copied metrics log.  Returns the new TrainConfig.
    """
    from rbtw.fileio import atomic_open
    src, dst = Path(src_dir), Path(dst_dir)
    unknown = set(changes) - set(BRANCHABLE)
    if unknown:
        raise UserError(f"a branch may change only {', '.join(BRANCHABLE)}, not {', '.join(sorted(unknown))}")
    if (dst / "checkpoint.npz").exists():
        raise UserError(f"{dst} already holds a checkpoint")
    ckpt = load_checkpoint(src / "checkpoint.npz")
    old = TrainConfig.from_dict(ckpt.meta["config"])
    new = TrainConfig.from_dict(dict(old.to_dict(), **changes)).validate()
    done = ckpt.meta["step"]
    n = done // max(ckpt.meta["epoch"], 1) if ckpt.meta["batch_index"] == 0 else None
    if n is None or ckpt.meta["epoch"] == 0:
        raise UserError("a run can be branched only at the end of an epoch")
    if new.epochs < ckpt.meta["epoch"]:
        raise UserError(f"the run has done {ckpt.meta['epoch']} epochs; a branch cannot have fewer")
    changed = _first_rate_change(old, new, n, done)
    if changed is not None:
        raise UserError(f"the new schedule changes the rate of minibatch {changed}, which the run has "
                        f"already trained ({done} done): branch earlier or start the decay later")
    meta = dict(ckpt.meta, config=new.to_dict())
    save_checkpoint(dst / "checkpoint.npz", meta, ckpt.params, ckpt.stats, ckpt.optimizer, ckpt.extra)
    with atomic_open(dst / "config.json", "w") as f:
        json.dump(new.to_dict(), f, indent=2)
    lines = (src / "metrics.jsonl").read_text().splitlines() if (src / "metrics.jsonl").exists() else []
    with atomic_open(dst / "metrics.jsonl", "w") as f:
        f.writelines(line + "\n" for line in lines if line.strip() and json.loads(line).get("event") != "test")
    return new
