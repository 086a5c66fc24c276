"""Packed export: a trained model as bit-packed weights with batch norm folded per time step.

What inference needs, and nothing else.  For every recurrent layer (LSTM; the GRU is alike
with A and B kept apart) the population statistics and α fold into per-step scales and shifts:

    z_t = s_h[t] ⊙ (Q_h h_{t-1}) + s_x[t] ⊙ (Q_x x_t) + k[t]           (G,) per step
    s_h[t] = α_h γ_a / sqrt(σ²_a[t] + ε)        s_x[t] = α_x γ_b / sqrt(σ²_b[t] + ε)
    k[t]   = β_a − γ_a μ_a[t] / sqrt(σ²_a[t] + ε) − γ_b μ_b[t] / sqrt(σ²_b[t] + ε)
    h_t    = o ⊙ tanh(s_c[t] ⊙ c_t + k_c[t]),   s_c = γ_c / sqrt(σ²_c + ε),  k_c = β_c − s_c μ_c

Q_h, Q_x are the integer matrices (±1 or −1/0/+1) of the deterministic rule, so Q·x needs
additions and subtractions only.  Without BN: s_h = α_h, s_x = α_x, k = b, s_c = 1, k_c = 0.
The tables have T_max rows (1 row without BN); step t reads row min(t, rows − 1).
A full-precision model exports its matrices as float32 ("dense"), for comparison.

Shared tables after step K (``bn_steps=K``, 1 ≤ K < T_max): rows 0 … K−1 are the per-step
folds of steps 0 … K−1; row K, read by every step t ≥ K, folds the statistics of the pooled
population of steps K … T_max−1 (those whose statistics were updated in training):

    μ̄  = mean_t μ[t]                     σ̄² = mean_t (σ²[t] + μ[t]²) − μ̄²

the mean and variance of the mixture of the later steps' distributions, i.e. what one BN
shared by those steps would have estimated from the same data (a plain mean of the variances
would miss the spread of the means).  So the tables hold K + 1 rows instead of T_max.  The
manifest records K as "bn_steps" (null: one row per step).

Choosing K (``export_checkpoint``, the one default of ``rbtw export``, ``Model.export`` and
``rbtw.load(checkpoint, engine="packed")``): by measurement.  The export with one table per
step computes what the checkpoint's float model does; K is the smallest number of per-step
tables whose validation metric, on the first ``MEASURE`` predictions of the validation split,
is within ``TOLERANCE`` of that export's (``smallest_within``: K = 1, then T_max / 2, then
bisection).  No such K up to T_max / 2, or no validation data at hand: one table per step.  An explicit K is measured too, so that its cost is known.  The manifest records the
measurement as "bn_choice" (``rbtw info`` prints it).

The file format is rbtw.export_format's; this module builds what goes in it.
"""

import numpy as np

from rbtw import quant
from rbtw.errors import UserError, whole_number
from rbtw.export_format import FORMAT, VERSION, Export
from rbtw.kernels import pack

# bn_steps that keeps one table per step (any K ≥ T_max does)
PER_STEP = 1 << 62
# how much worse than one table per step the default export may be on the validation split:
# BPC and accuracy as differences (0.005 BPC, half an accuracy point), perplexity relative (0.5 %)
TOLERANCE = {"bpc": 0.005, "perplexity": 0.005, "accuracy": 0.005}
# what the measurement reads of the validation split: predictions (LMs) or examples (classifier)
MEASURE = {"char": 20_000, "word": 20_000, "classify": 1_000}


# ---------------------------------------------------------------------------------------------
# folding


def _inv_std(stats, key, eps):
    return 1.0 / np.sqrt(stats[f"var_{key}"].astype(np.float64) + eps)


