"""The trainer: epochs of minibatches, checkpoints, Ctrl-C, resume, branch.

A run lives in one directory (rbtw.rundir: config.json, metrics.jsonl, checkpoint.npz).  The
checkpoint is written atomically at the start, at the end of every epoch, every
``checkpoint_every`` minibatches, and on Ctrl-C.

A checkpoint only ever holds the state at a minibatch boundary.  Ctrl-C (SIGINT) or SIGTERM does
not interrupt a minibatch: it sets a flag, and the loop stops at the next boundary (a minibatch,
an evaluation batch, or the end of a checkpoint write), saves and raises KeyboardInterrupt.
Evaluation changes no state, so an interrupted evaluation is simply redone on resume.

``resume`` continues from the checkpoint exactly: the batch order of an epoch comes from
(seed, epoch) alone, and the generator that draws quantized weights and dropout masks is
restored from its saved state, so an interrupted and resumed run ends with the same weights
and the same test metric as an uninterrupted one, bit for bit.  Resuming trims events that
lie past the checkpoint from metrics.jsonl (they were logged after the state that was saved),
so the log holds each training event once.

Schedules: an epoch's rate (Adam's geometric decay to ``lr_end``, or SGD's plateau rate) times
a per-minibatch warm-down factor (rbtw.optim.warmdown_factor).  :func:`branch` copies a run to
continue under another schedule that shares what it has trained so far.
"""

import math
import shutil
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from rbtw import models, optim
from rbtw.optim import epoch_rate, first_rate_change, warmdown_factor
from rbtw.checkpoint import load_checkpoint, save_checkpoint
from rbtw.config import BRANCHABLE, TrainConfig, metric_name, resume_config
from rbtw.errors import UserError, is_finite, is_real, quoted
from rbtw.evaluate import Stop, evaluate
from rbtw.fileio import atomic_path, is_temporary
from rbtw.rundir import RunDir
from rbtw.symbols import recorded
from rbtw.tasks import check_fits, load_task_data, model_spec


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class Diverged(UserError):
    """The run ended far worse than a uniform guess: it diverged (the checkpoint is kept)."""


class Interrupted(KeyboardInterrupt):
    """Training stopped on request (Ctrl-C, SIGTERM) at a minibatch boundary, checkpoint saved.

    out_dir   the run directory, to resume
    signal    the signal that asked for the stop (None: a KeyboardInterrupt raised otherwise)
    """

    def __init__(self, out_dir, signal=None):
        super().__init__(f"interrupted: checkpoint saved in {out_dir}")
        self.out_dir, self.signal = out_dir, signal


DIVERGED_FACTOR = 1.5    # a loss above 1.5 × the uniform guess's is a failed run


def chance_loss(n_out):
    """Cross-entropy (nats) of a uniform guess over ``n_out`` classes."""
    return math.log(max(n_out, 2))


# ---------------------------------------------------------------------------------------------
# schedules


def make_optimizer(config, spec):
    if config.optimizer == "sgd":
        return optim.SGD(config.lr, clip_norm=config.clip_norm)
    clip_steps = config.step_clip if config.step_clip is not None else config.quant == "binary"
    clip = models.quantized_names(spec) if clip_steps else {}
    return optim.Adam(config.lr, clip=clip, reset_every=config.adam_reset)


class EpochPlan:
    """The minibatches of each epoch: their order depends on (seed, epoch) only; ``max_batches``
    caps an epoch."""

    def __init__(self, data, config):
        self.data, self.config = data, config
        self._n = None

    def batches(self, epoch):
        """(inputs, targets) of every minibatch of ``epoch``, in the epoch's order."""
        rng = np.random.default_rng([self.config.seed, 3, epoch])
        batches = self.data.batches("train", self.config, rng)
        if self.config.max_batches is not None:
            batches = (b for k, b in zip(range(self.config.max_batches), batches))
        return batches

    @property
    def n_batches(self):
        if self._n is None:
            self._n = sum(1 for _ in self.data.batches("train", self.config, np.random.default_rng(0)))
            if self.config.max_batches is not None:
                self._n = min(self._n, self.config.max_batches)
        return self._n


def check_diverged(result, split, n_out, out_dir):
    """Raise Diverged when an evaluation's loss is not finite or far worse than a uniform guess."""
    limit = DIVERGED_FACTOR * chance_loss(n_out)
    if not math.isfinite(result["loss"]) or result["loss"] > limit:
        raise Diverged(
            f"the run diverged: {split} loss {result['loss']:.4g} nats is far worse than a uniform guess "
            f"({chance_loss(n_out):.3f} nats); try a smaller --lr (checkpoint kept in {out_dir})")


