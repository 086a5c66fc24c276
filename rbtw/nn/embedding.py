"""Token inputs: a learned embedding lookup, and a fixed one-hot encoding.

Dimensions: V vocabulary, E embedding size; ids have any shape S (e.g. (T, B)).

    embedding:  y = E[ids]           E (V, E)     dE[v] = Σ_{ids = v} dy
    one-hot:    y = onehot(ids, V)   no parameters, no gradient

:class:`OneHot` stands for onehot(ids, V) without building it: a recurrent layer's input
product x W_x^q is then the row gather W_x^q[ids], and xᵀ db the scatter-add of db into the
rows ids (see rbtw.nn.cell.input_matmul, input_grads).
"""

import numpy as np


def init_params(V, E, rng, dtype=np.float32, scale=0.1):
    """Embedding table initialised uniformly in [−scale, scale]."""
    return {"E": rng.uniform(-scale, scale, size=(V, E)).astype(dtype)}


def forward(ids, params):
    """ids (S) int -> y (S, E)."""
    return params["E"][ids], (ids, params["E"].shape)


def backward(dy, cache):
    """Returns None (ids take no gradient) and {"E": (V, E)}."""
    ids, shape = cache
    dE = np.zeros(shape, dtype=dy.dtype)
    np.add.at(dE, ids.reshape(-1), dy.reshape(-1, shape[1]))
    return None, {"E": dE}


def check_ids(ids, V):
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= V):
        raise ValueError(f"token id outside the vocabulary of {V}")
    return ids


def onehot(ids, V, dtype=np.float32):
    """ids (S) int -> (S, V) with a single 1 per row."""
    ids = check_ids(ids, V)
    out = np.zeros(ids.shape + (V,), dtype=dtype)
    np.put_along_axis(out, ids[..., None], 1, axis=-1)
    return out


class OneHot:
    """onehot(ids, V) as a layer input, never materialised: ids (T, B) int, shape (T, B, V)."""

    def __init__(self, ids, V, dtype=np.float32):
        self.ids = check_ids(ids, V)
        self.V = V
        self.dtype = np.dtype(dtype)

    @property
    def shape(self):
        return self.ids.shape + (self.V,)

    def dense(self):
        return onehot(self.ids, self.V, self.dtype)
