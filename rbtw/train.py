"""Training loop, evaluation, checkpoints and the metrics log.

A run lives in one directory:

    config.json       the full TrainConfig (written once, at the start)
    metrics.jsonl     one JSON object per line: {"event": "train"|"epoch"|"test"|..., ...}
    checkpoint.npz    parameters, BN statistics, optimiser state, RNG state and position;
                      written atomically at the end of every epoch, every
                      ``checkpoint_every`` minibatches if set, and on Ctrl-C

``--resume`` continues from the checkpoint exactly: the batch order of an epoch comes from
(seed, epoch) alone, and the generator that draws quantized weights and dropout masks is
restored from its saved state, so an interrupted and resumed run ends with the same weights
as an uninterrupted one.

Evaluation defaults to what hardware runs: population statistics and deterministic weights.
``eval_stats="batch"`` with ``eval_weights="sampled"`` is the official code's convention.

Metrics: bits per character (BPC) = mean cross-entropy / ln 2; perplexity = exp(mean
cross-entropy per word); accuracy for the classifier.
"""

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, fields
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
    "ptb_word": "word", "mnist": "classify", "pmnist": "classify",
}


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
    # optimisation
    epochs: int = 1
    optimizer: str = "adam"
    lr: float = 2e-3
    lr_end: float | None = None         # geometric decay to this rate at the last epoch (Adam)
    clip_norm: float | None = None      # global gradient-norm clip
    step_clip: bool | None = None       # clip Adam steps of W_x, W_h to ±α; None: binary only
    adam_reset: int | None = 500        # reset Adam every N minibatches (and at every epoch)
    plateau_factor: float = 4.0         # SGD: divide the rate when validation stops improving
    max_batches: int | None = None      # cap on training minibatches per epoch (budgets)
    # evaluation
    eval_batch: int | None = None
    eval_max_batches: int | None = None
    eval_weights: str = "deterministic"
    eval_stats: str = "population"
    # bookkeeping
    seed: int = 0
    dtype: str = "float32"
    log_every: int = 20
    checkpoint_every: int | None = None  # also checkpoint every N minibatches within an epoch

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
            (self.checkpoint_every is None or self.checkpoint_every >= 1, "checkpoint_every must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        return self


# ---------------------------------------------------------------------------------------------
# data


class TaskData:
    """The splits of a task and how to batch them.

    char/word: streams of ids with ``vocab``; classify: (x, y) arrays.
    """

    def __init__(self, kind, train, valid, test, vocab=None, n_in=None, n_out=None, source=None):
        self.kind, self.train, self.valid, self.test = kind, train, valid, test
        self.vocab = vocab
        self.n_in = n_in if n_in is not None else len(vocab)
        self.n_out = n_out if n_out is not None else len(vocab)
        self.source = source

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
    if config.kind == "classify":
        m = load_mnist(data_dir, permuted=config.task == "pmnist", seed=config.seed)
        return TaskData("classify", m.train, m.valid, m.test, n_in=config.pixels_per_step, n_out=10,
                        source=config.task)
    corpus = load_corpus(config.task, data_dir)
    return TaskData(corpus.level, corpus.train, corpus.valid, corpus.test, vocab=list(corpus.vocab),
                    source=config.task)


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
             max_batches=None):
    """Evaluate the float model on one split (see :func:`evaluate_engine`).

    Defaults come from the config: deterministic weights and population statistics unless it
    says otherwise.
    """
    weights = weights or config.eval_weights
    batch_stats = (config.eval_stats == "batch") if batch_stats is None else batch_stats
    rng = rng if rng is not None else np.random.default_rng([config.seed, 7919])
    engine = models.DenseEngine(params, stats, spec, weights=weights, batch_stats=batch_stats, rng=rng)
    return evaluate_engine(engine, data, split, config, max_batches=max_batches)


def evaluate_engine(engine, data, split, config, *, max_batches=None):
    """Evaluate an engine (dense or packed) on one split.

    Char LM: segments of T from the start of the split, each from the initial state; word LM:
    contiguous streams with the state carried; classifier: the split's examples in order.
    Returns {"loss": nats per prediction, metric: value, "n": predictions}.
    """
    max_batches = max_batches if max_batches is not None else config.eval_max_batches
    nll, n, correct = 0.0, 0, 0
    state = None
    B = config.eval_batch or config.batch
    for k, (inputs, targets) in enumerate(data.batches(split, config, batch=B)):
        if max_batches is not None and k >= max_batches:
            break
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


def make_optimizer(config, spec):
    if config.optimizer == "sgd":
        return optim.SGD(config.lr, clip_norm=config.clip_norm)
    clip_steps = config.step_clip if config.step_clip is not None else config.quant == "binary"
    clip = models.quantized_names(spec) if clip_steps else {}
    return optim.Adam(config.lr, clip=clip, reset_every=config.adam_reset)


