"""Models built from rbtw.nn: a character LM, a word LM and a sequence classifier.

Dimensions: T time, B batch, V vocabulary, E embedding size, H hidden size, C classes.

    char LM:     onehot(ids) (T, B, V) → RNN layers → linear (H → V) → softmax over V
    word LM:     embedding (V → E) → dropout → RNN layers → dropout → linear (H → V);
                 the final state of one window is the initial state of the next
    classifier:  x (T, B, X) → RNN layers → last h_T (B, H) → linear (H → C) → softmax

Only the recurrent matrices W_x, W_h are quantized; embeddings and the output layer stay full
precision.  Parameters live in one flat dict with dotted names — "rnn0.W_x", "rnn0.gamma_a",
"out.W", "emb.E" — and so do the BN population statistics ("rnn0.mean_a", ...).
"""

from dataclasses import asdict, dataclass, replace

import numpy as np

from rbtw.errors import is_finite, is_whole
from rbtw.kinds import MODEL_KINDS as KINDS
from rbtw.nn import cell, dropout, embedding, gru, linear, loss, lstm

LAYER = {"lstm": lstm, "gru": gru}


@dataclass(frozen=True)
class ModelSpec:
    """Static description of a model.

    kind      "char" | "word" | "classify"
    n_in      vocabulary size (char/word) or input features per step (classify)
    n_out     output classes (the vocabulary for language models)
    emb       embedding size (word LM only)
    dropout   dropout probability on the word LM's embeddings and RNN outputs
    h0_noise  std of Gaussian noise added to the learned h0 of every layer while training
              (the official code uses 0.1 on sequential MNIST).  Without it, steps whose
              input is the same for the whole batch (the blank top rows of every digit) give
              every row the same state, W_h·h has zero batch variance, and BN's backward
              multiplies the gradient by γ/sqrt(ε) ≈ 32 at each such step: it overflows.
    The remaining fields describe every recurrent layer (see rbtw.nn.cell.CellSpec);
    ``threshold`` is the deterministic ternary rule's τ/α (None: 1/3; set by rbtw.calibrate).
    """

    kind: str = "char"
    n_in: int = 1
    n_out: int = 1
    cell: str = "lstm"
    hidden: int = 128
    layers: int = 1
    emb: int = 0
    dropout: float = 0.0
    quant: str = "none"
    stochastic: bool = False
    bn: bool = True
    t_max: int = 100
    h0_noise: float = 0.0
    threshold: float | None = None

    def __post_init__(self):
        self._check_types()
        if self.kind not in KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if self.kind == "word" and self.emb <= 0:
            raise ValueError("a word LM needs an embedding size")
        if self.layers < 1 or self.hidden < 1:
            raise ValueError("a model needs at least one layer of at least one unit")
        self.cell_spec(0)  # validates cell kind and quantization mode

    def _check_types(self):
        """Each field of the type and domain it has (a spec read from a file may hold anything)."""
        for name in ("n_in", "n_out", "hidden", "layers", "t_max"):
            if not is_whole(getattr(self, name), 1):
                raise ValueError(f"{name} must be a whole number >= 1, not {getattr(self, name)!r}")
        if not is_whole(self.emb):
            raise ValueError(f"emb must be a whole number >= 0, not {self.emb!r}")
        if not (is_finite(self.dropout) and 0 <= self.dropout < 1) or not (is_finite(self.h0_noise) and self.h0_noise >= 0):
            raise ValueError(f"dropout must be in [0, 1) and h0_noise >= 0, not {self.dropout!r}, {self.h0_noise!r}")
        if not isinstance(self.stochastic, bool) or not isinstance(self.bn, bool):
            raise ValueError(f"stochastic and bn must be true or false, not {self.stochastic!r}, {self.bn!r}")
        if self.threshold is not None and not (is_finite(self.threshold) and self.threshold > 0):
            raise ValueError(f"threshold must be a positive number or absent, not {self.threshold!r}")
        if not all(isinstance(getattr(self, name), str) for name in ("kind", "cell", "quant")):
            raise ValueError("kind, cell and quant must be strings")

    def cell_spec(self, layer):
        if layer == 0:
            X = self.emb if self.kind == "word" else self.n_in
        else:
            X = self.hidden
        return cell.CellSpec(kind=self.cell, X=X, H=self.hidden, quant=self.quant,
                             stochastic=self.stochastic, bn=self.bn, t_max=self.t_max, threshold=self.threshold)

    def to_dict(self):
        d = asdict(self)
        if d["threshold"] is None:          # the paper's rule: spec dicts stay as they were
            del d["threshold"]
        return d

    @classmethod
    def from_dict(cls, d):
        return cls(**d)

    def with_changes(self, **changes):
        return replace(self, **changes)


