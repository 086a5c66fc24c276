"""Text generation from a trained language model (dense float engine).

The prime is run through the model in one pass; then one token at a time is drawn from
softmax(logits / temperature) and fed back, the recurrent state carried from step to step.
Evaluation conventions: population statistics of step t (the last row for t ≥ T_max) and the
deterministic weights, as hardware would run them.
"""

import numpy as np

from rbtw import models
from rbtw.errors import UserError


def draw(logits, rng, temperature):
    """One token id from softmax(logits / temperature); temperature 0 means argmax."""
    if temperature <= 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    return int(rng.choice(p.size, p=p))


def generate(params, stats, spec, prime_ids, length, *, rng, temperature=1.0, weights="deterministic"):
    """Token ids continuing ``prime_ids`` (a non-empty sequence) by ``length`` tokens."""
    if spec.kind == "classify":
        raise UserError("sampling needs a language model; this checkpoint is a classifier")
    if len(prime_ids) == 0:
        raise UserError("the prime must contain at least one token")
    qweights = models.draw_weights(params, spec, train=False, rng=rng, weights=weights)
    ids = np.asarray(prime_ids, dtype=np.int64).reshape(-1, 1)  # (T, 1)
    logits, state, _ = models.forward(params, stats, spec, ids, train=False, qweights=qweights)
    t = ids.shape[0]
    out = []
    token = draw(logits[-1, 0], rng, temperature)
    for _ in range(length):
        out.append(token)
        logits, state, _ = models.forward(params, stats, spec, np.array([[token]]), train=False,
                                          state=state, t0=t, qweights=qweights)
        t += 1
        token = draw(logits[-1, 0], rng, temperature)
    return out
