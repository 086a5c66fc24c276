"""Evaluation of a model on a split: the float model under any convention, or any engine.

Metrics: bits per character (BPC) = mean cross-entropy / ln 2; perplexity = exp(mean
cross-entropy per word); accuracy for the classifier.

Evaluation defaults to what hardware runs: population statistics and deterministic weights.
``eval_stats="batch"`` with ``eval_weights="sampled"`` is the official code's convention
(docs/design.md §2).
"""

import math

import numpy as np

from rbtw.config import metric_name
from rbtw.errors import UserError
from rbtw.metrics import score

__all__ = ["Stop", "evaluate", "evaluate_engine", "metric_name"]


class Stop(KeyboardInterrupt):
    """Raised at a batch boundary when a stop was asked for (Ctrl-C during training)."""


def evaluate(params, stats, spec, data, split, config, *, weights=None, batch_stats=None, rng=None,
             max_batches=None, should_stop=None):
    """Evaluate the float model on one split (see :func:`evaluate_engine`).

    Defaults come from the config: deterministic weights and population statistics unless it
    says otherwise.
    """
    from rbtw import models
    weights = weights or config.eval_weights
    batch_stats = (config.eval_stats == "batch") if batch_stats is None else batch_stats
    rng = rng if rng is not None else np.random.default_rng([config.seed, 7919])
    engine = models.DenseEngine(params, stats, spec, weights=weights, batch_stats=batch_stats, rng=rng)
    return evaluate_engine(engine, data, split, config, max_batches=max_batches, should_stop=should_stop)


# what hardware runs, and what the packed engine and the emulator always run: the configuration
# fields of the "population" convention below
HARDWARE = {"eval_weights": "deterministic", "eval_stats": "population"}

# evaluation conventions (docs/design.md §2): name -> (weights, batch statistics), and their labels
CONVENTIONS = {"population": ("deterministic", False), "official": ("sampled", True),
               "expected": ("expected", False)}
CONVENTION_LABELS = {"population": "population statistics, deterministic weights",
                     "official": "batch statistics, sampled weights (official)",
                     "expected": "population statistics, expected weights"}


def batch_limit(config, max_batches):
    """How many minibatches an evaluation runs at most (None: all): ``max_batches`` None means
    the run's own cap (``config.eval_max_batches``), 0 the whole split, n that many."""
    return config.eval_max_batches if max_batches is None else (max_batches or None)


def evaluate_engine(engine, data, split, config, *, max_batches=None, should_stop=None, progress=None):
    """Evaluate an engine (dense or packed) on one split.

    Char LM: segments of T from the start of the split, each from the initial state; word LM:
    contiguous streams with the state carried; classifier: the split's examples in order.
    ``max_batches``: see :func:`batch_limit` (None: the run's cap, 0: the whole split).
    Returns {"loss": nats per prediction, metric: value, "n": predictions, "cut": whether
    the limit stopped it before the split's end}.
    ``should_stop()``, when given, is asked before every batch; True raises :class:`Stop`.
    ``progress(done, total)``, when given, is called after every batch.
    """
    from rbtw.tasks import count_batches
    max_batches = batch_limit(config, max_batches)
    nll, n, correct, cut = 0.0, 0, 0, False
    state = None
    B = config.eval_batch_size
    total = count_batches(data, split, config, B) if progress is not None else 0
    total = min(total, max_batches) if max_batches is not None else total
    for k, (inputs, targets) in enumerate(data.batches(split, config, batch=B)):
        if max_batches is not None and k >= max_batches:
            cut = True
            break
        if should_stop is not None and should_stop():
            raise Stop
        if engine.kind == "word" and state is not None and state[0][0].shape[0] != inputs.shape[1]:
            state = None
        logits, final = engine.forward(inputs, state)
        b_nll, b_n, b_correct = score(logits, targets)
        nll, n, correct = nll + b_nll, n + b_n, correct + b_correct
        if engine.kind == "word":
            state = [tuple(np.array(s, copy=True) for s in layer) for layer in final]   # carried
        if progress is not None:
            progress(k + 1, max(total, k + 1))
    if n == 0:
        raise UserError(f"the {split} split is too small for one batch")
    return dict(metrics_of(engine.kind, nll / n, n, correct), cut=cut)


def metrics_of(kind, mean_loss, n, correct):
    """{"loss", "n", metric} from the mean loss (nats per prediction) and the correct count."""
    out = {"loss": mean_loss, "n": n}
    if kind == "char":
        out["bpc"] = mean_loss / math.log(2)
    elif kind == "word":
        out["perplexity"] = math.exp(mean_loss)
    else:
        out["accuracy"] = correct / n
    return out
