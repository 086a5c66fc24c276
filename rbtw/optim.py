"""Optimisers and learning-rate schedules, updating flat dicts of parameters in place.

Adam (bias-corrected, as the official code writes it):

    m ← β1·m + (1 − β1)·g,      v ← β2·v + (1 − β2)·g²
    a_t = lr · sqrt(1 − β2^t) / (1 − β1^t)
    step = a_t · m / (sqrt(v) + ε),    optionally clipped element-wise to ±clip[name]
    W ← W − step

In binary mode the official code clips the step of each quantized matrix to ±α, never the
latent W itself, and resets Adam's moments and step counter every 500 minibatches and at
each epoch (``reset_every`` and :meth:`Adam.reset`).

SGD: W ← W − lr·g, after scaling all gradients together so that their global L2 norm is at
most ``clip_norm`` (word-level PTB: lr 20, clip 0.25, lr ÷ 4 when validation stops improving).

Schedules: :func:`geometric` decays from lr0 to lr_end over the epochs (2e-3 → 1e-3 in the
paper's presets); :class:`Plateau` divides the rate by a factor when a metric stops improving;
:func:`warmdown` multiplies either by a per-minibatch factor that falls from 1 to ``to`` over
the last ``frac`` of a run's S minibatches (s = 0 … S − 1, s0 = (1 − frac)·S):

    p(s) = clip((s + 1 − s0) / (S − s0), 0, 1)          p = 1 at the last minibatch
    cosine: factor = to + (1 − to)·½·(1 + cos(π·p))
    linear: factor = 1 − (1 − to)·p

so a budgeted run ends at a small rate whatever its length (a constant rate leaves it short of
the optimum it is circling).  :func:`planned_rate` is the rate a run's configuration plans for
each minibatch (an epoch's rate times the warm-down's factor), which decides whether two
schedules share their first minibatches (:func:`first_rate_change`: rbtw.train.branch, and
rbtw.sweep.spec before a study's arms are trained).
"""

import math

import numpy as np


def global_norm(grads):
    """sqrt(Σ ||g||²) over every gradient in the dict."""
    return math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))


def clip_by_global_norm(grads, max_norm):
    """Scale all gradients by min(1, max_norm / global norm); returns (grads, norm before)."""
    norm = global_norm(grads)
    if norm > max_norm > 0:
        scale = max_norm / norm
        grads = {k: g * scale for k, g in grads.items()}
    return grads, norm


class Adam:
    """Adam with optional element-wise step clipping and periodic state reset."""

    def __init__(self, lr, beta1=0.9, beta2=0.999, eps=1e-8, clip=None, reset_every=None):
        self.lr = lr
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.clip = dict(clip or {})     # parameter name -> bound on |step|
        self.reset_every = reset_every   # minibatches between resets of m, v and t
        self.m, self.v = {}, {}
        self.t = 0

    def reset(self):
        """Forget the moments and restart the bias correction (t = 0)."""
        self.m, self.v = {}, {}
        self.t = 0

    def step(self, params, grads):
        """Update ``params`` in place from ``grads`` (same keys; missing grads are skipped)."""
        if self.reset_every and self.t >= self.reset_every:
            self.reset()
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        a_t = self.lr * math.sqrt(1.0 - b2 ** self.t) / (1.0 - b1 ** self.t)
        for name, g in grads.items():
            if name not in params:
                continue
            W = params[name]
            m = self.m.setdefault(name, np.zeros_like(W))
            v = self.v.setdefault(name, np.zeros_like(W))
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * g * g
            step = a_t * m / (np.sqrt(v) + self.eps)
            bound = self.clip.get(name)
            if bound is not None:
                np.clip(step, -bound, bound, out=step)
            W -= step.astype(W.dtype, copy=False)

    def state_dict(self):
        """Arrays and scalars to checkpoint (flat: "m/<name>", "v/<name>", "t")."""
        out = {"t": np.array(self.t)}
        out.update({f"m/{k}": v for k, v in self.m.items()})
        out.update({f"v/{k}": v for k, v in self.v.items()})
        return out

    def load_state_dict(self, state):
        self.t = int(state["t"])
        self.m = {k[2:]: np.array(v) for k, v in state.items() if k.startswith("m/")}
        self.v = {k[2:]: np.array(v) for k, v in state.items() if k.startswith("v/")}


