"""Text generation from a trained language model.

The prime is run through the model in one pass; then one token at a time is drawn from
softmax(logits / temperature) and fed back, the recurrent state carried from step to step.
Any engine works: the dense float model (population statistics of step t, the last row for
t ≥ T_max, and deterministic weights), the packed engine, which runs the same arithmetic on
bit-packed weights, or the emulator.

The packed engine and the emulator generate through their per-token path (``engine.session``:
state allocated once, a run of tokens in one jitted call); any other engine through
``forward`` one token at a time.  Tokens come in runs (``stream``), the first short and the
later ones longer, so a caller can show them as they come and stop between runs.  Draws use
one uniform of ``rng`` per token (none at temperature 0), taken a run at a time, and
rbtw.kernels.host.draw_index everywhere: the same logits and seed give the same ids on every
path.
"""

import time

import numpy as np

from rbtw.errors import UserError
from rbtw.kernels.host import draw_index, output_layer

FIRST_RUN = 16          # tokens in the first run of ``stream``
RUN_SECONDS = 0.05      # later runs double while one takes less than this
LONGEST_RUN = 1024


def draw(logits, rng, temperature):
    """One token id from softmax(logits / temperature); temperature 0 means argmax.

    Inverse CDF (rbtw.kernels.host.draw_index) with one uniform u of ``rng``."""
    u = rng.random() if temperature > 0 else 0.0
    return int(draw_index(np.ascontiguousarray(logits), u, float(temperature)))


class ForwardSession:
    """The per-token path of an engine that has only ``forward`` (the dense float model)."""

    def __init__(self, engine, prime_ids):
        self.engine = engine
        ids = np.asarray(prime_ids, dtype=np.int64).reshape(-1, 1)            # (T, 1)
        logits, self.state = engine.forward(ids)
        self.logits = np.ascontiguousarray(logits[-1, 0])
        self.t = ids.shape[0]

    def tokens(self, n, uniforms, temperature, last=False):
        out = np.empty(n, np.int64)
        for k in range(n):
            out[k] = draw_index(self.logits, uniforms[k], temperature)
            if k == n - 1 and last:
                break
            logits, self.state = self.engine.forward(np.array([[out[k]]]), self.state, t0=self.t)
            self.logits = np.ascontiguousarray(logits[-1, 0])
            self.t += 1
        return out


def _session(engine, prime_ids):
    if engine.kind == "classify":
        raise UserError("sampling needs a language model; this model is a classifier")
    if len(prime_ids) == 0:
        raise UserError("the prime must contain at least one token")
    if hasattr(engine, "session"):
        return engine.session(prime_ids)
    return ForwardSession(engine, prime_ids)


def stream(engine, prime_ids, length, *, rng, temperature=1.0):
    """Token ids continuing ``prime_ids`` by ``length`` tokens, yielded in runs (lists) as they
    are generated: FIRST_RUN tokens, then runs that double while one lasts under RUN_SECONDS,
    up to LONGEST_RUN.  So a caller shows text as it comes and can stop between runs."""
    session = _session(engine, prime_ids)
    temperature = float(temperature)
    done, run = 0, FIRST_RUN
    while done < length:
        n = min(run, length - done)
        u = rng.random(n) if temperature > 0 else np.zeros(n)
        start = time.perf_counter()
        ids = session.tokens(n, u, temperature, last=done + n == length)
        took = time.perf_counter() - start
        done += n
        run = max(1, min(2 * n, LONGEST_RUN, int(n * RUN_SECONDS / took) if took > 0 else LONGEST_RUN))
        yield ids.tolist()


def generate(engine, prime_ids, length, *, rng, temperature=1.0):
    """Token ids continuing ``prime_ids`` (a non-empty sequence) by ``length`` tokens.

    ``engine`` is a rbtw.models.DenseEngine, a rbtw.infer.PackedEngine or a
    rbtw.accel.engine.AccelEngine of a language model.
    """
    out = []
    for ids in stream(engine, prime_ids, length, rng=rng, temperature=temperature):
        out.extend(ids)
    return out


def text_stream(model, prime=None, length=200, temperature=1.0, seed=0):
    """``model.sample(prime, length, temperature, seed)`` (rbtw.api.Model) as pieces of text,
    each yielded as soon as its tokens are drawn; joined, they are what ``sample`` returns."""
    ids = [int(i) for i in model.encode(prime)] if prime else [0]
    runs = stream(model.engine, ids, int(length), rng=np.random.default_rng(seed),
                  temperature=float(temperature))
    if model.kind == "word":
        yield prime or model.vocab[0]
        for run in runs:
            yield " " + model.decode(run)
        return
    yield from utf8_pieces(model.decode, [ids], runs)


def utf8_pieces(decode, *id_runs):
    """Texts of runs of char ids whose concatenation is ``decode`` of all the ids.

    A char LM's vocabulary may hold UTF-8 bytes, so a character can be split between runs, and
    only ``decode`` is used.  A run's text is cut at the last position p of the ids so far
    after which nothing can change the text before it: p = the end when the text does not end
    in U+FFFD (its last character is complete), else the largest p among the last 3 positions
    with decode(ids[:p]) + decode(ids[p:]) = decode(ids).  A UTF-8 sequence still open at the
    end is at most 3 bytes long and its start is such a p; a p inside a sequence fails the
    test (the bytes after p decode apart as extra U+FFFD).  What is held is flushed at the end."""
    pending = []
    for runs in id_runs:
        for ids in runs:
            pending.extend(ids)
            text = decode(pending)
            cut = len(pending) if not text.endswith("\ufffd") else 0
            for keep in range(1, min(3, len(pending)) + 1):
                if cut:
                    break
                head = decode(pending[:-keep])
                if head + decode(pending[-keep:]) == text:
                    cut = len(pending) - keep
            if cut:
                yield decode(pending[:cut]) if cut < len(pending) else text
                pending = pending[cut:]
    if pending:
        yield decode(pending)


def write_pieces(pieces, out):
    """Write text pieces to the text stream ``out`` as they come (flushed), then a newline.

    ``rbtw sample`` prints through this.  Ctrl-C keeps what was written: a newline ends it and
    the KeyboardInterrupt goes on (the CLI exits with status 130).  A reader that closed the
    pipe raises BrokenPipeError, which the CLI ends quietly (rbtw.cli.app)."""
    try:
        for piece in pieces:
            out.write(piece)
            out.flush()
    except KeyboardInterrupt:
        out.write("\n")
        out.flush()
        raise
    out.write("\n")
    out.flush()