def init(spec, rng, dtype=np.float32):
    """Fresh parameters and population statistics: two flat dicts."""
    params, stats = {}, {}
    if spec.kind == "word":
        params.update(prefix("emb.", embedding.init_params(spec.n_in, spec.emb, rng, dtype)))
    for k in range(spec.layers):
        cs = spec.cell_spec(k)
        params.update(prefix(f"rnn{k}.", LAYER[spec.cell].init_params(cs, rng, dtype)))
        stats.update(prefix(f"rnn{k}.", cell.init_stats(cs, dtype)))
    params.update(prefix("out.", linear.init_params(spec.hidden, spec.n_out, rng, dtype)))
    return params, stats


def prefix(p, d):
    return {p + k: v for k, v in d.items()}


def strip(p, d):
    return {k[len(p):]: v for k, v in d.items() if k.startswith(p)}


def quantized_names(spec):
    """Names of the parameters that are quantized (and the α that goes with each)."""
    if spec.quant == "none":
        return {}
    out = {}
    for k in range(spec.layers):
        ax, ah = spec.cell_spec(k).alphas
        out[f"rnn{k}.W_x"] = ax
        out[f"rnn{k}.W_h"] = ah
    return out


def draw_weights(params, spec, *, train, rng=None, weights="deterministic"):
    """W^q for every recurrent layer, one sample per matrix: {"rnn0.W_x": W^q, ...}."""
    out = {}
    for k in range(spec.layers):
        Wxq, Whq = cell.quantized_weights(strip(f"rnn{k}.", params), spec.cell_spec(k),
                                          train=train, rng=rng, weights=weights)
        out[f"rnn{k}.W_x"], out[f"rnn{k}.W_h"] = Wxq, Whq
    return out


def forward(params, stats, spec, inputs, *, train, rng=None, state=None, weights="deterministic",
            batch_stats=False, t0=0, qweights=None):
    """Logits for a batch.

    inputs   char/word: token ids (T, B); classify: features (T, B, X)
    state    per layer, the initial state tuple (word LM state carry), or None for h0/c0
    qweights quantized weights to use instead of drawing them (from :func:`draw_weights`)
    Returns logits ((T, B, V) or (B, C)), the final state per layer, and the cache.
    """
    dtype = params["out.W"].dtype
    # dropout draws from its own stream, split off first, so that it does not depend on
    # whether the weights were drawn here or passed in
    drop_rng = np.random.default_rng(rng.integers(2**63)) if (train and rng is not None) else None
    noise_rng = np.random.default_rng(rng.integers(2**63)) if (train and rng is not None and spec.h0_noise > 0
                                                                and state is None) else None
    if qweights is None:
        qweights = draw_weights(params, spec, train=train, rng=rng, weights=weights)
    caches = {}
    if noise_rng is not None:
        state = noisy_initial_state(params, spec, inputs_batch(inputs), noise_rng)
        caches["h0_noise"] = True
    if spec.kind == "char":
        x = embedding.OneHot(inputs, spec.n_in, dtype)          # never built: a row gather
    elif spec.kind == "word":
        x, caches["emb"] = embedding.forward(inputs, strip("emb.", params))
        x, caches["drop_in"] = dropout.forward(x, spec.dropout, train=train, rng=drop_rng)
    else:
        x = np.asarray(inputs, dtype=dtype)
    final = []
    for k in range(spec.layers):
        p = strip(f"rnn{k}.", params)
        (x, fin), caches[f"rnn{k}"] = LAYER[spec.cell].forward_quantized(
            x, qweights[f"rnn{k}.W_x"], qweights[f"rnn{k}.W_h"], p, strip(f"rnn{k}.", stats),
            spec.cell_spec(k), train=train, state=None if state is None else state[k],
            batch_stats=batch_stats, t0=t0)
        final.append(fin)
    if spec.kind == "classify":
        caches["last"] = x.shape
        x = x[-1]                                               # (B, H)
    elif spec.kind == "word":
        x, caches["drop_out"] = dropout.forward(x, spec.dropout, train=train, rng=drop_rng)
    logits, caches["out"] = linear.forward(x, strip("out.", params))
    return logits, final, caches


