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

The file format is rbtw.export_format's; this module builds what goes in it.
"""

import numpy as np

from rbtw import quant
from rbtw.errors import UserError
from rbtw.export_format import FORMAT, VERSION, Export
from rbtw.kernels import pack

# default K of ``rbtw export --bn-steps``: the smallest K whose test BPC on trained PTB-char
# models was within 0.005 of one table per step (bench/results/bn_steps.md)
DEFAULT_BN_STEPS = 1
# bn_steps that keeps one table per step (any K ≥ T_max does)
PER_STEP = 1 << 62


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


def build_export(meta, params, stats, bn_steps=None):
    """An Export from a checkpoint's parts (meta as saved by the trainer).

    ``bn_steps`` K ≥ 1: per-step BN tables for steps < K, one shared table after (module doc);
    K ≥ T_max keeps one row per step; None: the default, DEFAULT_BN_STEPS (here and only here,
    so that every caller — ``rbtw export``, ``Model.export``, ``rbtw.load(ckpt, engine="packed")``
    — builds the same export).
    """
    from rbtw.models import ModelSpec, strip  # the model layout; the engine never imports models

    spec = ModelSpec.from_dict(meta["spec"])
    if bn_steps is None:
        bn_steps = DEFAULT_BN_STEPS
    if isinstance(bn_steps, bool) or int(bn_steps) != bn_steps or bn_steps < 1:
        raise UserError(f"--bn-steps must be a whole number ≥ 1, not {bn_steps}")
    bn_steps = int(bn_steps) if spec.bn and bn_steps < spec.t_max else None
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
        "config": meta["config"], "vocab": meta.get("vocab"), "matrices": matrices,
        "engine": {"weights": "deterministic", "stats": "population"}, "bn_steps": bn_steps,
    }
    return Export(manifest, arrays)


