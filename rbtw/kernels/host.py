"""The host's part of a generated token, for jitted loops: the output layer and the draw.

Dimension legend: H hidden (the last layer's h), V vocabulary.

    logits = h W + b                        W (H, V), b (V,) float32; summed over H in order
    draw:    z = logits / temperature (float64),  w_i = exp(z_i − max z),
             the first id i with w_0 + … + w_i > u·Σw   (u uniform in [0, 1))

The draw is the inverse of the cumulative distribution of softmax(z): id i comes with
probability w_i / Σw.  temperature ≤ 0 means the most likely id (the first of equals), and no
u is used.  Should u·Σw round up to Σw itself, the last id of positive weight is drawn, so an
id of weight 0 never is.  rbtw.generate.draw (a NumPy Generator's uniform) and the packed
engine's and the emulator's fused token loops all draw through ``draw_index``, so the same
logits and uniforms give the same ids everywhere.
"""

import math

import numpy as np
from numba import njit

from rbtw import numba_cache  # noqa: F401  (before any @njit: the cache sees edits to callees)


@njit(cache=True, error_model="numpy")
def output_layer(h, W, b, logits):
    """logits (V,) = h (H,) W (H, V) + b (V,), h outer so the V loop vectorises."""
    H, V = W.shape
    for v in range(V):
        logits[v] = np.float32(0)
    for n in range(H):
        hn = h[n]
        for v in range(V):
            logits[v] += hn * W[n, v]
    for v in range(V):
        logits[v] += b[v]


@njit(cache=True, error_model="numpy")
def draw_index(logits, u, temperature):
    """One id from softmax(logits / temperature) by the uniform ``u`` (module docstring)."""
    V = logits.shape[0]
    best = 0
    for i in range(1, V):
        if logits[i] > logits[best]:
            best = i
    if temperature <= 0:
        return best
    zmax = np.float64(logits[best]) / temperature
    total = 0.0
    for i in range(V):
        total += math.exp(np.float64(logits[i]) / temperature - zmax)
    target = u * total
    acc = 0.0
    for i in range(V):
        acc += math.exp(np.float64(logits[i]) / temperature - zmax)
        if acc > target:
            return i
    acc = 0.0                                   # u·Σw rounded up to Σw: the last id whose
    for i in range(V):                          # weight moved the sum
        acc += math.exp(np.float64(logits[i]) / temperature - zmax)
        if acc >= total:
            return i
    return V - 1
