"""Scoring logits against targets, shared by the dense and the packed engines."""

import numpy as np


def score(logits, targets):
    """(summed negative log-likelihood in nats, predictions, correct predictions).

    logits (..., C) of any float type (scored in float64), targets (...) int.
    """
    C = logits.shape[-1]
    z = logits.astype(np.float64).reshape(-1, C)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    y = np.asarray(targets).reshape(-1)
    nll = float(-logp[np.arange(y.size), y].sum())
    return nll, y.size, int((logp.argmax(axis=1) == y).sum())
