"""Post-training calibration of the deterministic model (what hardware runs).

A stochastically trained model is evaluated in hardware with the *deterministic* rule applied
to its latent weights, but its BN population statistics were accumulated under *sampled*
weights, whose products have other moments; and the deterministic ternary rule's threshold
τ = α/3 is a convention, not a learned value.  A full-precision model has no rule to change,
but its running statistics trail weights that moved while they were averaged (at a high
constant learning rate they can cost more than a quantizer does), so comparing a calibrated
ternary model with an uncalibrated full-precision one would flatter ternary.  Two calibrations,
chosen on the validation split only, change nothing but those:

    statistics   re-estimate every BN's population statistics under the deterministic weights:
                 N training minibatches forward in training mode (batch statistics), no
                 parameter update, each step's running mean/variance updated as in training
                 (the first batch copied, then new = 0.95·old + 0.05·batch)
    threshold    ternary: τ = θ·α for θ among the candidates (the paper's 1/3 first), the one
                 with the best validation metric after re-estimating the statistics under it;
                 when the best of the default candidates is the largest, the search goes on in
                 steps of 0.1 while it improves, up to θ = 0.9

Full precision with BN takes the first only (its weights are their own deterministic rule);
a model with neither BN nor ternary weights has nothing to calibrate and is refused.

The result is a checkpoint whose parameters are the input's, bit for bit, with new statistics
and (ternary) ``spec["threshold"] = θ``; its export and every engine use the same rule.  The
paper's rule stays the default everywhere else.
"""

import copy
from dataclasses import replace

import numpy as np

from rbtw.errors import UserError, is_bool, whole_number

THRESHOLDS = (1 / 3, 0.4, 0.5, 0.6)
THRESHOLD_STEP, THRESHOLD_MAX = 0.1, 0.9      # the search beyond THRESHOLDS when its edge wins
BATCHES = 150    # training minibatches that re-estimate the BN statistics, by default
RULE = 3    # bumped whenever what `calibrate` does by default changes (caches of its results key on it)
# Older rules that chose the same as RULE for a run without an evaluation cap (eval_max_batches):
# rule 3 chooses on the whole validation split, where rule 2 stopped at the run's cap.
SAME_UNCAPPED = (2,)


def check_options(batches=BATCHES, thresholds=None, statistics=True, valid_batches=None):
    """The calibration's options, canonical, or a one-line UserError: ``batches`` a whole number
    ≥ 1, ``valid_batches`` None or a whole number ≥ 1, ``statistics`` true or false,
    ``thresholds`` None or a non-empty sequence of numbers θ with 0 < θ < 1."""
    import numbers
    batches = whole_number(batches, "batches (--batches)", 1)
    valid_batches = None if valid_batches is None else whole_number(valid_batches, "valid_batches (--valid-batches)", 1)
    if not is_bool(statistics):
        raise UserError(f"statistics must be true or false, not {statistics!r}")
    statistics = bool(statistics)
    if thresholds is not None:
        if isinstance(thresholds, (str, bytes)) or not hasattr(thresholds, "__iter__"):
            raise UserError(f"thresholds (--threshold) must be a list of numbers θ, not {thresholds!r}")
        thresholds = list(thresholds)
        bad = [t for t in thresholds if is_bool(t) or not isinstance(t, numbers.Real) or not 0 < t < 1]
        if not thresholds or bad:
            raise UserError(f"thresholds (--threshold): every θ lies in (0, 1) and one at least is given"
                            f"{f', not {bad[0]!r}' if bad else ''}")
        thresholds = [float(t) for t in thresholds]
    return batches, thresholds, statistics, valid_batches


def calibrate_file(checkpoint, out, *, batches=BATCHES, thresholds=None, statistics=True, valid_batches=None,
                   force=False, data_dir=None, log=None, force_hint=None):
    """Calibrate the checkpoint file ``checkpoint`` (see :func:`calibrate`) and write the result
    to ``out`` — never over the checkpoint itself or its run's files (rbtw.checkpoint.model_files),
    over an existing file only with ``force``, atomically (a full or read-only disk keeps any old
    file).  ``force_hint``: how a refusal names the override (default the API's ``force=True``;
    the command passes ``--force``).  Returns the report."""
    from rbtw.checkpoint import check_model_output, read_checkpoint, save_checkpoint
    from rbtw.config import TrainConfig
    from rbtw.fileio import FORCE_KEYWORD
    from rbtw.tasks import load_task_data
    batches, thresholds, statistics, valid_batches = check_options(batches, thresholds, statistics, valid_batches)
    out = check_model_output(out, checkpoint, force, what="calibrated checkpoint",
                             force_hint=force_hint or FORCE_KEYWORD)
    ckpt, _ = read_checkpoint(checkpoint)
    config = TrainConfig.from_dict(ckpt.meta["config"])
    data = load_task_data(config, data_dir)
    meta, params, stats, report = calibrate(ckpt, data, config, batches=batches, thresholds=thresholds,
                                            statistics=statistics, valid_batches=valid_batches, log=log)
    save_checkpoint(out, meta, params, stats, ckpt.optimizer, ckpt.extra)
    return report


