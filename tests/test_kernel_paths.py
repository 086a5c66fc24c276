"""Specification of the kernel paths (avx512, avx2, portable), their selection and routing.

Every path this host can run is checked against the dense product and the NumPy reference;
a path it cannot run is skipped with the reason.  The portable path always runs, in this
process (compiled for the host) and in a child process compiled for a generic CPU.
Dimension legend: G rows of Q, K columns, B batch rows.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from rbtw.cli import main
from rbtw.errors import UserError
from rbtw.kernels import isa, ops, pack, packing, product, reference_matmul, reference_matvec

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("binary", "ternary")
ALPHABET = {"binary": [-1, 1], "ternary": [-1, 0, 1]}


def runnable_path(path):
    """Skip unless this host and Numba target can run ``path``."""
    if path not in isa.runnable():
        pytest.skip(f"{path} kernels need {isa.NEEDS[path]}, which this CPU or Numba target lacks "
                    f"(runnable: {', '.join(isa.runnable())})")
    return path


@pytest.fixture(params=isa.PATHS)
def path(request):
    return runnable_path(request.param)


def case(seed, kind, g, k, b):
    rng = np.random.default_rng(seed)
    q = rng.choice(ALPHABET[kind], size=(g, k)).astype(np.int8)
    X = rng.integers(-8, 9, size=(b, k)).astype(np.float32)      # integer inputs: exact sums
    return q, X


def check_exact(path, kind, g, k, b, seed):
    q, X = case(seed, kind, g, k, b)
    pm = pack(q, kind)
    want = X.astype(np.float64) @ q.T.astype(np.float64)            # (B, G)
    Y = ops.matmul(pm, X, path=path)
    assert Y.dtype == np.float32 and Y.shape == (b, g)
    np.testing.assert_array_equal(Y, want)
    if b:
        np.testing.assert_array_equal(ops.matvec(pm, X[0], path=path), want[0])
        np.testing.assert_array_equal(reference_matvec(pm, X[0]), want[0])


# rows and columns around the block sizes: 8/16-row blocks, 30/15/8-column words
sizes = st.one_of(st.integers(0, 40), st.sampled_from([63, 64, 65, 90, 129]))


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(KINDS), g=sizes, k=sizes, b=st.integers(0, 9), seed=st.integers(0, 2**32 - 1))
def test_every_runnable_path_is_exact_on_integer_inputs(kind, g, k, b, seed):
    for path in isa.runnable():
        check_exact(path, kind, g, k, b, seed)


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(KINDS), g=st.integers(1, 70), k=st.integers(1, 200), b=st.integers(1, 9),
       seed=st.integers(0, 2**32 - 1))
def test_every_runnable_path_agrees_with_the_reference_on_float_inputs(kind, g, k, b, seed):
    rng = np.random.default_rng(seed)
    q = rng.choice(ALPHABET[kind], size=(g, k)).astype(np.int8)
    X = rng.standard_normal((b, k)).astype(np.float32)
    pm = pack(q, kind)
    want = X.astype(np.float64) @ q.T.astype(np.float64)
    bound = (k + 16) * 2.0**-22 * np.abs(X.astype(np.float64)).sum(axis=1)[:, None] + 1e-30
    assert np.all(np.abs(reference_matmul(pm, X) - want) <= bound)
    for path in isa.runnable():
        assert np.all(np.abs(ops.matmul(pm, X, path=path) - want) <= bound), path
        assert np.all(np.abs(ops.matvec(pm, X[0], path=path) - want[0]) <= bound[0]), path


@pytest.mark.parametrize("kind", KINDS)
def test_each_path_threaded_and_large(path, kind, monkeypatch):
    q, X = case(7, kind, 4 * 250, 301, 13)                    # G = 1000: not a multiple of 16
    pm = pack(q, kind)
    monkeypatch.setattr(ops, "_cores_busy", lambda: False)
    monkeypatch.setattr(ops, "blas_may_spin", lambda: False)
    for threshold in (1 << 40, 0):                            # one thread, then all of them
        monkeypatch.setattr(ops, "PARALLEL_MIN_WORK", threshold)
        monkeypatch.setattr(ops, "PARALLEL_MIN_WORK_BATCH", threshold)
        np.testing.assert_array_equal(ops.matvec(pm, X[0], path=path), q @ X[0])
        np.testing.assert_array_equal(ops.matmul(pm, X, path=path), X @ q.T)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n_chunks", [1, 3, 200])
def test_kernels_split_rows_into_any_number_of_chunks(path, kind, n_chunks):
    q, X = case(n_chunks, kind, 80, 97, 8)                    # more chunks than row blocks too
    pm = pack(q, kind)
    lay, nw = pm.path_layout(path)
    k = ops.kernels(path)
    y = np.empty(80, np.float32)
    k.matvec_parallel(lay, X[0], y, nw, kind == "ternary", n_chunks)
    np.testing.assert_array_equal(y, q @ X[0])
    Y = np.empty((8, 80), np.float32)
    k.matmul_kernel(lay, X, Y, nw, kind == "ternary", n_chunks)
    np.testing.assert_array_equal(Y, X @ q.T)


@pytest.mark.parametrize("quant", ["binary", "ternary"])
@pytest.mark.parametrize("threads", [1, 2])
def test_emulator_products_on_each_path_equal_the_integer_loop(path, quant, threads, monkeypatch):
    from rbtw.accel import datapath
    from rbtw.accel import design as dm
    from rbtw.accel.engine import AccelEngine
    from randmodel import random_export
    rng = np.random.default_rng(3)
    ex = random_export(rng, hidden=37, quant=quant, kind="classify", n_in=20, t_max=3)
    d = dm.preset(quant)
    engine = AccelEngine(ex, d)
    x = engine._inputs(rng.random((4, 2, 20)).astype(np.float32))
    layer = engine.layers[0]
    lim = 1 << (d.act_bits - 1)
    state = (rng.integers(-lim, lim, size=(2, 37)), np.broadcast_to(layer.c0, (2, 37)).copy())
    monkeypatch.setattr(datapath, "threads_for", lambda work, batch=False: threads)  # rows in chunks
    fast = datapath.emulate_layer(layer, d, x, state, packed=True, path=path)
    slow = datapath.emulate_layer(layer, d, x, state, packed=False)
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a, b)


def test_threads_only_for_large_products_on_an_idle_machine(monkeypatch):
    import numba
    n = numba.get_num_threads()
    monkeypatch.setattr(ops, "_cores_busy", lambda: False)
    monkeypatch.setattr(ops, "blas_may_spin", lambda: False)
    assert ops.threads_for(ops.PARALLEL_MIN_WORK - 1) == 1
    assert ops.threads_for(ops.PARALLEL_MIN_WORK) == n
    assert ops.threads_for(ops.PARALLEL_MIN_WORK, batch=True) == (n if ops.PARALLEL_MIN_WORK_BATCH
                                                                   <= ops.PARALLEL_MIN_WORK else 1)
    assert ops.threads_for(ops.PARALLEL_MIN_WORK_BATCH, batch=True) == n
    monkeypatch.setattr(ops, "_cores_busy", lambda: True)      # load fills the cores: one thread
    assert ops.threads_for(1 << 40) == 1 and ops.threads_for(1 << 40, batch=True) == 1
    monkeypatch.setattr(ops, "_cores_busy", lambda: False)
    monkeypatch.setattr(ops, "blas_may_spin", lambda: True)    # OpenBLAS threads may spin: one
    assert ops.threads_for(1 << 40) == 1 and ops.threads_for(1 << 40, batch=True) == 1


SPIN_PROBE = """
import os, sys
{first}
from rbtw.kernels import ops
print(os.environ.get("OPENBLAS_THREAD_TIMEOUT"), ops.blas_may_spin())
"""


@pytest.mark.parametrize("first, env, want", [
    ("import rbtw, numpy", {}, "4 False"),                    # rbtw first: timeout set, no spin
    ("import rbtw, numpy", {"OPENBLAS_THREAD_TIMEOUT": "28"}, "28 True"),   # the user's wins
    ("import rbtw, numpy", {"OPENBLAS_THREAD_TIMEOUT": "12"}, "12 False"),
    ("import numpy, rbtw", {}, "None True"),                  # NumPy first: OpenBLAS's default
    ("import numpy, rbtw", {"OPENBLAS_NUM_THREADS": "1"}, "None False"),    # one BLAS thread
    ("import numpy, rbtw", {"OMP_NUM_THREADS": "1"}, "None False"),
])
def test_openblas_spin_timeout_is_set_before_numpy_loads(first, env, want):
    """rbtw imported before NumPy shortens OpenBLAS's spin after each call (a user's value
    wins); where that was too late, packed products stay on one thread (blas_may_spin)."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", SPIN_PROBE.format(first=first)], env={**base, **env},
                         capture_output=True, text=True, check=True).stdout.split()
    assert " ".join(out) == want


