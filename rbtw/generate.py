"""Text generation from a trained language model.

The prime is run through the model in one pass; then one token at a time is drawn from
softmax(logits / temperature) and fed back, the recurrent state carried from step to step.
Either engine works: the dense float model (population statistics of step t, the last row for
t ≥ T_max, and deterministic weights) or the packed engine, which runs the same arithmetic on
bit-packed weights.
"""

import numpy as np

from rbtw.errors import UserError


def draw(logits, rng, temperature):
    """One token id from softmax(logits / temperature); temperature 0 means argmax.

    Inverse CDF: with w = exp(z - max z) and one uniform u in [0, 1), the first id whose
    cumulative weight exceeds u·sum(w).  (Generator.choice with p= took ~80 µs a token, a
    quarter of a 1000-unit packed model's step; this takes a few.)"""
    if temperature <= 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    cdf = np.cumsum(np.exp(z - z.max()))                       # unnormalised, cdf[-1] >= 1
    i = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    if i == z.size:                        # u·cdf[-1] rounded up to cdf[-1]: the last id of
        i = int(np.searchsorted(cdf, cdf[-1]))                 # positive weight
    return i


def generate(engine, prime_ids, length, *, rng, temperature=1.0):
    """Token ids continuing ``prime_ids`` (a non-empty sequence) by ``length`` tokens.

    ``engine`` is a rbtw.models.DenseEngine or a rbtw.infer.PackedEngine of a language model.
    """
    if engine.kind == "classify":
        raise UserError("sampling needs a language model; this model is a classifier")
    if len(prime_ids) == 0:
        raise UserError("the prime must contain at least one token")
    ids = np.asarray(prime_ids, dtype=np.int64).reshape(-1, 1)  # (T, 1)
    logits, state = engine.forward(ids)
    t = ids.shape[0]
    out = []
    token = draw(logits[-1, 0], rng, temperature)
    for _ in range(length):
        out.append(token)
        logits, state = engine.forward(np.array([[token]]), state, t0=t)
        t += 1
        token = draw(logits[-1, 0], rng, temperature)
    return out
