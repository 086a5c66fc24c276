"""Softmax cross-entropy with a mask.

Dimensions: N rows (any leading axes), C classes.

    p = softmax(logits),   loss = Σ_n m_n · (−log p[n, y_n]) / Σ_n m_n

The mask m (0/1 or weights) selects which rows count; with no mask every row counts.
Backward: dlogits = m_n · (p − onehot(y)) / Σ m.
"""

import numpy as np


def log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def forward(logits, targets, mask=None):
    """logits (..., C), targets (...) int, mask (...) or None -> (mean loss, cache)."""
    C = logits.shape[-1]
    logp = log_softmax(logits).reshape(-1, C)
    y = np.asarray(targets).reshape(-1)
    m = np.ones(y.shape, dtype=logits.dtype) if mask is None else np.asarray(mask, dtype=logits.dtype).reshape(-1)
    total = m.sum()
    if total <= 0:
        raise ValueError("the mask selects no rows")
    nll = -logp[np.arange(y.size), y]
    loss = float((m * nll).sum() / total)
    return loss, (logp, y, m, total, logits.shape)


def backward(cache):
    """Gradient of the mean loss w.r.t. the logits, shaped like them."""
    logp, y, m, total, shape = cache
    d = np.exp(logp)
    d[np.arange(y.size), y] -= 1.0
    d *= (m / total)[:, None]
    return d.reshape(shape)