# ------------------------------------------------------------------------------------ layouts


def avx2_by_hand(q, kind):
    """Plain-Python recomputation of packing.avx2_layout."""
    g, k = q.shape
    per = 10 if kind == "binary" else 5
    nw = max(1, -(-k // (3 * per)))
    out = np.zeros((-(-g // 8), nw, 8), np.uint32)
    for r in range(g):
        for w in range(nw):
            word = 0
            for n in range(per):
                for i in range(3):
                    c = 3 * (per * w + n) + i
                    if c < k and q[r, c] == 1:
                        word |= 1 << (3 * n + i)
                    if c < k and q[r, c] == -1 and kind == "ternary":
                        word |= 1 << (15 + 3 * n + i)
            out[r // 8, w, r % 8] = word
    return out


@settings(max_examples=30, deadline=None)
@given(kind=st.sampled_from(KINDS), g=st.integers(1, 20), k=st.integers(1, 70), seed=st.integers(0, 2**32 - 1))
def test_avx2_and_portable_layouts_match_their_definitions(kind, g, k, seed):
    q, _ = case(seed, kind, g, k, 0)
    np.testing.assert_array_equal(packing.avx2_layout(q, kind), avx2_by_hand(q, kind))
    pm = pack(q, kind)
    lay = packing.portable_layout(pm)                         # (RB, NB, 8) code bytes
    for r in range(g):
        codes = lay[r // 8, :, r % 8].astype(int)             # (NB,)
        if kind == "binary":                                  # plus bits, 8 columns a byte
            row = np.unpackbits(codes.astype(np.uint8), bitorder="little")
            np.testing.assert_array_equal(row[:k], q[r] == 1)
            assert not row[k:].any()
        else:                                                 # base 3: digit i = q + 1, 5 a byte
            digits = np.array([[c // 3 ** i % 3 for i in range(5)] for c in codes]).reshape(-1)
            np.testing.assert_array_equal(digits[:k] - 1, q[r])
            assert np.all(digits[k:] == 1) and codes.max() < 243


# --------------------------------------------------------------------------- routing (product)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("b", [1, 2, 5, 64])
def test_product_is_packed_or_dense_and_identical_either_way(kind, b, monkeypatch):
    q, X = case(b, kind, 260, 300, b)                         # G·K above DENSE_BELOW
    pm = pack(q, kind)
    packed = ops.packed_wins(pm, b)
    calls = []
    monkeypatch.setattr(ops, "matmul", lambda *a, **kw: calls.append(1) or ops_matmul(*a, **kw))
    Y = product(pm, X)
    assert bool(calls) == packed                              # the rule picked the kernel
    np.testing.assert_array_equal(Y, X @ q.T)                 # integer inputs: exact either way
    Xf = np.random.default_rng(b).standard_normal((b, 300)).astype(np.float32)
    dense = Xf @ q.T.astype(np.float32)
    np.testing.assert_allclose(product(pm, Xf), dense, rtol=0, atol=1e-4 * np.abs(Xf).sum())


ops_matmul = ops.matmul


def test_routing_rule_follows_size_columns_and_batch():
    big = {kind: pack(np.ones((4000, 1000), np.int8), kind) for kind in KINDS}
    narrow = {kind: pack(np.ones((4000, 50), np.int8), kind) for kind in KINDS}
    tiny = pack(np.ones((40, 50), np.int8), "binary")
    for path in isa.PATHS:
        assert not ops.packed_wins(tiny, 1, path)             # too small for tables to pay
        for kind in KINDS:
            most = ops.PACKED_MAX_BATCH[(path, kind)]
            wide_cols, wide_most = ops.PACKED_WIDE.get((path, kind), (1 << 30, most))
            most_big = max(most, wide_most) if 1000 >= wide_cols else most   # big has K = 1000
            assert ops.packed_wins(big[kind], 1, path) == (most_big >= 1)
            assert most_big == 0 or ops.packed_wins(big[kind], most_big, path)
            assert not ops.packed_wins(big[kind], most_big + 1, path)
            assert ops.packed_wins(narrow[kind], 1, path) == (most >= 1 and ops.PACKED_MIN_COLS[(path, kind)] <= 50)
            assert not ops.packed_wins(narrow[kind], most + 1, path)           # K = 50: not wide


# ----------------------------------------------------------------------------------- selection


def test_rbtw_kernels_override_and_errors(monkeypatch):
    monkeypatch.setattr(isa, "_selected", None)
    monkeypatch.setenv("RBTW_KERNELS", "portable")
    assert isa.select() == ("portable", "set by RBTW_KERNELS")
    monkeypatch.setattr(isa, "_selected", None)
    monkeypatch.setenv("RBTW_KERNELS", "sse9")
    with pytest.raises(UserError, match="choose one of avx512, avx2, portable"):
        isa.select()
    missing = [p for p in isa.PATHS if p not in isa.runnable()]
    if missing:
        monkeypatch.setattr(isa, "_selected", None)
        monkeypatch.setenv("RBTW_KERNELS", missing[0])
        with pytest.raises(UserError, match=f"lacks {isa.NEEDS[missing[0]]}"):
            isa.select()
    monkeypatch.setattr(isa, "_selected", None)
    monkeypatch.delenv("RBTW_KERNELS")
    assert isa.select()[0] == isa.runnable()[0]
    monkeypatch.setattr(isa, "_selected", None)


@pytest.mark.parametrize("lacking", ["avx512", "avx2"])
def test_rbtw_kernels_naming_a_path_this_cpu_lacks_is_refused_on_any_host(monkeypatch, lacking):
    """The refusal of a path the CPU lacks, checked on every host: the runnable set is narrowed
    as a CPU without that instruction set would have it."""
    narrowed = [p for p in isa.PATHS if p == "portable" or (lacking == "avx512" and p == "avx2")]
    monkeypatch.setattr(isa, "runnable", lambda: narrowed)
    monkeypatch.setattr(isa, "_selected", None)
    monkeypatch.setenv("RBTW_KERNELS", lacking)
    with pytest.raises(UserError, match=f"lacks {isa.NEEDS[lacking]}"):
        isa.select()
    monkeypatch.setattr(isa, "_selected", None)
    monkeypatch.setenv("RBTW_KERNELS", "portable")
    assert isa.select() == ("portable", "set by RBTW_KERNELS")
    monkeypatch.setattr(isa, "_selected", None)
    monkeypatch.delenv("RBTW_KERNELS")
    assert isa.select()[0] == narrowed[0]
    monkeypatch.setattr(isa, "_selected", None)


def test_info_system_names_the_path_and_rejects_a_bad_override(monkeypatch):
    monkeypatch.setattr(isa, "_selected", None)
    out = CliRunner().invoke(main, ["info", "--system"], catch_exceptions=False)
    assert out.exit_code == 0 and f"kernel path: {isa.runnable()[0]}" in out.output
    threads = out.output.splitlines()[-1]                     # how packed products use threads
    assert threads.startswith("packed products on ") and "OpenBLAS spin after a call: " in threads
    assert ("on one thread" in threads) == ops.blas_may_spin()
    monkeypatch.setattr(isa, "_selected", None)
    monkeypatch.setenv("RBTW_KERNELS", "sse9")
    out = CliRunner().invoke(main, ["info", "--system"], catch_exceptions=False)
    assert out.exit_code == 2 and out.output.count("\n") == 1 and "error: RBTW_KERNELS" in out.output
    monkeypatch.setattr(isa, "_selected", None)


GENERIC_SCRIPT = """
import numpy as np
from rbtw.kernels import isa, ops, pack
assert isa.runnable() == ["portable"], isa.runnable()
assert isa.path() == "portable"
rng = np.random.default_rng(0)
for kind, alphabet in (("binary", [-1, 1]), ("ternary", [-1, 0, 1])):
    for g, k, b in ((1, 1, 2), (17, 31, 3), (33, 70, 5), (80, 97, 4)):
        q = rng.choice(alphabet, size=(g, k)).astype(np.int8)
        pm = pack(q, kind)
        X = rng.integers(-8, 9, size=(b, k)).astype(np.float32)
        assert np.array_equal(ops.matvec(pm, X[0]), q @ X[0]), (kind, g, k)
        assert np.array_equal(ops.matmul(pm, X), X @ q.T), (kind, g, k, b)
print("portable ok")
"""


def test_portable_path_compiled_for_a_generic_cpu_agrees():
    # NUMBA_CPU_NAME=generic compiles for a CPU without any vector extension beyond the
    # baseline; isa must then offer only the portable path (cached by Numba after one run).
    env = dict(os.environ, NUMBA_CPU_NAME="generic",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("NUMBA_CPU_FEATURES", None)
    env.pop("RBTW_KERNELS", None)
    done = subprocess.run([sys.executable, "-c", GENERIC_SCRIPT], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "portable ok" in done.stdout
