"""Whole-model gradient checks (float64 finite differences) for every parameter in every mode."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import assert_grad_close, numeric_grad
from rbtw import models
from rbtw.nn import loss

QUANT_MODES = [("none", False), ("binary", False), ("ternary", False), ("binary", True), ("ternary", True)]


def small_batch(spec, T, B, rng):
    if spec.kind == "classify":
        return rng.standard_normal((T, B, spec.n_in)), rng.integers(0, spec.n_out, size=B)
    tokens = rng.integers(0, spec.n_in, size=(T, B))
    # A step where every row reads the same token gives W_x·x zero batch variance: BN's output
    # is then constant (dL/dW_x = 0 exactly) while its backward amplifies rounding by 1/sqrt(ε).
    # That singular point is BN's, not the backward's: keep two rows apart at every step.
    same = (tokens == tokens[:, :1]).all(axis=1)
    tokens[same, 0] = (tokens[same, 0] + 1) % spec.n_in
    return tokens, rng.integers(0, spec.n_out, size=(T, B))


def perturbed_model(spec, seed):
    rng = np.random.default_rng(seed)
    params, stats = models.init(spec, rng, np.float64)
    for k, v in params.items():
        if ".W_" not in k:
            v += rng.normal(0, 0.2, v.shape)
    return params, stats


@pytest.mark.parametrize("kind", ["char", "word", "classify"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("quant_mode,stochastic", QUANT_MODES)
@pytest.mark.parametrize("bn", [True, False])
@settings(max_examples=2, deadline=None)
@given(seed=st.integers(0, 2**16), layers=st.integers(1, 2), T=st.integers(1, 3), B=st.integers(2, 3))
def test_model_loss_gradients(kind, cell, quant_mode, stochastic, bn, seed, layers, T, B):
    spec = models.ModelSpec(kind=kind, n_in=3 if kind != "word" else 5, n_out=4 if kind == "classify" else (3 if kind == "char" else 5),
                            cell=cell, hidden=2, layers=layers, emb=2 if kind == "word" else 0,
                            dropout=0.3 if kind == "word" else 0.0, quant=quant_mode,
                            stochastic=stochastic, bn=bn, t_max=4)
    params, stats = perturbed_model(spec, seed)
    rng = np.random.default_rng(seed + 1)
    inputs, targets = small_batch(spec, T, B, rng)
    state = None
    if kind == "word":  # state carried in from a previous window
        n = 2 if cell == "lstm" else 1
        state = [tuple(rng.standard_normal((B, 2)) for _ in range(n)) for _ in range(layers)]

    def run(qweights=None):
        s = {k: v.copy() for k, v in stats.items()}
        return models.loss_and_grads(params, s, spec, inputs, targets, rng=np.random.default_rng(seed),
                                     state=state, qweights=qweights)

    value, grads, _ = run()
    assert set(grads) == set(params)
    qnames = models.quantized_names(spec)
    for name, arr in params.items():
        if name in qnames:
            continue
        if state is not None and (name.endswith(".h0") or name.endswith(".c0")):
            assert not np.any(grads[name])
            continue
        assert_grad_close(grads[name], numeric_grad(lambda: run()[0], arr), name)
    if qnames:
        # the sample this seed draws, held fixed: dL/dW^q is the straight-through gradient of W
        qrng = np.random.default_rng(seed)
        qrng.integers(2**63)  # the model splits off its dropout stream first
        qweights = models.draw_weights(params, spec, train=True, rng=qrng)
        assert run(qweights)[0] == value
        # Quantized entries tie exactly, and with one-hot inputs two batch rows can then give the
        # same product: a zero batch variance, where BN's curvature (~1/sqrt(ε)) spoils finite
        # differences.  The backward formula holds at any W^q, so check it at a nearby generic point.
        for name, alpha in qnames.items():
            qweights[name] = qweights[name] + rng.normal(0, 0.5 * alpha, qweights[name].shape)
        value, grads, _ = run(qweights)
        for name in qnames:
            assert_grad_close(grads[name], numeric_grad(lambda: run(qweights)[0], qweights[name]), name + "^q")


def test_masked_loss_ignores_masked_positions():
    spec = models.ModelSpec(kind="char", n_in=4, n_out=4, hidden=3, t_max=5)
    params, stats = models.init(spec, np.random.default_rng(0), np.float64)
    ids = np.random.default_rng(1).integers(0, 4, size=(5, 3))
    targets = ids.copy()
    mask = np.ones((5, 3))
    mask[3:] = 0
    other = targets.copy()
    other[3:] = (other[3:] + 1) % 4
    a = models.loss_and_grads(params, {k: v.copy() for k, v in stats.items()}, spec, ids, targets, mask=mask)[0]
    b = models.loss_and_grads(params, {k: v.copy() for k, v in stats.items()}, spec, ids, other, mask=mask)[0]
    assert a == b


def test_dense_engine_scores_match_the_loss():
    from rbtw.metrics import score
    spec = models.ModelSpec(kind="char", n_in=5, n_out=5, hidden=4, quant="ternary", t_max=6)
    params, stats = models.init(spec, np.random.default_rng(0), np.float64)
    ids = np.random.default_rng(1).integers(0, 5, size=(6, 4))
    engine = models.DenseEngine(params, stats, spec, batch_stats=True)
    logits, _ = engine.forward(ids)
    nll, n, correct = score(logits, ids)
    assert n == 24 and correct == int((logits.argmax(axis=-1) == ids).sum())
    value, _ = loss.forward(logits, ids)
    assert nll / n == pytest.approx(value)


def test_parameter_counts():
    spec = models.ModelSpec(kind="char", n_in=50, n_out=50, hidden=10, quant="binary")
    params, _ = models.init(spec, np.random.default_rng(0))
    counts = models.count_parameters(params, spec)
    assert counts["quantized"] == (50 + 10) * 40 == models.recurrent_weight_count(spec)
    assert counts["total"] == sum(v.size for v in params.values())


@pytest.mark.parametrize("kind", ["char", "word", "classify"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bn", [True, False])
def test_param_shapes_describe_init(kind, cell, bn):
    spec = models.ModelSpec(kind=kind, n_in=6, n_out=6, cell=cell, hidden=3, layers=2,
                            emb=4 if kind == "word" else 0, bn=bn)
    params, _ = models.init(spec, np.random.default_rng(0))
    assert {k: v.shape for k, v in params.items()} == models.param_shapes(spec)
    models.check_model_arrays(params, spec)
    params["out.b"] = np.zeros(7)
    with pytest.raises(ValueError, match="out.b"):
        models.check_model_arrays(params, spec)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_h0_noise_gradients(cell, layers):
    """With noise on h0 the loss is still a function of h0 (the noise is drawn from the seed)."""
    spec = models.ModelSpec(kind="classify", n_in=3, n_out=4, cell=cell, hidden=3, layers=layers,
                            quant="ternary", stochastic=True, t_max=4, h0_noise=0.1)
    params, stats = perturbed_model(spec, 5)
    rng = np.random.default_rng(6)
    inputs, targets = small_batch(spec, 3, 4, rng)

    def run():
        s = {k: v.copy() for k, v in stats.items()}
        return models.loss_and_grads(params, s, spec, inputs, targets, rng=np.random.default_rng(7))

    value, grads, _ = run()
    assert run()[0] == value
    for name, arr in params.items():
        if name not in models.quantized_names(spec):
            assert_grad_close(grads[name], numeric_grad(lambda: run()[0], arr), name)
    # the noise does change the loss: a different seed, a different value
    s = {k: v.copy() for k, v in stats.items()}
    other = models.loss_and_grads(params, s, spec, inputs, targets, rng=np.random.default_rng(8))[0]
    assert other != value


def test_h0_noise_keeps_blank_leading_steps_finite():
    """sMNIST's blank top rows: identical states across the batch make BN's backward blow up
    (×γ/sqrt(ε) per step); noise on h0 keeps the batch variance away from zero."""
    spec = models.ModelSpec(kind="classify", n_in=4, n_out=10, hidden=16, quant="binary",
                            stochastic=True, t_max=40)
    rng = np.random.default_rng(0)
    params, stats = models.init(spec, rng)
    inputs = np.zeros((40, 8, 4), np.float32)
    inputs[30:] = rng.random((10, 8, 4))                       # 30 blank steps, then "ink"
    targets = rng.integers(0, 10, size=8)

    def h0_grad(s):
        st_ = {k: v.copy() for k, v in stats.items()}
        _, grads, _ = models.loss_and_grads(params, st_, s, inputs, targets, rng=np.random.default_rng(1))
        return np.abs(grads["rnn0.W_h"]).max()

    with np.errstate(all="ignore"):
        plain = h0_grad(spec)
    noisy = h0_grad(models.ModelSpec(**{**spec.to_dict(), "h0_noise": 0.1}))
    assert np.isfinite(noisy) and noisy < 1e3
    assert not np.isfinite(plain) or plain > 1e6 * noisy