def inputs_batch(inputs):
    """Batch size B of token ids (T, B) or features (T, B, X)."""
    return np.shape(inputs)[1]


def noisy_initial_state(params, spec, B, rng):
    """Per layer (h0 + N(0, h0_noise²) per row, c0), each (B, H): see ModelSpec.h0_noise."""
    dtype = params["out.W"].dtype
    state = []
    for k in range(spec.layers):
        h0 = params[f"rnn{k}.h0"]
        noise = rng.standard_normal((B, h0.shape[0])).astype(dtype) * dtype.type(spec.h0_noise)
        c0 = params.get(f"rnn{k}.c0")
        state.append((h0 + noise, None if c0 is None else np.broadcast_to(c0, (B, c0.shape[0])).copy()))
    return state


def backward(dlogits, caches, spec):
    """Gradients of every parameter (flat dict; quantized matrices get dL/dW^q, the STE)."""
    grads = {}
    dx, g = linear.backward(dlogits, caches["out"])
    grads.update(prefix("out.", g))
    if spec.kind == "classify":
        T, B, H = caches["last"]
        dh = np.zeros((T, B, H), dtype=dx.dtype)
        dh[-1] = dx
        dx = dh
    elif spec.kind == "word":
        dx = dropout.backward(dx, caches["drop_out"])
    for k in reversed(range(spec.layers)):
        dx, g = LAYER[spec.cell].backward(dx, caches[f"rnn{k}"])
        h_init, c_init = g.pop("h_init", None), g.pop("c_init", None)
        if caches.get("h0_noise"):          # the initial state was h0 + noise, c0: route back
            g["h0"] = h_init.sum(axis=0)
            if c_init is not None:
                g["c0"] = c_init.sum(axis=0)
        grads.update(prefix(f"rnn{k}.", g))
    if spec.kind == "word":
        dx = dropout.backward(dx, caches["drop_in"])
        _, g = embedding.backward(dx, caches["emb"])
        grads.update(prefix("emb.", g))
    return grads


def loss_and_grads(params, stats, spec, inputs, targets, *, rng=None, state=None, mask=None, qweights=None):
    """One training step's mean cross-entropy (nats), gradients and final state.

    Training mode: batch statistics (population statistics are updated in place), weights drawn
    once for this pass, dropout active.
    """
    logits, final, caches = forward(params, stats, spec, inputs, train=True, rng=rng, state=state,
                                    qweights=qweights)
    value, lcache = loss.forward(logits, targets, mask)
    grads = backward(loss.backward(lcache), caches, spec)
    return value, grads, final


class DenseEngine:
    """Inference with the float model: ``forward(inputs, state, t0) -> (logits, final state)``.

    weights      "deterministic" and "expected" are drawn once; "sampled" draws fresh weights
                 at every call, as the official code evaluates
    batch_stats  normalise with each batch's own statistics instead of the population's
    """

    def __init__(self, params, stats, spec, *, weights="deterministic", batch_stats=False, rng=None):
        self.params, self.stats, self.spec = params, stats, spec
        self.weights, self.batch_stats = weights, batch_stats
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.kind = spec.kind
        self.qweights = None
        if weights != "sampled":
            self.qweights = draw_weights(params, spec, train=False, weights=weights)

    def forward(self, inputs, state=None, t0=0):
        qweights = self.qweights
        if qweights is None:
            qweights = draw_weights(self.params, self.spec, train=False, rng=self.rng, weights="sampled")
        logits, final, _ = forward(self.params, self.stats, self.spec, inputs, train=False, state=state,
                                   batch_stats=self.batch_stats, t0=t0, qweights=qweights)
        return logits, final