def state_problem(state, params):
    """What is wrong with an optimiser state read from a file, for these ``params`` (None:
    nothing): "t" must be a whole number >= 0, and every other entry one of Adam's moments
    "m/<name>" or "v/<name>" of a parameter, with its shape and dtype."""
    t = state.get("t")
    if t is None or np.ndim(t) != 0 or np.asarray(t).dtype.kind not in "iu" or int(t) < 0:
        return "its step count t is missing or not a whole number >= 0"
    for key, value in state.items():
        if key == "t":
            continue
        moment, _, name = key.partition("/")
        if moment not in ("m", "v") or name not in params:
            return f"it has an unexpected entry {key!r}"
        W = params[name]
        if value.shape != W.shape or value.dtype != W.dtype:
            return (f"{key} is {value.dtype} {tuple(value.shape)}, its parameter "
                    f"{W.dtype} {tuple(W.shape)}")
    return None


class SGD:
    """Plain SGD with optional clipping of the global gradient norm."""

    def __init__(self, lr, clip_norm=None):
        self.lr = lr
        self.clip_norm = clip_norm
        self.t = 0

    def reset(self):
        """Nothing to forget (kept so that trainers can treat optimisers alike)."""

    def step(self, params, grads):
        if self.clip_norm:
            grads, _ = clip_by_global_norm(grads, self.clip_norm)
        self.t += 1
        for name, g in grads.items():
            if name in params:
                params[name] -= (self.lr * g).astype(params[name].dtype, copy=False)

    def state_dict(self):
        return {"t": np.array(self.t)}

    def load_state_dict(self, state):
        self.t = int(state["t"])


def geometric(lr0, lr_end, epochs, epoch):
    """Rate for ``epoch`` (0-based) decaying geometrically from lr0 to lr_end at the last epoch."""
    if epochs <= 1 or lr_end is None:
        return lr0
    frac = min(epoch, epochs - 1) / (epochs - 1)
    return lr0 * (lr_end / lr0) ** frac


WARMDOWNS = ("none", "cosine", "linear")


def warmdown(kind, step, total, frac=0.25, to=0.01):
    """Factor on the rate at minibatch ``step`` (0-based) of ``total`` (see the module docstring)."""
    if kind == "none" or total <= 0 or frac <= 0:
        return 1.0
    if kind not in WARMDOWNS:
        raise ValueError(f"unknown warm-down {kind!r}")
    s0 = (1.0 - frac) * total
    p = min(max((step + 1 - s0) / (total - s0), 0.0), 1.0)
    if kind == "cosine":
        return to + (1.0 - to) * 0.5 * (1.0 + math.cos(math.pi * p))
    return 1.0 - (1.0 - to) * p


# the rate a run's configuration plans (rbtw.config.TrainConfig), per epoch and per minibatch


def epoch_rate(config, epoch, sgd_rate):
    """An epoch's rate before the warm-down: Adam's geometric schedule (``lr_end``), or SGD's
    current plateau rate ``sgd_rate``."""
    c = config
    return sgd_rate if c.optimizer == "sgd" else geometric(c.lr, c.lr_end, c.epochs, epoch)


def warmdown_factor(config, n_batches, step):
    """The warm-down's factor on the rate at minibatch ``step`` (0-based, over the whole run).

    The warm-down spans the first ``lr_warmdown_epochs`` (default: all) epochs of
    ``n_batches`` minibatches; past its end the factor stays at ``lr_warmdown_to``.
    """
    c = config
    span = (c.lr_warmdown_epochs or c.epochs) * n_batches
    return warmdown(c.lr_warmdown, step, span, c.lr_warmdown_frac, c.lr_warmdown_to)


def planned_rate(config, n_batches, step):
    """The rate planned for minibatch ``step``: the epoch's rate times the warm-down's factor
    (an SGD run's plateau rate is state, carried by the checkpoint: its base rate counts here)."""
    return epoch_rate(config, step // n_batches, config.lr) * warmdown_factor(config, n_batches, step)


def first_rate_change(old, new, n_batches, done):
    """The first of the minibatches 0 … done − 1 whose planned rate differs, or None."""
    return next((s for s in range(done) if planned_rate(old, n_batches, s) != planned_rate(new, n_batches, s)),
                None)


class Plateau:
    """Divide the rate by ``factor`` whenever the metric (lower is better) fails to improve."""

    def __init__(self, lr, factor=4.0):
        self.lr = lr
        self.factor = factor
        self.best = math.inf

    def update(self, metric):
        """Record one validation result; returns the rate for the next epoch."""
        if metric < self.best:
            self.best = metric
        else:
            self.lr /= self.factor
        return self.lr

    def state_dict(self):
        return {"lr": self.lr, "best": self.best}

    def load_state_dict(self, state):
        self.lr = float(state["lr"])
        self.best = float(state["best"])
