"""Weight quantizers with straight-through gradients.

A latent real-valued matrix W is kept and trained; the forward pass uses a quantized copy W^q
drawn once per forward pass (shared by every time step and batch row):

    binary, deterministic:   W^q = +α if W ≥ 0 else −α
    binary, stochastic:      W^q = +α with p = clip((W/α + 1)/2, 0, 1), else −α
    ternary, deterministic:  W^q = α·([W > τ] − [W < −τ]),  τ = α/3 rounded to W's dtype
                             (τ = θ·α for a calibrated model, rbtw.calibrate)
    ternary, stochastic:     W^q = α·sign(W)·Bernoulli(clip(|W|/α, 0, 1))

The ternary rule gives zero on the closed interval [−τ, τ] and is odd: W and −W quantise to
opposite values in every dtype (τ is rounded once, so −τ and +τ are exact negatives).
Training, export and the emulator all quantise through ``quantize``.

Both stochastic rules are unbiased for clipped weights: E[W^q] = clip(W, −α, α).

The scale α is fixed per matrix (not learned):

    α = ½·sqrt(6 / (fan_in + fan_out))      e.g. α_x = ½·sqrt(6/(X + 4H)) for an LSTM's W_x

Backward (straight-through estimator): dL/dW := dL/dW^q, applied to the latent W unchanged.

Names: ``mode`` is one of ``"none"`` (full precision), ``"binary"``, ``"ternary"``.
"""

import numpy as np

MODES = ("none", "binary", "ternary")
BITS = {"none": 32, "binary": 1, "ternary": 2}     # bits a weight takes in memory (none: float32)

# How quantized weights are chosen when a model is evaluated (docs/design.md §2):
#   deterministic  the deterministic rule applied to the latent W (what hardware runs)
#   sampled        a fresh stochastic sample (what the official code evaluates with)
#   expected       E[W^q] = clip(W, −α, α): a float reference, not realisable in hardware
EVAL_WEIGHTS = ("deterministic", "sampled", "expected")


def check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"unknown quantization mode {mode!r}; expected one of {', '.join(MODES)}")
    return mode


def default_alpha(fan_in, fan_out):
    """α = ½·sqrt(6 / (fan_in + fan_out)), half the Glorot-uniform limit (official code's rule)."""
    return 0.5 * float(np.sqrt(6.0 / (fan_in + fan_out)))


def binary_deterministic(W, alpha):
    """W^q = +α where W ≥ 0, −α elsewhere."""
    return np.where(W >= 0, alpha, -alpha).astype(W.dtype)


def uniforms(W, rng):
    """U(0, 1) draws shaped like W, in float32 for a float32 W (half the generator's work)."""
    return rng.random(W.shape, dtype=np.float32 if W.dtype == np.float32 else np.float64)


def binary_stochastic(W, alpha, rng):
    """W^q = +α with probability p = clip((W/α + 1)/2, 0, 1), else −α."""
    p = np.clip((W / alpha + 1.0) * 0.5, 0.0, 1.0)
    a = W.dtype.type(alpha)
    return np.where(uniforms(W, rng) < p, a, -a)


def ternary_threshold(alpha, dtype, fraction=None):
    """τ = α/3 (or ``fraction``·α) rounded once to ``dtype``: the deterministic ternary rule's
    threshold."""
    return np.dtype(dtype).type(alpha / 3 if fraction is None else alpha * fraction)


def ternary_deterministic(W, alpha, fraction=None):
    """W^q = α·([W > τ] − [W < −τ]), τ = ternary_threshold: zero on [−τ, τ], ±α outside."""
    tau = ternary_threshold(alpha, W.dtype, fraction)
    levels = (W > tau).astype(np.int8) - (W < -tau).astype(np.int8)
    return (alpha * levels).astype(W.dtype)


def ternary_stochastic(W, alpha, rng):
    """W^q = α·sign(W)·Bernoulli(clip(|W|/α, 0, 1))."""
    p = np.clip(np.abs(W) / alpha, 0.0, 1.0)
    keep = uniforms(W, rng) < p
    return np.where(keep, alpha * np.sign(W), 0.0).astype(W.dtype)


def expected(W, mode, alpha):
    """E[W^q] under the stochastic rule of ``mode``: clip(W, −α, α) (identity for "none")."""
    if check_mode(mode) == "none":
        return W
    return np.clip(W, -alpha, alpha).astype(W.dtype)


def quantize(W, mode, alpha, *, stochastic=False, rng=None, threshold=None):
    """Return W^q for the given mode; ``rng`` (numpy Generator) is required when stochastic;
    ``threshold``: the deterministic ternary rule's τ/α (None: 1/3)."""
    check_mode(mode)
    if mode == "none":
        return W
    if stochastic:
        if rng is None:
            raise ValueError("stochastic quantization needs a numpy.random.Generator")
        rule = binary_stochastic if mode == "binary" else ternary_stochastic
        return rule(W, alpha, rng)
    if mode == "binary":
        return binary_deterministic(W, alpha)
    return ternary_deterministic(W, alpha, threshold)


def eval_weights(W, mode, alpha, how, *, stochastic=False, rng=None, threshold=None):
    """Weights for evaluation: ``how`` is one of EVAL_WEIGHTS.

    For a deterministically trained model "sampled" and "expected" fall back to the
    deterministic rule (there is no distribution to sample from).
    """
    if how not in EVAL_WEIGHTS:
        raise ValueError(f"unknown evaluation weights {how!r}; expected one of {', '.join(EVAL_WEIGHTS)}")
    if mode == "none" or how == "deterministic" or not stochastic:
        return quantize(W, mode, alpha, threshold=threshold)
    if how == "sampled":
        return quantize(W, mode, alpha, stochastic=True, rng=rng)
    return expected(W, mode, alpha)


def ste_backward(dWq):
    """Straight-through estimator: dL/dW = dL/dW^q."""
    return dWq


def integer_levels(Wq, alpha):
    """The integer matrix Q with W^q = α·Q: values in {−1, +1} (binary) or {−1, 0, +1} (ternary)."""
    Q = np.rint(Wq / alpha).astype(np.int8)
    if not np.all(np.abs(Q) <= 1):
        raise ValueError("matrix is not quantized with this α")
    return Q
