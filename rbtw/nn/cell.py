"""What the BN-LSTM and BN-GRU layers share: their static description, weight quantization, the
input products, and the per-pass buffers of the fused implementations.

Dimensions: X input size, H hidden size, G gate rows (4H for the LSTM, 3H for the GRU).
Weights are stored input-major so a batch multiplies from the left: W_x (X, G), W_h (H, G),
b_t = x_t @ W_x^q and a_t = h_{t-1} @ W_h^q.
"""

from dataclasses import asdict, dataclass

import numpy as np

from rbtw import quant
from rbtw.kinds import GATES
from rbtw.nn import bn as bn_
from rbtw.nn import workspace
from rbtw.nn.embedding import OneHot
from rbtw.nn.fused_common import BNStep, scatter_rows, update_running


@dataclass(frozen=True)
class CellSpec:
    """Static description of a recurrent layer.

    kind        "lstm" or "gru"
    X, H        input and hidden sizes
    quant       "none" | "binary" | "ternary" (applies to W_x and W_h only)
    stochastic  stochastic quantization while training
    bn          batch-normalise W_x·x and W_h·h (and c for the LSTM); False gives the
                BinaryConnect-style baseline with a plain bias
    alpha_x/h   quantization scales; None means the rule ½·sqrt(6/(fan_in + G))
    t_max       rows of the per-time-step population statistics
    threshold   the deterministic ternary rule's τ/α (None: 1/3; set by rbtw.calibrate)
    """

    kind: str = "lstm"
    X: int = 1
    H: int = 1
    quant: str = "none"
    stochastic: bool = False
    bn: bool = True
    alpha_x: float | None = None
    alpha_h: float | None = None
    t_max: int = 100
    eps: float = bn_.EPS
    momentum: float = bn_.MOMENTUM
    threshold: float | None = None

    def __post_init__(self):
        if self.kind not in GATES:
            raise ValueError(f"unknown cell {self.kind!r}; expected lstm or gru")
        quant.check_mode(self.quant)

    @property
    def G(self):
        return GATES[self.kind] * self.H

    @property
    def alphas(self):
        """(α_x, α_h) after applying the default rule where none was given."""
        ax = self.alpha_x if self.alpha_x is not None else quant.default_alpha(self.X, self.G)
        ah = self.alpha_h if self.alpha_h is not None else quant.default_alpha(self.H, self.G)
        return ax, ah

    def to_dict(self):
        return asdict(self)


def orthogonal(shape, rng, dtype):
    """A (semi-)orthogonal matrix: orthonormal rows or columns, whichever is fewer."""
    rows, cols = shape
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))  # make the decomposition unique
    if rows < cols:
        q = q.T
    return np.ascontiguousarray(q, dtype=dtype)


def quantized_weights(params, spec, *, train, rng=None, weights="deterministic"):
    """(W_x^q, W_h^q) for one forward pass.

    Training draws a fresh sample when the spec is stochastic; evaluation uses the rule named by
    ``weights`` (see rbtw.quant.EVAL_WEIGHTS).  One sample per matrix, shared by every step.
    """
    ax, ah = spec.alphas
    out = []
    for name, alpha in (("W_x", ax), ("W_h", ah)):
        W = params[name]
        if train:
            out.append(quant.quantize(W, spec.quant, alpha, stochastic=spec.stochastic, rng=rng,
                                      threshold=spec.threshold))
        else:
            out.append(quant.eval_weights(W, spec.quant, alpha, weights, stochastic=spec.stochastic, rng=rng,
                                          threshold=spec.threshold))
    return tuple(out)


def bn_sizes(spec):
    """{BN key: features}: "a" (W_h·h) and "b" (W_x·x) over the G gate rows, "c" (the LSTM's
    cell state) over H; none without BN."""
    if not spec.bn:
        return {}
    return {"a": spec.G, "b": spec.G, **({"c": spec.H} if spec.kind == "lstm" else {})}


def stat_shapes(spec):
    """The shape of every population statistic of the layer, without building them: mean_K and
    var_K (t_max, F), count_K (t_max,) for each BN key K."""
    shapes = {}
    for key, F in bn_sizes(spec).items():
        shapes.update({f"mean_{key}": (spec.t_max, F), f"var_{key}": (spec.t_max, F), f"count_{key}": (spec.t_max,)})
    return shapes


def init_stats(spec, dtype=np.float32):
    """Population statistics of the layer's BNs: keys mean_a/var_a/count_a, mean_b/..., (c)."""
    stats = {}
    for key, F in bn_sizes(spec).items():
        for stat, value in bn_.init_stats(spec.t_max, F, dtype).items():
            stats[f"{stat}_{key}"] = value
    return stats


def stats_view(stats, key):
    """The population statistics of one BN ('a', 'b' or 'c') as a bn-module stats dict."""
    return {s: stats[f"{s}_{key}"] for s in ("mean", "var", "count")}