def detach_state(final):
    """Copies of the final state, to carry into the next window without holding its cache."""
    return [tuple(np.array(s, copy=True) for s in layer) for layer in final]


def count_parameters(params, spec):
    """{"quantized": n, "full_precision": n, "total": n} parameter counts."""
    q = sum(params[n].size for n in quantized_names(spec))
    total = sum(v.size for v in params.values())
    return {"quantized": q, "full_precision": total - q, "total": total}


def recurrent_weight_count(spec):
    """Number of entries in all W_x and W_h (whether quantized or not)."""
    return sum((spec.cell_spec(k).X + spec.hidden) * spec.cell_spec(k).G for k in range(spec.layers))


def param_shapes(spec):
    """The shape of every parameter of a model described by ``spec`` (without building it)."""
    shapes = {}
    if spec.kind == "word":
        shapes["emb.E"] = (spec.n_in, spec.emb)
    for k in range(spec.layers):
        cs = spec.cell_spec(k)
        H, G, p = cs.H, cs.G, f"rnn{k}."
        shapes.update({p + "W_x": (cs.X, G), p + "W_h": (H, G), p + "h0": (H,)})
        if cs.kind == "lstm":
            shapes[p + "c0"] = (H,)
        if cs.bn:
            shapes.update({p + "gamma_a": (G,), p + "beta_a": (G,), p + "gamma_b": (G,)})
            if cs.kind == "lstm":
                shapes.update({p + "gamma_c": (H,), p + "beta_c": (H,)})
        elif cs.kind == "lstm":
            shapes[p + "b"] = (G,)
        else:
            shapes.update({p + "b_a": (G,), p + "b_b": (G,)})
    shapes.update({"out.W": (spec.hidden, spec.n_out), "out.b": (spec.n_out,)})
    return shapes


def stat_shapes(spec):
    """The shape of every population statistic of a model described by ``spec``."""
    return {f"rnn{k}.{name}": shape for k in range(spec.layers)
            for name, shape in cell.stat_shapes(spec.cell_spec(k)).items()}


FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def check_model_arrays(params, spec, stats=None):
    """Raise ValueError naming the first parameter (or, given ``stats``, population statistic)
    that is missing, extra, mis-shaped or of the wrong type.  The parameters share one float
    dtype (float32 or float64), and the statistics' means and variances have it too; their
    update counts are integers.  The jitted layers rely on all of this: a checkpoint from a
    file is checked before it reaches them."""
    layers = {name.split(".", 1)[0] for name in params if name.startswith("rnn")}
    if len(layers) != spec.layers:     # first: the spec's layer count may be anything a file held
        raise ValueError(f"the model has {spec.layers:,} recurrent layers, the parameters {len(layers)}")
    _check_arrays("parameter", params, param_shapes(spec))
    dtypes = {params[name].dtype for name in params}
    if len(dtypes) != 1 or not dtypes <= set(FLOATS):
        raise ValueError(f"the parameters must share one type, float32 or float64, not {sorted(map(str, dtypes))}")
    if stats is not None:
        _check_arrays("population statistic", stats, stat_shapes(spec))
        for name, s in stats.items():
            ok = s.dtype.kind in "iu" if name.rsplit(".", 1)[-1].startswith("count_") else s.dtype in dtypes
            if not ok:
                raise ValueError(f"population statistic {name} is of type {s.dtype}, unlike the parameters")


def _check_arrays(what, arrays, shapes):
    """Raise ValueError unless ``arrays`` has exactly the names of ``shapes``, each of its shape."""
    missing = sorted(set(shapes) - set(arrays))
    extra = sorted(set(arrays) - set(shapes))
    if missing or extra:
        raise ValueError(f"{what}s do not fit the model: missing {missing}, unexpected {extra}")
    for name, shape in shapes.items():
        if tuple(arrays[name].shape) != shape:
            raise ValueError(f"{what} {name} has shape {tuple(arrays[name].shape)}, the model needs {shape}")