def pooled_statistics(stats, bn_steps):
    """Population statistics with rows ≥ K = ``bn_steps`` pooled into one row K (module doc).

    ``stats`` holds mean_x, var_x (T_max, F) and count_x (T_max,) per BN x; rows whose count is
    0 (never updated) are left out of the pool unless no later row was updated.  K ≥ T_max
    returns the statistics unchanged.
    """
    K = int(bn_steps)
    out = dict(stats)
    for key in sorted(k[len("mean_"):] for k in stats if k.startswith("mean_")):
        mean = stats[f"mean_{key}"].astype(np.float64)                  # (T_max, F)
        var = stats[f"var_{key}"].astype(np.float64)
        if K >= mean.shape[0]:
            continue
        later = np.arange(K, mean.shape[0])
        count = stats.get(f"count_{key}")
        if count is not None and np.any(count[K:] > 0):
            later = later[count[K:] > 0]
        mu = mean[later].mean(axis=0)                                      # (F,)
        pooled = np.maximum((var[later] + mean[later] ** 2).mean(axis=0) - mu ** 2, 0.0)
        out[f"mean_{key}"] = np.vstack([mean[:K], mu[None]])               # (K + 1, F)
        out[f"var_{key}"] = np.vstack([var[:K], pooled[None]])
        if count is not None:
            out[f"count_{key}"] = np.append(count[:K], count[later].sum())
    return out


def fold_layer(params, stats, cell_spec, bn_steps=None):
    """Per-step scales and shifts of one recurrent layer (float32 tables, see module doc).

    ``bn_steps`` K: rows 0 … K−1 per step, one shared row K for the later steps (None: T_max rows).

    Returns a dict with scale_h, scale_x (rows, G) and, for the LSTM, shift (rows, G),
    scale_c, shift_c (rows, H); for the GRU, shift_a and shift_b (rows, G).
    """
    ax, ah = cell_spec.alphas
    if cell_spec.quant == "none":
        ax = ah = 1.0  # dense matrices carry their own values
    p = {k: v.astype(np.float64) for k, v in params.items()}
    out = {}
    if cell_spec.bn and bn_steps is not None:
        stats = pooled_statistics(stats, bn_steps)
    if cell_spec.bn:
        eps = cell_spec.eps
        ia, ib = _inv_std(stats, "a", eps), _inv_std(stats, "b", eps)     # (T_max, G)
        out["scale_h"] = ah * p["gamma_a"] * ia
        out["scale_x"] = ax * p["gamma_b"] * ib
        shift_a = p["beta_a"] - p["gamma_a"] * stats["mean_a"] * ia
        shift_b = -p["gamma_b"] * stats["mean_b"] * ib
        if cell_spec.kind == "lstm":
            out["shift"] = shift_a + shift_b
            ic = _inv_std(stats, "c", eps)                                # (T_max, H)
            out["scale_c"] = p["gamma_c"] * ic
            out["shift_c"] = p["beta_c"] - p["gamma_c"] * stats["mean_c"] * ic
        else:
            out["shift_a"], out["shift_b"] = shift_a, shift_b
    else:
        G, H = cell_spec.G, cell_spec.H
        out["scale_h"] = np.full((1, G), ah)
        out["scale_x"] = np.full((1, G), ax)
        if cell_spec.kind == "lstm":
            out["shift"] = p["b"][None, :]
            out["scale_c"] = np.ones((1, H))
            out["shift_c"] = np.zeros((1, H))
        else:
            out["shift_a"], out["shift_b"] = p["b_a"][None, :], p["b_b"][None, :]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def integer_matrix(W, mode, alpha, threshold=None):
    """Q (G, K) int8 of the deterministic rule for a latent W (K, G) stored input-major
    (``threshold``: the ternary rule's τ/α, None: 1/3)."""
    return quant.integer_levels(quant.quantize(W, mode, alpha, threshold=threshold), alpha).T


def check_bn_steps(bn_steps):
    """``bn_steps`` as an int ≥ 1 (or None), or a one-line UserError."""
    return None if bn_steps is None else whole_number(bn_steps, "bn_steps (--bn-steps)", 1)


