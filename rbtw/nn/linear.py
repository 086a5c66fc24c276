"""Fully connected layer (full precision): y = x W + b.

Dimensions: N rows (any leading axes), I inputs, O outputs.  W (I, O), b (O,).
"""

import numpy as np

from rbtw.nn.cell import orthogonal


def init_params(n_in, n_out, rng, dtype=np.float32):
    return {"W": orthogonal((n_in, n_out), rng, dtype), "b": np.zeros(n_out, dtype=dtype)}


def forward(x, params):
    """x (..., I) -> y (..., O)."""
    return x @ params["W"] + params["b"], (x, params["W"])


def backward(dy, cache):
    """Returns dx (..., I) and {"W": (I, O), "b": (O,)}."""
    x, W = cache
    I, O = W.shape
    x2 = x.reshape(-1, I)
    dy2 = dy.reshape(-1, O)
    return dy @ W.T, {"W": x2.T @ dy2, "b": dy2.sum(axis=0)}