def is_paper_threshold(theta):
    """Whether θ is the paper's rule τ = α/3 (None stands for it, as in ModelSpec.threshold)."""
    return theta is None or theta == 1 / 3


def threshold_label(theta):
    """How a ternary threshold θ is written: "α/3" (the paper's, also None) or "0.6·α"."""
    return "α/3" if is_paper_threshold(theta) else f"{theta:g}·α"


def calibratable(spec, statistics=True):
    """Whether ``calibrate`` has anything to change: BN statistics to re-estimate or a ternary threshold."""
    return bool(statistics and spec.bn) or spec.quant == "ternary"


def reestimate_statistics(params, stats, spec, data, config, batches=BATCHES, seed=0, qweights=None):
    """Population statistics measured under the deterministic weights (module docstring), or
    under ``qweights`` ({"rnn0.W_x": W^q, ...}) when given."""
    from rbtw.models import draw_weights, forward
    new = {k: v.copy() for k, v in stats.items()}
    for key in new:
        if key.split(".")[-1].startswith("count_"):
            new[key][...] = 0                    # the first batch of every step is copied
    quiet = replace(spec, dropout=0.0, h0_noise=0.0)
    if qweights is None:
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


def calibrate(ckpt, data, config, *, batches=BATCHES, thresholds=None, statistics=True, valid_batches=None,
              log=None):
    """(new meta, params, new stats, report) of a calibrated checkpoint (module docstring).

    ``thresholds``: candidate θ for a ternary model (default THRESHOLDS, searched on past its
    edge; refused for other weights); ``statistics``: re-estimate the BN statistics (only with BN).
    The report lists every candidate's validation metric, the chosen one, the uncalibrated
    model's, and the RULE it was made by.
    """
    from rbtw.config import HIGHER_IS_BETTER, metric_name
    from rbtw.evaluate import HARDWARE, evaluate
    from rbtw.models import ModelSpec
    log = log or (lambda line: None)
    spec = ModelSpec.from_dict(ckpt.meta["spec"])
    if not calibratable(spec, statistics):
        what = "full precision" if spec.quant == "none" else f"{spec.quant} weights"
        why = "with its statistics left alone (--no-statistics)" if spec.bn else \
            "without BN has no statistics to re-estimate"
        raise UserError(f"nothing to calibrate: {what} {why} and no ternary threshold")
    if thresholds is not None and spec.quant != "ternary":
        raise UserError(f"a threshold applies to ternary weights only, not to "
                        f"{'full precision' if spec.quant == 'none' else spec.quant + ' weights'}")
    restat = bool(statistics and spec.bn)
    metric = metric_name(spec.kind)
    sign = -1 if metric in HIGHER_IS_BETTER else 1
    valid_cfg = replace(config, **HARDWARE, eval_max_batches=None)   # valid_batches None: the whole split

    def score(s, st):
        return evaluate(ckpt.params, st, s, data, "valid", valid_cfg, max_batches=valid_batches)[metric]

    def attempt(theta):
        # (a checkpoint calibrated before may carry another θ: every candidate is set, α/3 too)
        s = replace(spec, threshold=None if is_paper_threshold(theta) else float(theta))
        st = reestimate_statistics(ckpt.params, ckpt.stats, s, data, config, batches) if restat else ckpt.stats
        value = score(s, st)
        done = ([] if theta is None else [f"threshold {threshold_label(theta)}"]) + \
            (["statistics re-estimated"] if restat else [])
        log(f"{', '.join(done)}: valid {metric} {value:.4f}")
        return (sign * value, theta, s, st, value)

    before = score(spec, ckpt.stats)
    log(f"uncalibrated: valid {metric} {before:.4f}")
    candidates = list(thresholds or THRESHOLDS) if spec.quant == "ternary" else [None]
    tried = [attempt(theta) for theta in candidates]
    if spec.quant == "ternary" and thresholds is None:   # the default grid's edge won: search on past it
        while min(tried, key=lambda t: t[0])[1] == tried[-1][1] \
                and tried[-1][1] + THRESHOLD_STEP <= THRESHOLD_MAX + 1e-9:
            tried.append(attempt(round(tried[-1][1] + THRESHOLD_STEP, 6)))
    _, theta, best_spec, best_stats, value = min(tried, key=lambda t: t[0])
    meta = copy.deepcopy(ckpt.meta)
    meta["spec"] = best_spec.to_dict()
    report = {"metric": f"valid {metric}", "uncalibrated": before, "calibrated": value,
              "threshold": None if is_paper_threshold(theta) else float(theta),
              "statistics": restat, "batches": batches, "rule": RULE,
              "tried": [{"threshold": t, "valid": v} for _, t, _, _, v in tried]}
    meta["calibration"] = report
    return meta, ckpt.params, best_stats, report
