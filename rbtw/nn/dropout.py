"""Inverted dropout: keep each unit with probability 1 − p and scale kept units by 1/(1 − p).

    train:  y = x ⊙ mask / (1 − p),  mask ~ Bernoulli(1 − p)      eval: y = x
"""


def forward(x, p, *, train, rng=None):
    """Returns y and the cache (the scaled mask, or None when nothing was dropped)."""
    if not train or p == 0.0:
        return x, None
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    scaled = (rng.random(x.shape) >= p).astype(x.dtype) / (1.0 - p)
    return x * scaled, scaled


def backward(dy, cache):
    return dy if cache is None else dy * cache