def build_export(meta, params, stats, bn_steps=PER_STEP):
    """An Export from a checkpoint's parts (meta as saved by the trainer), with exactly the
    tables asked for: ``bn_steps`` K ≥ 1 per-step BN tables for steps < K and one shared table
    after (module doc); K ≥ T_max or None keeps one row per step.  The measured default is
    :func:`export_checkpoint`'s.
    """
    from rbtw.models import ModelSpec, strip  # the model layout; the engine never imports models

    spec = ModelSpec.from_dict(meta["spec"])
    bn_steps = check_bn_steps(bn_steps)
    bn_steps = bn_steps if spec.bn and bn_steps is not None and bn_steps < spec.t_max else None
    arrays, matrices = {}, {}
    for k in range(spec.layers):
        cs = spec.cell_spec(k)
        p, s = strip(f"rnn{k}.", params), strip(f"rnn{k}.", stats)
        for name, alpha in zip(("W_x", "W_h"), cs.alphas):
            key = f"rnn{k}.{name}"
            W = p[name]
            if spec.quant == "none":
                arrays[key] = np.ascontiguousarray(W.T, dtype=np.float32)   # (G, K)
                matrices[key] = {"kind": "dense", "rows": W.shape[1], "cols": W.shape[0], "alpha": 1.0}
            else:
                pm = pack(integer_matrix(W, spec.quant, alpha, spec.threshold), spec.quant)
                arrays[key] = pm.planes
                matrices[key] = {"kind": spec.quant, "rows": pm.rows, "cols": pm.cols, "alpha": float(alpha)}
        for name, table in fold_layer(p, s, cs, bn_steps).items():
            arrays[f"rnn{k}.{name}"] = table
        arrays[f"rnn{k}.h0"] = p["h0"].astype(np.float32)
        if cs.kind == "lstm":
            arrays[f"rnn{k}.c0"] = p["c0"].astype(np.float32)
    for name in ("out.W", "out.b", "emb.E"):
        if name in params:
            arrays[name] = np.ascontiguousarray(params[name], dtype=np.float32)
    manifest = {
        "format": FORMAT, "version": VERSION, "model": spec.to_dict(), "task": meta["config"]["task"],
        "config": meta["config"], "vocab": meta.get("vocab"), "symbols": _symbols(meta, spec), "matrices": matrices,
        "engine": {"weights": "deterministic", "stats": "population"}, "bn_steps": bn_steps,
    }
    if meta.get("calibration"):
        manifest["calibration"] = meta["calibration"]       # how its statistics and threshold were chosen
    return Export(manifest, arrays)


def _symbols(meta, spec):
    from rbtw.symbols import recorded
    return recorded(spec.kind, meta.get("symbols"), meta.get("vocab"))


# ---------------------------------------------------------------------------------------------
# choosing K by measurement


def cost_of(metric, value, reference):
    """How much worse ``value`` is than ``reference`` (negative: better): BPC and accuracy as
    differences, perplexity relative to the reference."""
    if metric == "bpc":
        return value - reference
    if metric == "perplexity":
        return value / reference - 1
    return reference - value


def smallest_within(cost, t_max, tolerance):
    """The smallest K in [1, t_max // 2] with cost(K) ≤ tolerance, or None (one table per step).

    The cost is taken to fall as K grows (more steps keep their own statistics), so K = 1 is
    tried first (language models: enough), then K = t_max // 2 (if even half the steps with
    their own tables is not enough, as in sequential MNIST, one table per step it is; beyond
    it a shared table saves less than half the rows), then bisection between the two.
    """
    if cost(1) <= tolerance:
        return 1
    lo, hi = 1, t_max // 2
    if hi <= lo or cost(hi) > tolerance:
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if cost(mid) <= tolerance else (mid, hi)
    return hi