class Run:
    """A training run in ``out_dir``: fresh, or resumed from its checkpoint."""

    def __init__(self, config, out_dir, data=None, data_dir=None, resume=False, log=None):
        self.out_dir = Path(out_dir)
        self.log = log or (lambda line: print(line, file=sys.stderr))
        ckpt_path = self.out_dir / "checkpoint.npz"
        if resume:
            if not ckpt_path.exists():
                raise UserError(f"nothing to resume: {ckpt_path} does not exist")
            ckpt = load_checkpoint(ckpt_path)
            config = TrainConfig.from_dict(ckpt.meta["config"])
        self.config = config.validate()
        self.data = data if data is not None else load_task_data(config, data_dir)
        self.spec = model_spec(config, self.data)
        self.dtype = np.dtype(config.dtype)
        self.opt = make_optimizer(config, self.spec)
        self.plateau = optim.Plateau(config.lr, config.plateau_factor)
        if resume:
            self._restore(ckpt)
        else:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.params, self.stats = models.init(self.spec, np.random.default_rng([config.seed, 1]), self.dtype)
            self.rng = np.random.default_rng([config.seed, 2])
            self.epoch, self.batch_index, self.step = 0, 0, 0
            self.carry = None
            self.best = None
            with atomic_open(self.out_dir / "config.json", "w") as f:
                json.dump(config.to_dict(), f, indent=2)
            (self.out_dir / "metrics.jsonl").unlink(missing_ok=True)

    # -- checkpoints ---------------------------------------------------------------------------

    def _meta(self):
        return {
            "config": self.config.to_dict(), "spec": self.spec.to_dict(), "vocab": self.data.vocab,
            "task": self.config.task, "epoch": self.epoch, "batch_index": self.batch_index,
            "step": self.step, "rng": self.rng.bit_generator.state, "plateau": self.plateau.state_dict(),
            "best": self.best, "optimizer_t": int(self.opt.t),
        }

    def save(self):
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
        self.plateau.load_state_dict(meta["plateau"])
        self.best = meta["best"]
        carry = {}
        for key, value in ckpt.extra.items():
            _, k, j = key.split("/")
            carry.setdefault(int(k), {})[int(j)] = value
        self.carry = [tuple(carry[k][j] for j in sorted(carry[k])) for k in sorted(carry)] or None

    # -- logging -------------------------------------------------------------------------------

    def record(self, **event):
        event["time"] = round(time.time(), 3)
        with open(self.out_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(event) + "\n")

    # -- training ------------------------------------------------------------------------------

    def lr_for_epoch(self, epoch):
        c = self.config
        if c.optimizer == "sgd":
            return self.plateau.lr
        return optim.geometric(c.lr, c.lr_end, c.epochs, epoch)

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
                f"the loss became {loss} at epoch {self.epoch + 1}, batch {self.batch_index + 1}; "
                f"stopped, the last good checkpoint is kept in {self.out_dir}")
        if c.clip_norm and c.optimizer == "adam":
            grads, _ = optim.clip_by_global_norm(grads, c.clip_norm)
        self.opt.step(self.params, grads)
        if self.spec.kind == "word":
            self.carry = models.detach_state(final)
        return loss

    def run(self, progress=None):
        """Train to the configured number of epochs; returns the final test metrics.

        ``progress(run, loss)`` is called after every minibatch (the CLI draws a bar with it).
        Ctrl-C saves a checkpoint at the current minibatch before re-raising.
        """
        c = self.config
        try:
            while self.epoch < c.epochs:
                self._run_epoch(progress)
        except KeyboardInterrupt:
            self.save()
            self.record(event="interrupted", epoch=self.epoch, batch=self.batch_index)
            raise
        return self.finish()

    def _run_epoch(self, progress):
        c = self.config
        lr = self.lr_for_epoch(self.epoch)
        self.opt.lr = lr
        if self.batch_index == 0:
            self.opt.reset()  # the official code resets Adam at every epoch
            self.carry = None
        start = time.time()
        losses = []
        for k, (inputs, targets) in enumerate(self.epoch_batches(self.epoch)):
            if k < self.batch_index:
                continue  # resumed mid-epoch: these were done before the interruption
            loss = self.train_batch(inputs, targets)
            losses.append(loss)
            self.batch_index = k + 1
            self.step += 1
            if self.step % c.log_every == 0:
                self.record(event="train", epoch=self.epoch, batch=self.batch_index, step=self.step,
                            loss=loss, lr=lr)
            if c.checkpoint_every and self.batch_index % c.checkpoint_every == 0:
                self.save()
            if progress is not None:
                progress(self, loss)
        valid = evaluate(self.params, self.stats, self.spec, self.data, "valid", c)
        name = metric_name(self.spec.kind)
        if c.optimizer == "sgd":
            self.plateau.update(valid["loss"])
        if self.best is None or valid["loss"] < self.best:
            self.best = valid["loss"]
        self.record(event="epoch", epoch=self.epoch, step=self.step, lr=lr,
                    train_loss=float(np.mean(losses)) if losses else None,
                    valid_loss=valid["loss"], **{f"valid_{name}": valid[name]},
                    seconds=round(time.time() - start, 3))
        self.log(f"epoch {self.epoch + 1}/{c.epochs}: train loss {np.mean(losses) if losses else float('nan'):.4f}, "
                 f"valid {name} {valid[name]:.4f}")
        self.epoch += 1
        self.batch_index = 0
        self.save()

    def finish(self):
        """Evaluate the final model on the test split and record it."""
        name = metric_name(self.spec.kind)
        test = evaluate(self.params, self.stats, self.spec, self.data, "test", self.config)
        self.record(event="test", epoch=self.epoch, step=self.step, test_loss=test["loss"],
                    **{f"test_{name}": test[name]}, eval_weights=self.config.eval_weights,
                    eval_stats=self.config.eval_stats)
        return test
