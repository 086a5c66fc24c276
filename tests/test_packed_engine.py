"""The packed engine's fused paths against the plain NumPy reference (rbtw.infer_reference).

Windows (PackedEngine.forward: every step and layer in one jitted call) and the per-token path
of generation (PackedEngine.session, the emulator's AccelEngine.session), over shapes, both
cells, both quantizations, char/word/classifier models, every kernel path this host runs and
both routes of a product (packed kernels, dense float32).  Dimension legend: T steps, B batch,
H hidden, V vocabulary.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from randmodel import random_export
from rbtw import infer
from rbtw.generate import ForwardSession, generate, stream
from rbtw.infer import PackedEngine
from rbtw.infer_reference import reference_forward
from rbtw.kernels import isa
from rbtw.kernels.host import draw_index

V = 13
# float32 products and gates (rbtw.kernels.gates: 2.5e-7) against float64, over a few steps:
# measured errors stay below 5e-8 of the logits' scale and 3e-6 in h and c
STATE_ATOL = 2e-5
LOGIT_RTOL = 2e-6


def logit_scale(ex):
    """Largest |logit| an h in [−1, 1] can give: the tolerance's unit."""
    return float(np.abs(ex.arrays["out.W"]).sum(axis=0).max() + np.abs(ex.arrays["out.b"]).max())


def inputs_for(kind, rng, T, B):
    if kind == "classify":
        return rng.standard_normal((T, B, V)).astype(np.float32)
    return rng.integers(0, V, size=(T, B))


models = st.fixed_dictionaries(dict(
    hidden=st.integers(1, 70), layers=st.integers(1, 2), cell=st.sampled_from(["lstm", "gru"]),
    quant=st.sampled_from(["binary", "ternary"]), kind=st.sampled_from(["char", "word", "classify"]),
    t_max=st.integers(1, 6), seed=st.integers(0, 2**16)))


def build(m):
    m = dict(m)
    return random_export(np.random.default_rng(m.pop("seed")), n_in=V, **m)


@settings(max_examples=40, deadline=None)
@given(m=models, T=st.integers(1, 9), B=st.integers(1, 9), t0=st.integers(0, 8),
       route=st.sampled_from(infer.ROUTES), with_state=st.booleans(), seed=st.integers(0, 2**16))
def test_windows_equal_the_reference_on_every_path(m, T, B, t0, route, with_state, seed):
    ex = build(m)
    rng = np.random.default_rng(seed)
    x = inputs_for(m["kind"], rng, T, B)
    state = None
    if with_state:
        state = [tuple(rng.uniform(-1, 1, (B, m["hidden"])).astype(np.float32)
                       for _ in range(1 if m["cell"] == "gru" else 2)) for _ in range(m["layers"])]
    want, want_state = reference_forward(ex, x, state, t0)
    tol = LOGIT_RTOL * logit_scale(ex)
    for path in isa.runnable():
        got, got_state = PackedEngine(ex, path=path, route=route).forward(x, state, t0)
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=tol, err_msg=path)
        for a, b in zip(got_state, want_state):
            assert len(a) == len(b)
            for u, v in zip(a, b):
                np.testing.assert_allclose(u, v, rtol=0, atol=STATE_ATOL, err_msg=path)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("quant", ["binary", "ternary"])
def test_threaded_products_and_batch_padding(monkeypatch, cell, quant):
    """Products split over threads (the parallel kernels) and batches of 5 (padded to 8)."""
    ex = random_export(np.random.default_rng(3), hidden=48, n_in=V, cell=cell, quant=quant, layers=2)
    x = np.random.default_rng(4).integers(0, V, size=(6, 5))
    want, _ = reference_forward(ex, x)
    monkeypatch.setattr(infer, "threads_for", lambda work, batch=False: 2)
    for path in isa.runnable():
        got, _ = PackedEngine(ex, path=path, route="packed").forward(x)
        np.testing.assert_allclose(got, want, rtol=0, atol=LOGIT_RTOL * logit_scale(ex))


def reference_draws(ex, prime, u, temperature):
    """Ids drawn from the reference's logits with the uniforms u, feeding each back; also the
    smallest margin over the draws: |u·Σw − cumulative weight| / Σw, or at temperature 0 the gap
    between the two largest logits (a draw that close to a boundary may go either way under
    float32 rounding)."""
    ids, margin = [], np.inf
    seq = list(prime)
    for k in range(len(u)):
        logits, _ = reference_forward(ex, np.array(seq)[:, None])
        z = logits[-1, 0].astype(np.float32)
        ids.append(int(draw_index(z, u[k], temperature)))
        if temperature > 0:
            w = np.exp((z.astype(np.float64) - z.max()) / temperature)
            cdf = np.cumsum(w)
            margin = min(margin, np.abs(cdf - u[k] * cdf[-1]).min() / cdf[-1])
        elif z.size > 1:                               # argmax: the gap to the runner-up
            top = np.sort(z.astype(np.float64))
            margin = min(margin, (top[-1] - top[-2]) / logit_scale(ex))
        seq.append(ids[-1])
    return ids, margin


@settings(max_examples=25, deadline=None)
@given(m=models.filter(lambda m: m["kind"] != "classify"), prime=st.lists(st.integers(0, V - 1), min_size=1, max_size=5),
       n=st.integers(1, 12), temperature=st.sampled_from([0.0, 0.5, 1.0, 2.0]), route=st.sampled_from(infer.ROUTES),
       seed=st.integers(0, 2**16))
