"""Random-initialised exports for tests and benchmarks (no training, no data needed).

A fixture, not part of the package: the emulator and the packed engine read exports only.

Population statistics are set to what products of random ±α weights with activations in
[−1, 1] give: the variance of W_h·h (K = H) and of W_x·x (K = the layer's inputs) is about
α²·K/3, here α²·(0.5 + u·K/3) with u ~ U(0, 1); the cell's variance 0.5 + u·H/3; means
0.3·N(0, 1).  So the folded scales s = α·γ/σ are of a realistic size and the recurrent and
input terms of a step are as large as its shifts.
"""

import numpy as np

from rbtw.config import TrainConfig
from rbtw.export import PER_STEP, build_export
from rbtw.models import ModelSpec, init


def random_export(rng, *, bn_steps=PER_STEP, **kw):
    """The export of :func:`random_model` (one BN table per step unless ``bn_steps``)."""
    meta, params, stats = random_model(rng, **kw)
    return build_export(meta, params, stats, bn_steps=bn_steps)


def random_model(rng, *, hidden=16, layers=1, quant="binary", kind="char", n_in=12, n_out=None,
                 emb=6, t_max=8, bn=True, cell="lstm", task=None):
    """(meta, params, stats) of a random model, as a checkpoint holds them (meta: spec, config)."""
    task = task or {"char": "ptb_char", "word": "ptb_word", "classify": "mnist"}[kind]
    spec = ModelSpec(kind=kind, n_in=n_in, n_out=n_out or n_in, cell=cell, hidden=hidden, layers=layers,
                     emb=emb if kind == "word" else 0, quant=quant, stochastic=False, bn=bn, t_max=t_max)
    params, stats = init(spec, rng)
    for name in list(params):
        if name.endswith(("gamma_a", "gamma_b", "gamma_c")):
            params[name] = (0.1 + 0.2 * rng.random(params[name].shape)).astype(np.float32)
        elif name.endswith(("beta_a", "beta_c", ".b", "h0", "c0")):
            params[name] = (0.2 * rng.standard_normal(params[name].shape)).astype(np.float32)
    sizes = {}                                   # stats name -> (α², K) of its product
    for k in range(layers):
        cs = spec.cell_spec(k)
        ax, ah = cs.alphas
        sizes[f"rnn{k}.var_a"], sizes[f"rnn{k}.var_b"] = (ah ** 2, hidden), (ax ** 2, cs.X)
    for name, v in stats.items():
        if "var_" in name:
            a2, K = sizes.get(name, (1.0, hidden))
            stats[name] = (a2 * (0.5 + rng.random(v.shape) * (K / 3))).astype(np.float32)
        elif "mean_" in name:
            stats[name] = (0.3 * rng.standard_normal(v.shape)).astype(np.float32)
    config = TrainConfig(task=task, hidden=hidden, layers=layers, quant=quant, cell=cell, bn=bn,
                         emb=spec.emb, seq_len=t_max).to_dict()
    return {"spec": spec.to_dict(), "config": config}, params, stats
