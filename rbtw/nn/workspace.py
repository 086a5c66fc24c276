"""Reuse of the large per-pass buffers from one training step to the next.

A fresh 26 MB array costs more in page faults than the arithmetic done on it (the kernel
zero-fills every page on first touch), and a training step of the fused LSTM allocates a few
hundred MB of caches.  :func:`empty` hands out an array from a pool instead, but only one that
nothing outside the pool refers to any more: a cache that is still alive, or any view of the
array (a view holds its base), keeps it out of circulation.  So reuse can never alias live data.
A request that no idle array fits drops all idle arrays before allocating: steady training
reuses everything, and a change of shape does not pile arrays up.
"""

import sys

import numpy as np

_pool = {}             # (shape, dtype) -> [arrays]


def _refs(arr):
    return sys.getrefcount(arr)


def _calibrate():
    """References an unused pooled array has when looked at from :func:`empty`'s loop."""
    for arr in [np.empty(0)]:
        return _refs(arr) + 1  # + the pool's list (the literal list above is not held elsewhere)


_FREE_REFS = _calibrate()


def _is_free(arr):
    return _refs(arr) <= _FREE_REFS


def empty(shape, dtype):
    """An uninitialised array like np.empty(shape, dtype), reused when a free one fits."""
    key = (tuple(int(s) for s in shape), np.dtype(dtype))
    arrays = _pool.setdefault(key, [])
    for arr in arrays:
        if _is_free(arr):
            return arr
    # a new shape (evaluation batches, another model): let go of the idle arrays first, so
    # the pool holds about one pass's working set rather than one per shape ever seen
    clear()
    arrays = _pool.setdefault(key, [])
    arr = np.empty(key[0], key[1])
    arrays.append(arr)
    return arr


def clear():
    """Drop every array that is not in use (those in use stay with their owners)."""
    for key in list(_pool):
        _pool[key] = [a for a in _pool[key] if not _is_free(a)]
        if not _pool[key]:
            del _pool[key]