def export_checkpoint(ckpt, bn_steps=None, *, data_dir=None, log=None):
    """The export of a checkpoint (rbtw.checkpoint.Checkpoint) as every surface builds it.

    ``bn_steps`` None: the smallest K within ``TOLERANCE`` of one table per step on the
    validation split (module doc); a number: that K, its cost measured.  The manifest's
    "bn_choice" records how K was chosen and what it costs.  ``log(line)`` hears when a
    measurement starts.
    """
    from rbtw.models import ModelSpec
    spec = ModelSpec.from_dict(ckpt.meta["spec"])
    bn_steps = check_bn_steps(bn_steps)
    if not spec.bn or spec.t_max <= 1 or (bn_steps is not None and bn_steps >= spec.t_max):
        return _with_choice(ckpt, None, {"how": "exact"})
    given = bn_steps is not None
    measure, reason = _measurer(ckpt, spec, data_dir)
    if measure is None:
        return _with_choice(ckpt, bn_steps, {"how": "given" if given else "unmeasured", "reason": reason})
    tolerance = TOLERANCE[measure.metric]
    measure.log = log
    if not given:
        bn_steps = smallest_within(measure.cost, spec.t_max, tolerance)
    choice = {"how": "given" if given else "measured", **measure.record(bn_steps), "tolerance": tolerance}
    return _with_choice(ckpt, bn_steps, choice)


def _with_choice(ckpt, bn_steps, choice):
    export = build_export(ckpt.meta, ckpt.params, ckpt.stats, bn_steps if bn_steps is not None else PER_STEP)
    export.manifest["bn_choice"] = choice
    return export


class _Measure:
    """The validation metric of the export with K per-step tables, each K measured once."""

    def __init__(self, ckpt, data, config):
        from rbtw.config import metric_name
        self.ckpt, self.data, self.config = ckpt, data, config
        self.metric = metric_name(data.kind)
        per_batch = config.eval_batch_size * (1 if data.kind == "classify" else config.seq_len)
        self.max_batches = -(-MEASURE[data.kind] // per_batch)
        self.results, self.log = {}, None

    def result(self, K):
        from rbtw.evaluate import evaluate_engine
        from rbtw.infer import PackedEngine   # the export is judged by what will run it
        if K not in self.results:
            export = build_export(self.ckpt.meta, self.ckpt.params, self.ckpt.stats, K or PER_STEP)
            self.results[K] = r = evaluate_engine(PackedEngine(export), self.data, "valid", self.config,
                                                  max_batches=self.max_batches)
            if self.log is not None:
                tables = f"K = {K}" if K else "one per step"
                self.log(f"measuring BN tables, {tables}: valid {self.metric} {r[self.metric]:.4f} on {r['n']:,} "
                         f"{'examples' if self.data.kind == 'classify' else 'predictions'}")
        return self.results[K]

    def cost(self, K):
        return cost_of(self.metric, self.result(K)[self.metric], self.result(None)[self.metric])

    def record(self, K):
        """What the manifest keeps: the metric of K's tables and of one per step, and the cost."""
        value, reference = self.result(K)[self.metric], self.result(None)[self.metric]
        return {"metric": self.metric, "split": "valid", "predictions": self.result(None)["n"],
                "value": value, "per_step": reference, "cost": cost_of(self.metric, value, reference)}


def _measurer(ckpt, spec, data_dir):
    """(_Measure, None), or (None, why the validation split is not at hand)."""
    from dataclasses import replace

    from rbtw.config import TrainConfig
    from rbtw.evaluate import HARDWARE
    from rbtw.tasks import load_task_data
    config = TrainConfig.from_dict(ckpt.meta["config"])
    config = replace(config, **HARDWARE, eval_max_batches=None)
    try:
        data = load_task_data(config, data_dir, _symbols(ckpt.meta, spec))
    except UserError as e:
        return None, f"no validation data ({e})"
    if data.vocab is not None and data.vocab != ckpt.meta.get("vocab"):
        return None, "the data set's vocabulary is not the model's"
    return _Measure(ckpt, data, config), None