# ---------------------------------------------------------------------------------------------
# memory


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
        T = config.t_max
        B = min(max(config.batch, config.eval_batch or 0), len(data.train[0]))
        n_in, T_out = config.pixels_per_step, 1
    else:
        T = min(config.seq_len, len(data.train))
        n_seg = max(len(data.train) // T, 1)
        B = min(max(config.batch, config.eval_batch or 0), n_seg)
        n_in, T_out = (config.emb or data.n_in), T
    gates = 4 if config.cell == "lstm" else 3
    weights = gates * H * (n_in + H) + (L - 1) * gates * H * 2 * H + (H + 1) * V
    if config.kind == "word":
        weights += data.n_in * config.emb
    activations = L * T * B * H * 32 + 3 * T_out * B * V + T * B * n_in
    stats = 4 * config.t_max * L * (2 * gates * H + H) if config.bn else 0
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


# ---------------------------------------------------------------------------------------------
# Ctrl-C


class StopFlag:
    """A stop asked for by Ctrl-C (SIGINT), SIGTERM or a caller, honoured at the next boundary.

    While installed (in the main thread only), SIGINT — when Python's default handler has it —
    and SIGTERM — when at its default, which kills at once — set the flag; a second signal
    raises KeyboardInterrupt at once.  A signal someone else handles, or ignores, is left alone
    (e.g. SIGINT of a background job of a non-interactive shell).
    """

    def __init__(self):
        self.requested = False
        self.signal = None          # the signal that asked for the stop, if one did
        self._previous = {}

    def request(self):
        self.requested = True

    def check(self):
        """Raise :class:`Stop` if a stop was asked for."""
        if self.requested:
            raise Stop

    def _on_signal(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt  # a second signal: leave now; the last checkpoint stays
        self.requested = True
        self.signal = signum

    def install(self):
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_signal)
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_signal)

    def restore(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


# ---------------------------------------------------------------------------------------------
# checkpoints of a run


def _run_meta(run):
    """What a checkpoint records besides the arrays: configuration, position, RNG and schedule."""
    return {
        "config": run.config.to_dict(), "spec": run.spec.to_dict(), "vocab": run.data.vocab,
        "symbols": run.data.symbols,
        "task": run.config.task, "epoch": run.epoch, "batch_index": run.batch_index,
        "step": run.step, "rng": run.rng.bit_generator.state, "plateau": run.plateau.state_dict(),
        "best": run.best, "optimizer_t": int(run.opt.t), "epoch_losses": run.epoch_losses,
    }


def _save_run(run, path=None):
    extra = {}
    for k, layer in enumerate(run.carry or ()):
        for j, s in enumerate(layer):
            extra[f"carry/{k}/{j}"] = s
    save_checkpoint(path or run.dir.checkpoint_path, _run_meta(run), run.params, run.stats, run.opt.state_dict(),
                    extra)


def _resume_problem(meta):
    """What is wrong with the parts of a checkpoint's meta only a resume reads (None: nothing):
    the plateau schedule's state, the best validation loss so far and the epoch's losses (the
    random generator's state is checked where it is set: _restore_rng)."""
    plateau = meta.get("plateau")
    if not (isinstance(plateau, dict) and is_finite(plateau.get("lr")) and plateau["lr"] > 0
            and is_real(plateau.get("best"))):
        return f"its plateau schedule's state is {quoted(plateau)}"
    if not (meta.get("best") is None or is_real(meta["best"])):
        return f"its best validation loss is {quoted(meta['best'])}"
    losses = meta.get("epoch_losses", [])
    if not (isinstance(losses, list) and all(is_real(x) for x in losses)):
        return f"its epoch losses are {quoted(losses)}"
    return None


def _restore_rng(state):
    """A generator in the saved ``state``, or a one-line UserError."""
    rng = np.random.default_rng()
    try:
        rng.bit_generator.state = state
    except (TypeError, ValueError, KeyError):
        raise UserError(f"the checkpoint cannot be resumed: its random generator's state is {quoted(state)}") from None
    return rng


def _restore_run(run, ckpt):
    meta = ckpt.meta
    problem = _resume_problem(meta)
    if problem:
        raise UserError(f"the checkpoint cannot be resumed: {problem}")
    if run.data.vocab is not None and meta.get("vocab") != run.data.vocab:
        raise UserError("the checkpoint's vocabulary does not match the data set")
    try:
        models.check_model_arrays(ckpt.params, run.spec, ckpt.stats)
    except ValueError as e:
        raise UserError(f"the checkpoint does not match its configuration: {e}") from None
    problem = optim.state_problem(ckpt.optimizer, ckpt.params)
    if problem:
        raise UserError(f"the checkpoint's optimiser state does not fit its parameters: {problem}")
    run.params, run.stats = ckpt.params, ckpt.stats
    run.opt.load_state_dict(ckpt.optimizer)
    run.rng = _restore_rng(meta.get("rng"))
    run.epoch, run.batch_index, run.step = meta["epoch"], meta["batch_index"], meta["step"]
    run.epoch_losses = list(meta.get("epoch_losses", []))
    run.plateau.load_state_dict(meta["plateau"])
    run.best = meta["best"]
    run.carry = _carry(ckpt.extra, run.spec, ckpt.params)
    run.dir.write_config(run.config.to_dict())
    run.dir.keep_events(lambda e: not _past_checkpoint(run.epoch, run.step)(e))
    for stale in run.out_dir.iterdir():       # a write cut off by a killed process
        if is_temporary(stale.name):
            stale.unlink(missing_ok=True)


def _carry(extra, spec, params):
    """The word LM's carried state as saved by _save_run: per layer (h, c) for the LSTM or (h,)
    for the GRU, each (B, H) of the parameters' dtype; None when nothing was carried.  Entries
    that do not make exactly that give a one-line UserError."""
    if not extra:
        return None
    per_layer = 2 if spec.cell == "lstm" else 1
    first = next(iter(extra.values()))
    want = {f"carry/{k}/{j}" for k in range(spec.layers) for j in range(per_layer)}
    dtype = params["out.W"].dtype
    if spec.kind != "word" or set(extra) != want or first.ndim != 2 or first.shape[1] != spec.hidden or not all(
            s.shape == first.shape and s.dtype == dtype for s in extra.values()):
        raise UserError(f"the checkpoint's carried state does not fit the model: it holds "
                        f"{', '.join(f'{k} {v.dtype} {tuple(v.shape)}' for k, v in sorted(extra.items()))}")
    return [tuple(extra[f"carry/{k}/{j}"] for j in range(per_layer)) for k in range(spec.layers)]


def _start_run(run):
    """A fresh run: initial parameters and generators, an empty log, the first checkpoint."""
    c = run.config
    run.out_dir.mkdir(parents=True, exist_ok=True)
    run.params, run.stats = models.init(run.spec, np.random.default_rng([c.seed, 1]), np.dtype(c.dtype))
    run.rng = np.random.default_rng([c.seed, 2])
    run.epoch, run.batch_index, run.step = 0, 0, 0
    run.epoch_losses, run.carry, run.best = [], None, None
    run.dir.write_config(c.to_dict())
    run.dir.clear_events()
    run.dir.forget_history()
    run.save()


def _past_checkpoint(epoch, step):
    """Whether a logged event lies past a checkpoint at (epoch, step): events after its step,
    epoch summaries of epochs it has not completed, test results from its step on."""
    def past(event):
        try:
            s = int(event.get("step", 0))
        except (TypeError, ValueError):
            return True
        kind = event.get("event")
        return s > step or (kind == "epoch" and event.get("epoch", 0) >= epoch) or (kind == "test" and s >= step)
    return past


def _open_config(config, rundir, resume):
    """(config, checkpoint or None): a fresh run's config, or a resumed run's from its checkpoint."""
    if not resume:
        if config is None:
            raise UserError("a fresh run needs a configuration")
        return config.validate(), None
    if not rundir.has_checkpoint():
        raise UserError(f"nothing to resume: {rundir.checkpoint_path} does not exist")
    ckpt = load_checkpoint(rundir.checkpoint_path)
    config = resume_config(TrainConfig.from_dict(ckpt.meta["config"]), config)
    if config.epochs < ckpt.meta["epoch"]:
        from rbtw.summary import count
        raise UserError(f"the run has already trained {count(ckpt.meta['epoch'], 'epoch')}; "
                        f"--epochs {config.epochs} cannot shorten it")
    return config.validate(scope=False), ckpt


# ---------------------------------------------------------------------------------------------
# the training loop


class Run:
    """A training run in ``out_dir``: fresh, or resumed from its checkpoint.

    A fresh run replaces whatever run ``out_dir`` held (config.json, metrics.jsonl and the
    checkpoint, which is written at once so that it always belongs to this run).  A resumed
    run takes its configuration from the checkpoint; ``config``, if given, may only raise
    ``epochs`` or change ``checkpoint_every`` (rbtw.config.resume_config).  The caller holds the
    directory's lock (rbtw.runlock.RunLock) while it constructs and runs a Run.
    """

    def __init__(self, config, out_dir, data=None, data_dir=None, resume=False, log=None):
        self.out_dir = Path(out_dir)
        self.dir = RunDir(out_dir)
        self.log = log or (lambda line: print(line, file=sys.stderr))
        config, ckpt = _open_config(config, self.dir, resume)
        symbols = recorded(config.kind, ckpt.meta.get("symbols"), ckpt.meta.get("vocab")) if ckpt else None
        self.data = data if data is not None else load_task_data(config, data_dir, symbols)
        if config.task == "text" and not resume:  # remember which file, and which bytes
            config = replace(config, text_file=str(Path(config.text_file).expanduser().resolve()),
                             text_sha256=self.data.text_sha256)
        self.config = config
        check_memory(config, self.data)
        check_fits(config, self.data)
        self.spec = model_spec(config, self.data)
        self.opt = make_optimizer(config, self.spec)
        self.plateau = optim.Plateau(config.lr, config.plateau_factor)
        self.plan = EpochPlan(self.data, config)
        self.stop = StopFlag()
        self._boundary = True
        if resume:
            _restore_run(self, ckpt)
        else:
            _start_run(self)
        self.saved_step = self.step

    @property
    def stop_signal(self):
        return self.stop.signal

    def request_stop(self):
        """Ask the loop to stop at the next minibatch boundary (what Ctrl-C does)."""
        self.stop.request()

    def save(self):
        """Write the checkpoint; only ever called at a minibatch boundary."""
        _save_run(self)

    def _save_here(self):
        self.save()
        self.saved_step = self.step

    def record(self, **event):
        self.dir.append(**event)

    # -- schedule and batches ------------------------------------------------------------------

    def lr_for_epoch(self, epoch):
        return epoch_rate(self.config, epoch, self.plateau.lr)

    def lr_at(self, epoch, batch_index):
        """The rate for minibatch ``batch_index`` of ``epoch``: the epoch's rate times the warm-down."""
        step = epoch * self.n_batches() + batch_index
        return self.lr_for_epoch(epoch) * warmdown_factor(self.config, self.n_batches(), step)

    def n_batches(self):
        return self.plan.n_batches

    # -- training ------------------------------------------------------------------------------

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
        self.stop.install()
        try:
            while self.epoch < self.config.epochs:
                self._run_epoch(progress)
            return self.finish()
        except KeyboardInterrupt:
            if self._boundary:
                self.save()
                self.record(event="interrupted", epoch=self.epoch, batch=self.batch_index, step=self.step)
            raise
        finally:
            self.stop.restore()

    def _run_epoch(self, progress):
        c = self.config
        lr = self.opt.lr = self.lr_for_epoch(self.epoch)
        if self.batch_index == 0:
            self.opt.reset()  # the official code resets Adam at every epoch
            self.carry = None
            self.epoch_losses = []
        start = time.time()
        for k, (inputs, targets) in enumerate(self.plan.batches(self.epoch)):
            if k < self.batch_index:
                continue  # resumed mid-epoch: these were done before the interruption
            self.stop.check()
            self._boundary = False
            lr = self.opt.lr = self.lr_at(self.epoch, k)
            loss = self.train_batch(inputs, targets)
            self.epoch_losses.append(loss)
            self.batch_index, self.step = k + 1, self.step + 1
            self._boundary = True
            if self.step % c.log_every == 0:
                self.record(event="train", epoch=self.epoch, batch=self.batch_index, step=self.step,
                            loss=loss, lr=lr)
            if c.checkpoint_every and self.batch_index % c.checkpoint_every == 0:
                self._save_here()
            if progress is not None:
                progress(self, loss)
        self._end_epoch(lr, time.time() - start)

    def _end_epoch(self, lr, seconds):
        c = self.config
        valid = evaluate(self.params, self.stats, self.spec, self.data, "valid", c,
                         should_stop=lambda: self.stop.requested)
        name = metric_name(self.spec.kind)
        if c.optimizer == "sgd":
            self.plateau.update(valid["loss"])
        improved = self.best is None or valid["loss"] < self.best
        if improved:
            self.best = valid["loss"]
        train_loss = float(np.mean(self.epoch_losses)) if self.epoch_losses else None
        self.record(event="epoch", epoch=self.epoch, step=self.step, lr=lr, train_loss=train_loss,
                    valid_loss=valid["loss"], **{f"valid_{name}": valid[name]}, seconds=round(seconds, 3))
        self.log(f"epoch {self.epoch + 1}/{c.epochs}: {train_and_valid(name, train_loss, valid)}")
        self.epoch, self.batch_index, self.epoch_losses = self.epoch + 1, 0, []
        if improved:                # first best.npz, then the checkpoint: a resume never skips it
            _save_run(self, self.dir.best_path)
        self._save_here()
        check_diverged(valid, "validation", self.data.n_out, self.out_dir)
        self.stop.check()

    def finish(self):
        """Evaluate the final model on the test split and record it."""
        name = metric_name(self.spec.kind)
        test = evaluate(self.params, self.stats, self.spec, self.data, "test", self.config,
                        should_stop=lambda: self.stop.requested)
        self.record(event="test", epoch=self.epoch, step=self.step, test_loss=test["loss"],
                    **{f"test_{name}": test[name]}, eval_weights=self.config.eval_weights,
                    eval_stats=self.config.eval_stats)
        check_diverged(test, "test", self.data.n_out, self.out_dir)
        return test


def train_and_valid(metric, train_loss, valid):
    """"train bpc 1.90, valid bpc 1.95" in one unit (classifier: loss in nats, accuracy)."""
    if train_loss is None:
        train = "no training minibatch"
    elif metric == "bpc":
        train = f"train bpc {train_loss / math.log(2):.4f}"
    elif metric == "perplexity":
        train = f"train perplexity {math.exp(min(train_loss, 700)):.2f}"
    else:
        train = f"train loss {train_loss:.4f} nats"
    return f"{train}, valid {metric} {valid[metric]:.4f}"


# ---------------------------------------------------------------------------------------------
# branching a run


def branch(src_dir, dst_dir, **changes):
    """Copy the run in ``src_dir`` to ``dst_dir`` with a longer budget or another warm-down.

    The copy continues (``Run(None, dst_dir, resume=True)``) exactly as if it had been started
    with the new settings, because the settings may only change what lies ahead: the epochs
    (not fewer than are done) and the warm-down, as long as every minibatch already trained
    keeps the rate it was trained with (the decay starts later, or ends later and holds its
    end rate: ``lr_warmdown_epochs``).  Two schedules that share their first S minibatches can
    so share one run of them.  Test events are dropped from the copied metrics log.  Returns
    the new TrainConfig.
    """
    src, dst = RunDir(src_dir), RunDir(dst_dir)
    unknown = set(changes) - set(BRANCHABLE)
    if unknown:
        raise UserError(f"a branch may change only {', '.join(BRANCHABLE)}, not {', '.join(sorted(unknown))}")
    if dst.has_checkpoint():
        raise UserError(f"{dst.path} already holds a checkpoint")
    ckpt = load_checkpoint(src.checkpoint_path)
    old = TrainConfig.from_dict(ckpt.meta["config"])
    new = TrainConfig.from_dict(dict(old.to_dict(), **changes)).validate(scope=changes)
    done = ckpt.meta["step"]
    n = done // max(ckpt.meta["epoch"], 1) if ckpt.meta["batch_index"] == 0 else None
    if n is None or ckpt.meta["epoch"] == 0:
        raise UserError("a run can be branched only at the end of an epoch")
    if new.epochs < ckpt.meta["epoch"]:
        from rbtw.summary import count
        raise UserError(f"the run has done {count(ckpt.meta['epoch'], 'epoch')}; a branch cannot have fewer")
    changed = first_rate_change(old, new, n, done)
    if changed is not None:
        raise UserError(f"the new schedule changes the rate of minibatch {changed}, which the run has "
                        f"already trained ({done} done): branch earlier or start the decay later")
    meta = dict(ckpt.meta, config=new.to_dict())
    dst.path.mkdir(parents=True, exist_ok=True)
    save_checkpoint(dst.checkpoint_path, meta, ckpt.params, ckpt.stats, ckpt.optimizer, ckpt.extra)
    if src.best_path.exists():      # the best validation point so far is part of the history
        with atomic_path(dst.best_path) as tmp:
            shutil.copyfile(src.best_path, tmp)
    dst.write_config(new.to_dict())
    dst.write_events([e for e in src.events() if e.get("event") != "test"])
    return new
