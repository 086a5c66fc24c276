"""Minibatches for the trainer.  Legend: T time steps, B batch (columns), N stream length.

char_batches (char LMs, no state carry).  With offset o (random in [0, T) per epoch when an
rng is given, else 0) the stream is cut into K = (N - 1 - o) // T segments
    x_k = ids[o + kT : o + kT + T],   y_k = ids[o + kT + 1 : o + kT + T + 1]
so every symbol after o is a target exactly once; segments are shuffled (rng) and grouped
B at a time into (T, B) arrays, column j being one segment.  Each segment is independent:
the model starts it from h0.

word_batches (word LM, state carried).  The stream is cut into B contiguous columns of
length L = N // B (column j = ids[jL : (j+1)L]) and read in windows of T rows:
    x = cols[i : i+T],   y = cols[i+1 : i+T+1],   i = 0, T, 2T, ...
so column j of one window continues column j of the previous one; the last window may have
fewer than T rows.

mnist_batches.  Rows of (x, y) in shuffled order (rng) or in order (no rng), B at a time.

The last batch of an epoch may have fewer than B columns unless ``drop_last``.
"""

import numpy as np

from rbtw.errors import UserError


def _groups(n, B, rng, drop_last):
    """Index groups of size B over range(n): shuffled when rng is given."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    stop = n - n % B if drop_last else n
    for k in range(0, stop, B):
        yield order[k:k + B]


def char_batches(ids, T, B, rng=None, drop_last=False):
    """One epoch of ``(x, y)``, each int32 (T, B) with y[t] = the symbol after x[t]."""
    ids = np.asarray(ids, dtype=np.int32)
    offset = int(rng.integers(T)) if rng is not None else 0
    n_seg = (len(ids) - 1 - offset) // T
    if n_seg < 1:
        raise UserError(f"a stream of {len(ids):,} symbols is too short for T={T}")
    starts = offset + T * np.arange(n_seg)
    steps = np.arange(T)[:, None]  # (T, 1)
    for group in _groups(n_seg, B, rng, drop_last):
        idx = starts[group][None, :] + steps  # (T, b)
        yield ids[idx], ids[idx + 1]


def word_batches(ids, T, B):
    """One epoch of contiguous ``(x, y)`` windows, each int32 (≤T, B); carry state across."""
    ids = np.asarray(ids, dtype=np.int32)
    L = len(ids) // B
    if L < 2:
        raise UserError(f"a stream of {len(ids):,} symbols is too short for B={B} columns")
    cols = np.ascontiguousarray(ids[:L * B].reshape(B, L).T)  # (L, B)
    for i in range(0, L - 1, T):
        t = min(T, L - 1 - i)
        yield cols[i:i + t], cols[i + 1:i + 1 + t]


def mnist_batches(xs, ys, B, rng=None, drop_last=False):
    """One epoch of ``(x (B, 784) float32, y (B,))`` in shuffled (rng) or stored order."""
    for group in _groups(len(xs), B, rng, drop_last):
        yield xs[group], ys[group]