def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def input_products(x, Wxq, params, stats, spec, use_batch, train, t0):
    """BN_t(x_t W_x^q; γ_b, 0) for every step at once: (T, B, G) and its cache."""
    b = input_matmul(x, Wxq)  # (T, B, G)
    if not spec.bn:
        return b, None
    if use_batch:
        mean, var = bn_.moments(b)
        if train:
            bn_.update_stats_seq(stats_view(stats, "b"), t0, mean, var, spec.momentum)
    else:
        mean, var = bn_.population(stats_view(stats, "b"), t0, b.shape[0])
    return bn_.forward(b, params["gamma_b"], None, mean, var, batch=use_batch, eps=spec.eps)


def input_matmul(x, Wxq, out=None):
    """x W_x^q for every step in one product: x (T, B, X) -> (T, B, G), into ``out`` if given.

    For a :class:`OneHot` x this is the row gather W_x^q[ids].
    """
    T, B, X = x.shape
    if out is None:
        out = np.empty((T, B, Wxq.shape[1]), np.result_type(x.dtype, Wxq.dtype))
    if isinstance(x, OneHot):
        np.take(Wxq, x.ids, axis=0, out=out)
    else:
        np.matmul(x.reshape(T * B, X), Wxq, out=out.reshape(T * B, Wxq.shape[1]))
    return out


def input_grads(x, db, Wxq):
    """From db (N, G), N = T·B: dL/dW_x^q = xᵀ db (X, G) and dL/dx = db W_x^qᵀ (T, B, X).

    For a :class:`OneHot` x: a scatter-add of the rows of db into W_x^q's rows, and dx None.
    """
    if isinstance(x, OneHot):
        dW = np.zeros(Wxq.shape, dtype=db.dtype)
        scatter_rows(np.ascontiguousarray(x.ids.reshape(-1)), db, dW)
        return dW, None
    T, B, X = x.shape
    return x.reshape(T * B, X).T @ db, (db @ Wxq.T).reshape(T, B, X)


def bn_step(u, key, t, params, stats, spec, use_batch, train):
    """BN of one step's (B, F) pre-activations with γ_key, β_key; returns (y, cache)."""
    view = stats_view(stats, key)
    if use_batch:
        mean, var = bn_.moments(u)
        if train:
            bn_.update_stats(view, t, mean, var, spec.momentum)
    else:
        row = min(t, view["mean"].shape[0] - 1)
        mean, var = view["mean"][row], view["var"][row]
    return bn_.forward(u, params[f"gamma_{key}"], params[f"beta_{key}"], mean, var,
                       batch=use_batch, eps=spec.eps)


# ---------------------------------------------------------------------------------------------
# Per-pass buffers of the fused implementations (rbtw.nn.lstm, rbtw.nn.gru)


class FusedCache:
    """Activations of one fused forward pass, each stored once (the fields: see each layer's
    forward_fused)."""

    def __init__(self, **arrays):
        self.__dict__.update(arrays)


def moment_buffers(stats, spec, key, T, F, t0, use_batch, dt):
    """BNStep of (T, F) arrays for one BN ('a', 'b' or 'c') over a pass: mean and var to be
    filled (batch statistics) or the population rows (evaluation); inv to be filled.  Without
    BN, (T, 0) stand-ins."""
    if not spec.bn:
        return BNStep(np.zeros((T, 0), dt), np.zeros((T, 0), dt), np.zeros((T, 0), dt))
    if use_batch:
        mean, var = np.empty((T, F), dt), np.empty((T, F), dt)
    else:
        mean, var = (np.ascontiguousarray(v, dtype=dt) for v in bn_.population(stats_view(stats, key), t0, T))
    return BNStep(mean, var, np.empty((T, F), dt))


def update_running_stats(stats, key, t0, moments, spec):
    """Blend a pass's batch moments (a BNStep of (T, F) arrays) into the population statistics
    of BN ``key``, step by step."""
    view = stats_view(stats, key)
    update_running(view["mean"], view["var"], view["count"], t0, moments.mean.astype(view["mean"].dtype),
                   moments.var.astype(view["var"].dtype), spec.momentum)


def step_inputs(x, Wxq, dt):
    """(ids, braw): the input term of every step for the fused step kernels.  A OneHot x gives
    ids (T, B) (a row gather per step) and braw (T, 0, 0); else ids is (T, 0) and
    braw = x W_x^q (T, B, G) in one GEMM, into a pooled buffer."""
    T, B = x.shape[:2]
    if isinstance(x, OneHot):
        return np.ascontiguousarray(x.ids), np.zeros((T, 0, 0), dt)
    return np.zeros((T, 0), np.int64), input_matmul(x, Wxq, out=workspace.empty((T, B, Wxq.shape[1]), dt))


def at_step(group, t):
    """The same named tuple with every array replaced by its row t: a pass's buffers -> one step's."""
    return type(group)(*(v[t] for v in group))