def test_the_per_token_path_draws_what_the_reference_draws(m, prime, n, temperature, route, seed):
    ex = build(m)
    u = np.random.default_rng(seed).random(n)
    want, margin = reference_draws(ex, prime, u, temperature)
    for path in isa.runnable():
        engine = PackedEngine(ex, path=path, route=route)
        s = engine.session(prime)
        got = list(s.tokens(n - n // 2, u[:n - n // 2], temperature)) + \
            list(s.tokens(n // 2, u[n - n // 2:], temperature, last=True))           # two runs
        if margin > 1e-5:
            assert got == want, path
        # the fused loop and a forward per token on the same engine agree exactly but for
        # the output layer's order of additions
        plain = ForwardSession(engine, prime).tokens(n, u, temperature, last=True)
        assert margin <= 1e-5 or got == list(plain)


def test_session_state_continues_across_runs_and_matches_forward():
    ex = random_export(np.random.default_rng(9), hidden=40, n_in=V, t_max=3)
    engine = PackedEngine(ex)
    s = engine.session([1, 2, 3])
    ids = list(s.tokens(5, np.full(5, 0.3), 1.0)) + list(s.tokens(4, np.full(4, 0.7), 1.0))
    logits, state = reference_forward(ex, np.array([1, 2, 3] + ids)[:, None])
    np.testing.assert_allclose(s.logits, logits[-1, 0], rtol=0, atol=LOGIT_RTOL * logit_scale(ex))
    np.testing.assert_allclose(s.h[0, 0], state[0][0][0], atol=STATE_ATOL)
    np.testing.assert_allclose(s.c[0, 0], state[0][1][0], atol=STATE_ATOL)
    assert s.t == 3 + len(ids)
    s.tokens(1, [0.5], 1.0, last=True)
    with pytest.raises(RuntimeError):
        s.tokens(1, [0.5], 1.0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("kind", ["char", "word"])
def test_emulator_host_loop_equals_its_forward(cell, kind):
    """AccelEngine.session (one jitted call per run) draws what AccelEngine.forward gives token
    by token: the same fixed-point datapath, the same host output layer and draw."""
    from rbtw.accel import design as dm
    from rbtw.accel.engine import AccelEngine
    ex = random_export(np.random.default_rng(5), hidden=50, n_in=V, t_max=4, cell=cell, kind=kind, layers=2,
                       quant="ternary")
    engine = AccelEngine(ex, dm.preset("ternary"))
    u = np.random.default_rng(6).random(30)
    fused = engine.session([1, 2]).tokens(30, u, 1.0, last=True)
    plain = ForwardSession(engine, [1, 2]).tokens(30, u, 1.0, last=True)
    assert list(fused) == list(plain)
    assert generate(engine, [1, 2], 30, rng=np.random.default_rng(7)) == \
        list(ForwardSession(engine, [1, 2]).tokens(30, np.random.default_rng(7).random(30), 1.0, last=True))


def test_generate_takes_one_uniform_a_token_in_runs():
    """Runs of any length give the ids of one draw per token from the seeded generator."""
    ex = random_export(np.random.default_rng(2), hidden=30, n_in=V)
    engine = PackedEngine(ex)
    runs = list(stream(engine, [4], 200, rng=np.random.default_rng(1)))
    assert len(runs) > 1 and len(runs[0]) == 16 and sum(map(len, runs)) == 200
    whole = engine.session([4]).tokens(200, np.random.default_rng(1).random(200), 1.0, last=True)
    assert [i for r in runs for i in r] == list(whole)
    assert generate(engine, [4], 0, rng=np.random.default_rng(1)) == []
    greedy = generate(engine, [4], 20, rng=np.random.default_rng(1), temperature=0)
    assert greedy == generate(engine, [4], 20, rng=np.random.default_rng(2), temperature=0)


def test_the_gate_loops_vectorise():
    """The step's gate loops compile to vector divisions (one per tanh or σ), not to scalar code
    or libm calls (tests/test_gates.py: vector_divisions)."""
    from test_gates import vector_divisions
    if not {"avx2", "avx512f"} & isa.target_features():
        pytest.skip("no AVX2 or AVX-512 in the compile target: nothing to vectorise to")
    from rbtw import infer_steps
    H = 37
    a, v = np.ones(4 * H + 16, np.float32), np.ones(4 * H, np.float32)
    c, h, sc = np.ones(H, np.float32), np.ones(H, np.float32), np.ones(H, np.float32)
    assert vector_divisions(infer_steps._lstm_gates, a, v, v, v, v, sc, sc, c, h) >= 5   # σ σ tanh σ tanh
    assert vector_divisions(infer_steps._gru_gates, a, a.copy(), h) >= 3                # σ σ tanh


PROBE = """
import sys
import numpy as np
from rbtw.export_format import read_export
from rbtw.generate import generate
from rbtw.infer import PackedEngine
engine = PackedEngine(read_export(sys.argv[1]))
print(engine.path, *generate(engine, [1, 2], 40, rng=np.random.default_rng(3)))
"""


def test_rbtw_kernels_chooses_the_engines_path(tmp_path):
    """RBTW_KERNELS reaches the engine in a fresh process, which generates what this process
    generates on that path."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from rbtw.export_format import write_export
    root = Path(__file__).resolve().parents[1]
    ex = random_export(np.random.default_rng(8), hidden=64, n_in=V, quant="ternary")
    write_export(tmp_path / "m.rbtw", ex)
    for path in isa.runnable():
        env = dict(os.environ, RBTW_KERNELS=path,
                   PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
        out = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "m.rbtw")], env=env, cwd=root,
                             capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stderr[-2000:]
        name, *ids = out.stdout.split()
        assert name == path
        want = generate(PackedEngine(ex, path=path), [1, 2], 40, rng=np.random.default_rng(3))
        assert [int(i) for i in ids] == want
