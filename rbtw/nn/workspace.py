"""Reuse of the large per-pass buffers from one training step to the next.

A fresh 26 MB array costs more in page faults than the arithmetic done on it (the kernel
zero-fills every page on first touch), and a training step of the fused LSTM allocates a few
hundred MB of caches.  :func:`empty` hands out an array from a pool instead, but only one that
nothing outside the pool refers to any more: a cache that is still alive, or any view of the
array (a view holds its base), keeps it out of circulation.  So reuse can never alias live data.
Idle arrays are kept (steady training then allocates nothing) until they exceed IDLE_LIMIT
bytes; the next request that none of them fits then drops them all (a change of shape, e.g.
evaluation batches, does not pile arrays up without bound).
"""

import sys

import numpy as np

_pool = {}             # (shape, dtype) -> [arrays]
IDLE_LIMIT = 1 << 30   # bytes of idle arrays kept before a miss drops them all


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
    if idle_bytes() > IDLE_LIMIT:
        clear()
        arrays = _pool.setdefault(key, [])
    arr = np.empty(key[0], key[1])
    arrays.append(arr)
    return arr


def idle_bytes():
    return sum(a.nbytes for arrays in _pool.values() for a in arrays if _is_free(a))


def clear():
    """Drop every array that is not in use (those in use stay with their owners)."""
    for key in list(_pool):
        _pool[key] = [a for a in _pool[key] if not _is_free(a)]
        if not _pool[key]:
            del _pool[key]
