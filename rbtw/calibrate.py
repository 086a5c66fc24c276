"""Post-training calibration of the deterministic model (what hardware runs).

A stochastically trained model is evaluated in hardware with the *deterministic* rule applied
to its latent weights, but its BN population statistics were accumulated under *sampled*
weights, whose products have other moments; and the deterministic ternary rule's threshold
τ = α/3 is a convention, not a learned value.  Two calibrations, chosen on the validation
split only, change nothing but those:

    statistics   re-estimate every BN's population statistics under the deterministic weights:
                 N training minibatches forward in training mode (batch statistics), no
                 parameter update, each step's running mean/variance updated as in training
                 (the first batch copied, then new = 0.95·old + 0.05·batch)
    threshold    ternary: τ = θ·α for θ among the candidates (the paper's 1/3 first), the one
                 with the best validation metric after re-estimating the statistics under it

The result is a checkpoint whose parameters are the input's, bit for bit, with new statistics
and (ternary) ``spec["threshold"] = θ``; its export and every engine use the same rule.  The
paper's rule stays the default everywhere else.
"""

import copy
from dataclasses import replace

import numpy as np

from rbtw.errors import UserError

THRESHOLDS = (1 / 3, 0.4, 0.5, 0.6)


def reestimate_statistics(params, stats, spec, data, config, batches=150, seed=0):
    """Population statistics measured under the deterministic weights (module docstring)."""
    from rbtw.models import draw_weights, forward
    new = {k: v.copy() for k, v in stats.items()}
    for key in new:
        if key.split(".")[-1].startswith("count_"):
            new[key][...] = 0                    # the first batch of every step is copied
    quiet = replace(spec, dropout=0.0, h0_noise=0.0)
    qweights = draw_weights(params, quiet, train=False, weights="deterministic")
    rng = np.random.default_rng([seed, 5])
    n = 0
    for inputs, _ in data.batches("train", config, rng):
        if n >= batches:
            break
        forward(params, new, quiet, inputs, train=True, qweights=qweights)
        n += 1
    if n == 0:
        raise UserError("the training split is too small for one calibration batch")
    return new


def calibrate(ckpt, data, config, *, batches=150, thresholds=None, statistics=True, valid_batches=None,
              log=None):
    """(new meta, params, new stats, report) of a calibrated checkpoint (module docstring).

    ``thresholds``: candidate θ for a ternary model (default THRESHOLDS; ignored otherwise);
    ``statistics``: re-estimate the BN statistics (only with BN).  The report lists every
    candidate's validation metric, the chosen one, and the uncalibrated model's.
    """
    from rbtw.config import metric_name
    from rbtw.evaluate import evaluate
    from rbtw.models import ModelSpec
    log = log or (lambda line: None)
    spec = ModelSpec.from_dict(ckpt.meta["spec"])
    if spec.quant == "none":
        raise UserError("calibration is for binary/ternary models: full precision has no deterministic rule")
    metric = metric_name(spec.kind)
    sign = -1 if metric == "accuracy" else 1             # lower is better, except accuracy
    valid_cfg = replace(config, eval_weights="deterministic", eval_stats="population")

    def score(s, st):
        return evaluate(ckpt.params, st, s, data, "valid", valid_cfg, max_batches=valid_batches)[metric]

    before = score(spec, ckpt.stats)
    log(f"uncalibrated: valid {metric} {before:.4f}")
    candidates = list(thresholds or THRESHOLDS) if spec.quant == "ternary" else [None]
    tried = []
    for theta in candidates:
        s = spec if theta is None or theta == 1 / 3 else replace(spec, threshold=float(theta))
        st = reestimate_statistics(ckpt.params, ckpt.stats, s, data, config, batches) \
            if statistics and spec.bn else ckpt.stats
        value = score(s, st)
        log(f"threshold {'α/3' if theta in (None, 1 / 3) else f'{theta:g}·α'}"
            f"{', statistics re-estimated' if statistics and spec.bn else ''}: valid {metric} {value:.4f}")
        tried.append((sign * value, theta, s, st, value))
    _, theta, best_spec, best_stats, value = min(tried, key=lambda t: t[0])
    meta = copy.deepcopy(ckpt.meta)
    meta["spec"] = best_spec.to_dict()
    report = {"metric": f"valid {metric}", "uncalibrated": before, "calibrated": value,
              "threshold": None if theta in (None, 1 / 3) else float(theta),
              "statistics": bool(statistics and spec.bn), "batches": batches,
              "tried": [{"threshold": t, "valid": v} for _, t, _, _, v in tried]}
    meta["calibration"] = report
    return meta, ckpt.params, best_stats, report
