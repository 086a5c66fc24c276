"""Benchmark: bit-packed accumulate-only kernels vs NumPy float32 BLAS, and sampling speed.

    python3 bench/kernels.py [--quick] [--out bench/results/kernels.md]

Dimension legend: H hidden, X inputs, G = 4H fused gate rows, K = X columns, B batch.

Kernels.  One fused gate matrix Q (G, K) in {±1} (binary) or {−1, 0, +1} (ternary) is timed as
    packed:  rbtw.kernels.matvec(pm, x, path=P)  (B = 1)  and  matmul(pm, X, path=P)  (B > 1)
    BLAS:    W @ x and x @ W_h (B = 1),   X @ W.T and X @ W_h (B > 1),
             W = float32(Q) stored G × K,  W_h = Wᵀ stored K × G (the model's own layout)
in the same process, the three alternating, each the median of >= 7 timed runs (a run
repeats the call until it lasts >= --min-time seconds).  speed-up = the faster BLAS layout's
time / packed time.  One table per kernel path this machine runs (the selected one, and
the others through RBTW_KERNELS in the child's environment), and the selected path again
with 2 threads, beside its 1-thread times.

End to end.  Characters per second of ``rbtw sample`` (rbtw.generate.generate on the engine
that rbtw.api.load builds, batch 1) for an untrained, randomly initialised 1000-unit
binary BN-LSTM char model (50 symbols, as PTB char): PackedEngine vs DenseEngine (float32).

Threads.  Each thread setting runs in a child process whose environment sets
OPENBLAS_NUM_THREADS (read by OpenBLAS when NumPy is imported; OMP_NUM_THREADS is left alone,
it would also size Numba's OpenMP threading layer) and
NUMBA_NUM_THREADS; the child also calls numba.set_num_threads and, when threadpoolctl is
installed, threadpool_limits.  OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are passed through as
they are (the header shows them and the OpenBLAS core in use): unset them for the run.
rbtw is imported before NumPy, as the CLI does, so OPENBLAS_THREAD_TIMEOUT is rbtw's 4 unless
set (header): OpenBLAS threads then sleep at once after a call instead of spinning ~0.1 s.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import rbtw  # noqa: E402,F401  (before NumPy, as the CLI: sets OpenBLAS's spin timeout; rbtw/__init__.py)
HIDDEN = (256, 512, 1000, 2048)
QUICK_HIDDEN = (256, 1000)
KINDS = ("binary", "ternary")
BATCHES = (1, 4, 16, 64)
QUICK_BATCHES = (1, 4, 64)
E2E_THREADS = ((1, 1), (2, 2), (2, 1), (1, 2))    # (numba, OpenBLAS)
QUICK_E2E_THREADS = ((1, 1), (2, 2))
# No idle gap before timed runs, at any thread count: a 0.15 s sleep before each run (once used
# for 2 threads, so that the other library's spinning threads went idle) slowed the run after it
# by up to 1.5x on one thread too (2-core VM, 2026-11-30), so 2-thread rows were penalised
# against 1-thread rows.  OpenBLAS no longer spins (OPENBLAS_THREAD_TIMEOUT=4, rbtw/__init__.py).
GAP = 0.0
# speed-up targets: (path, B, kind) -> speed-up at H >= 1000
TARGETS = {("avx512", 1, "binary"): 5.0, ("avx512", 1, "ternary"): 3.0,
           ("avx512", 64, "binary"): 1.5, ("avx512", 64, "ternary"): 1.0,
           ("avx2", 1, "binary"): 5.0, ("avx2", 1, "ternary"): 3.0,
           ("avx2", 64, "binary"): 1.0, ("avx2", 64, "ternary"): 0.8,
           ("portable", 1, "binary"): 2.0, ("portable", 1, "ternary"): 1.5}


# ------------------------------------------------------------------------------------ timing


def _run(fn, reps):
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def _calibrate(fn, min_time):
    """Repetitions so that one timed run lasts >= min_time seconds."""
    fn()
    reps = 1
    while True:
        dt = _run(fn, reps) * reps
        if dt >= min_time:
            return reps
        reps = max(2 * reps, int(reps * 1.2 * min_time / max(dt, 1e-9)))


def interleaved_medians(fns, runs, min_time, gap=0.0):
    """Median seconds per call of each of fns, their timed runs taking turns.

    gap: seconds of sleep before each timed run, so that the worker threads of the other
    library (OpenBLAS spins ~2^28 cycles after a call, OpenMP a while too) have gone idle
    and do not compete with this one for the 2 cores.
    """
    return [m for m, _ in interleaved_stats(fns, runs, min_time, gap)]


def interleaved_stats(fns, runs, min_time, gap=0.0):
    """(median, fastest) seconds per call of each of fns, their timed runs taking turns.

    On a shared machine the fastest run is the one least disturbed by other jobs."""
    reps = [_calibrate(f, min_time) for f in fns]
    times = [[] for _ in fns]
    for _ in range(runs):
        for f, r, t in zip(fns, reps, times):
            time.sleep(gap)
            t.append(_run(f, r))
    return [(statistics.median(t), min(t)) for t in times]


# ------------------------------------------------------------------------------------ children


def _limit_threads(n_numba, n_blas):
    import numba
    numba.set_num_threads(n_numba)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return "environment (OPENBLAS_NUM_THREADS)"
    threadpool_limits(n_blas)
    return "threadpoolctl + environment"


def _threading_layer():
    """Numba's threading layer, after running one parallel kernel."""
    import numba
    try:
        return numba.threading_layer()
    except ValueError:
        return "?"


def kernel_rows(threads, hidden, batches, runs, min_time):
    """One dict per (kind, H, X, B) of the kernel benchmark at ``threads`` threads, on the
    kernel path rbtw.kernels.isa selects in this process (RBTW_KERNELS set by the parent)."""
    import numpy as np

    from rbtw.kernels import isa, ops, pack

    path = isa.path()
    rng = np.random.default_rng(0)
    rows = []
    for H in hidden:
        for X in (H, 50):
            G, K = 4 * H, X
            for kind in KINDS:
                alphabet = [-1, 1] if kind == "binary" else [-1, 0, 1]
                q = rng.choice(np.array(alphabet, np.int8), size=(G, K))       # (G, K)
                pm = pack(q, kind)
                W = q.astype(np.float32)                                       # (G, K)
                W_h = np.ascontiguousarray(W.T)                                # (K, G)
                lay_bytes = pm.path_layout(path)[0].nbytes
                for B in batches:
                    Xb = rng.standard_normal((B, K)).astype(np.float32)       # (B, K)
                    y = [np.empty((B, G), np.float32) for _ in range(3)]
                    if B == 1:
                        x = Xb[0]
                        fns = [lambda: np.matmul(W, x, out=y[0][0]),           # sgemv, W (G, K)
                               lambda: np.matmul(x, W_h, out=y[1][0]),         # x @ W_h (K, G)
                               lambda: ops.matvec(pm, x, out=y[2][0], path=path)]
                    else:
                        WT = W.T
                        fns = [lambda: np.matmul(Xb, WT, out=y[0]),            # sgemm
                               lambda: np.matmul(Xb, W_h, out=y[1]),
                               lambda: ops.matmul(pm, Xb, out=y[2], path=path)]
                    (t_a, m_a), (t_b, m_b), (t_packed, m_packed) = interleaved_stats(
                        fns, runs, min_time, gap=GAP if threads > 1 else 0.0)
                    err = float(np.abs(y[0] - y[2]).max() / max(np.abs(y[0]).max(), 1e-30))
                    t_blas = min(t_a, t_b)
                    rows.append(dict(path=path, threads=threads, kind=kind, H=H, X=X, B=B, G=G, K=K,
                                     t_blas_w=t_a, t_blas_wh=t_b, t_blas=t_blas, t_packed=t_packed,
                                     speedup=t_blas / t_packed, speedup_fastest=min(m_a, m_b) / m_packed, packed_gbs=lay_bytes / t_packed / 1e9,
                                     bits=8 * lay_bytes / (G * K), rel_err=err,
                                     routed_packed=ops.packed_wins(pm, B, path)))
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def e2e_row(n_numba, n_blas, length, runs):
    """Characters per second of generate() on the packed and the dense engine."""
    import numpy as np

    from rbtw import models
    from rbtw.checkpoint import save_checkpoint
    from rbtw.api import load
    from rbtw.generate import generate
    from rbtw.config import TrainConfig

    vocab = [chr(c) for c in range(48, 98)]                                    # 50 symbols
    config = TrainConfig(task="ptb_char", hidden=1000, quant="binary", stochastic=False, bn=True)
    spec = models.ModelSpec(kind="char", n_in=50, n_out=50, hidden=1000, quant="binary", bn=True,
                            t_max=100)
    params, stats = models.init(spec, np.random.default_rng(0))
    meta = {"config": config.to_dict(), "spec": spec.to_dict(), "vocab": vocab, "task": config.task}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random-char-1000-binary.npz"
        save_checkpoint(path, meta, params, stats, {})
        engines = {name: load(str(path), engine=name).engine for name in ("packed", "dense")}

    def sampler(engine):
        return lambda: generate(engine, [0], length, rng=np.random.default_rng(0), temperature=1.0)

    same = sampler(engines["packed"])() == sampler(engines["dense"])()
    gap = GAP if max(n_numba, n_blas) > 1 else 0.0
    t_dense, t_packed = interleaved_medians([sampler(engines["dense"]), sampler(engines["packed"])],
                                            runs, 0.0, gap)
    return dict(numba=n_numba, blas=n_blas, length=length, cps_packed=length / t_packed,
                cps_dense=length / t_dense, ratio=t_dense / t_packed, same_text=same)


def child(args):
    how = _limit_threads(args.numba_threads, args.blas_threads)
    if args.child == "kernels":
        hidden = QUICK_HIDDEN if args.quick else HIDDEN
        batches = QUICK_BATCHES if args.quick else BATCHES
        out = kernel_rows(args.numba_threads, hidden, batches, args.runs, args.min_time)
    else:
        out = e2e_row(args.numba_threads, args.blas_threads, 100 if args.quick else 300,
                      3 if args.quick else 7)
    print(json.dumps({"how": f"{how}; Numba threading layer {_threading_layer()}", "result": out}))


def spawn(mode, n_numba, n_blas, args, path=None):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(n_blas), MKL_NUM_THREADS=str(n_blas),
               NUMBA_NUM_THREADS=str(max(n_numba, 1)),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if path:
        env["RBTW_KERNELS"] = path
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode,
           "--numba-threads", str(n_numba), "--blas-threads", str(n_blas),
           "--runs", str(args.runs), "--min-time", str(args.min_time)] + (["--quick"] if args.quick else [])
    done = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------ report


def machine():
    """CPU model, cores and the widest vector instruction set (rbtw.machine, as every report names it)."""
    from rbtw.machine import describe
    return describe()


def cpu_flags():
    """The vector-relevant flags of /proc/cpuinfo and Numba's target features."""
    from rbtw.kernels import isa
    flags = set()
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = set(line.partition(":")[2].split())
                break
    keep = sorted(f for f in flags if f.startswith(("avx", "sse4", "fma", "bmi", "popcnt", "asimd", "neon", "sve")))
    lines = [f"CPU flags (/proc/cpuinfo, vector-relevant): {' '.join(keep) or '?'}"]
    return lines + isa.describe()


def loadavg():
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def openblas_core():
    """OpenBLAS's kernel family in this process (the core it detected or was told)."""
    import ctypes

    import numpy  # noqa: F401  (loads OpenBLAS)
    try:
        maps = Path("/proc/self/maps").read_text().split()
    except OSError:
        return "?"
    for lib in sorted({m for m in maps if "openblas" in m.lower()}):
        handle = ctypes.CDLL(lib)
        for name in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename",
                     "openblas_get_corename64_", "openblas_get_corename"):
            if hasattr(handle, name):
                fn = getattr(handle, name)
                fn.restype = ctypes.c_char_p
                return fn().decode()
    return "?"


def versions():
    import numba
    import numpy as np
    blas = "?"
    try:
        info = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{info.get('name')} {info.get('version')}"
    except Exception:
        pass
    env = ", ".join(f"{k}={os.environ.get(k, 'unset')}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                             "OPENBLAS_THREAD_TIMEOUT"))
    return (f"Python {platform.python_version()}, NumPy {np.__version__} ({blas}, core {openblas_core()}; "
            f"{env}), Numba {numba.__version__}")


def _target(r):
    t = TARGETS.get((r["path"], r["B"], r["kind"])) if r["H"] >= 1000 and r["X"] == r["H"] else None
    return "" if t is None else (f"≥{t:g}× " + ("met" if r["speedup"] >= t else "**missed**"))


def kernel_table(rows):
    lines = ["| kind | H | X | B | Q (G×K) | BLAS `W@x` µs | BLAS `x@W_h` µs | packed µs | speed-up "
             "(vs faster BLAS) | target | speed-up of fastest runs | routed to | packed GB/s | bits/weight |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['kind']} | {r['H']} | {r['X']} | {r['B']} | {r['G']}×{r['K']} | "
                     f"{1e6 * r['t_blas_w']:.1f} | {1e6 * r['t_blas_wh']:.1f} | {1e6 * r['t_packed']:.1f} | "
                     f"**{r['speedup']:.2f}×** | {_target(r)} | {r['speedup_fastest']:.2f}× | "
                     f"{'packed' if r['routed_packed'] else 'dense'} | {r['packed_gbs']:.1f} | {r['bits']:.2f} |")
    return "\n".join(lines)


def thread_table(one, two):
    """Packed times at 1 and 2 threads of the same path, and the faster BLAS at each."""
    lines = ["| kind | H | X | B | packed 1t µs | packed 2t µs | 2t / 1t time | BLAS 1t µs | BLAS 2t µs |",
             "|---|---|---|---|---|---|---|---|---|"]
    for a in one:
        b = _pick(two, kind=a["kind"], H=a["H"], X=a["X"], B=a["B"])
        if b is None:
            continue
        ratio = b["t_packed"] / a["t_packed"]
        lines.append(f"| {a['kind']} | {a['H']} | {a['X']} | {a['B']} | {1e6 * a['t_packed']:.1f} | "
                     f"{1e6 * b['t_packed']:.1f} | {'**' if ratio > 1.1 else ''}{ratio:.2f}{'**' if ratio > 1.1 else ''} | "
                     f"{1e6 * a['t_blas']:.1f} | {1e6 * b['t_blas']:.1f} |")
    return "\n".join(lines)


def e2e_table(rows):
    lines = ["| numba threads | OpenBLAS threads | packed chars/s | dense chars/s | packed / dense | same text |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['numba']} | {r['blas']} | {r['cps_packed']:.0f} | {r['cps_dense']:.0f} | "
                     f"**{r['ratio']:.2f}×** | {'yes' if r['same_text'] else 'no'} |")
    return "\n".join(lines)


def _pick(rows, **key):
    for r in rows:
        if all(r[k] == v for k, v in key.items()):
            return r
    return None


def summary(rows):
    """Targets met or missed, and where routing sends each case, for one path's 1-thread rows."""
    out = []
    hit = [r for r in rows if _target(r)]
    missed = [r for r in hit if "missed" in _target(r)]
    if hit:
        out.append(f"- targets (H ≥ 1000, X = H): {len(hit) - len(missed)} of {len(hit)} met" +
                   ("; missed: " + "; ".join(f"{r['kind']} H={r['H']} B={r['B']} {r['speedup']:.2f}×"
                                              for r in missed) if missed else "."))
    wrong = [r for r in rows if r["routed_packed"] != (r["speedup"] > 1.0)]
    out.append("- routing (rbtw.kernels.ops.packed_wins): " + (
        "agrees with every row of this table (packed exactly where it is faster)." if not wrong else
        "differs from this table at " + "; ".join(
            f"{r['kind']} H={r['H']} X={r['X']} B={r['B']} ({r['speedup']:.2f}×, routed "
            f"{'packed' if r['routed_packed'] else 'dense'})" for r in wrong)))
    return "\n".join(out)


PATH_NOTES = {
    "avx512": "AVX-512F: 16 lanes, 32-entry tables (5 binary / 3 ternary columns), one `vpermi2ps` per 16 look-ups",
    "avx2": "AVX2: 8 lanes, 8-entry tables of 3 columns, one `vpermps` per 8 look-ups (ternary: a plus and a minus look-up)",
    "portable": "portable: plain loops over byte-indexed tables (binary: 8 columns a look-up, 256 entries; ternary: 5 columns a look-up, base-3 codes, 243 entries), "
                "compiled by LLVM for this CPU (selected here only through RBTW_KERNELS)",
}


def report(args, tables, threads2, e2e, how, load0, load1, started, selected):
    cmd = "python3 bench/kernels.py" + "".join(f" {a}" for a in sys.argv[1:])
    sections = []
    for path, rows in tables.items():
        sections.append(f"### {path} ({'selected on this machine' if path == selected else 'RBTW_KERNELS=' + path})"
                        f"\n\n{PATH_NOTES[path]}.\n\n{kernel_table(rows)}\n\n{summary(rows)}")
    flags = "\n".join(f"  - {line}" for line in cpu_flags())
    e2e_section = ""
    if e2e:
        e2e_section = f"""## End to end: `rbtw sample`, 1000-unit binary char model, batch 1

An untrained, randomly initialised model (BN-LSTM, 50 symbols, H = 1000, binary,
deterministic weights, population statistics): speed does not depend on training. Both
engines are built by `rbtw.api.load` as `rbtw sample --engine packed|dense` builds them,
then `rbtw.generate.generate` draws {e2e[0]['length']} characters from a 1-character prime
(median of {3 if args.quick else 7} runs). "same text" = both engines drew the same characters.
The packed engine uses the path selected on this machine ({selected}) and its routing.

{e2e_table(e2e)}
"""
    return f"""# Packed binary/ternary kernels vs float32 BLAS

Produced by `{cmd}` (from the project root) on {started} UTC.

- machine: {machine()}
{flags}
- software: {versions()}
- 1-minute load average: {load0} at the start, {load1} at the end. The 2 cores are shared
  with other jobs, so every time here is noisy (BLAS and packed alike; they alternate, so
  load falls on both); this benchmark itself adds 1 or 2.
- threads set by: {how}; each path and thread setting in its own process
- timing: median of {args.runs} runs per case, each run ≥ {args.min_time} s of repeated calls, the three
  products of a case taking turns in the same process
- weights: one fused gate matrix Q (4H × X); BLAS multiplies the same values as float32, in
  both layouts: `W @ x` / `X @ W.T` with W stored 4H × X, and `x @ W_h` / `X @ W_h` with W_h
  stored X × 4H (the model's layout). speed-up = the faster BLAS layout's median time / packed
  median time; "speed-up of fastest runs" = the same from each product's fastest run (the run
  least disturbed by other jobs on a shared machine).
  "routed to" = what `rbtw.kernels.product` (the engine's product) runs for this shape.
  "packed GB/s" = bytes of the path's kernel layout read per second.

## Kernels, 1 thread

{chr(10).join(chr(10) + s for s in sections)}

## Two threads ({selected})

The same products with 2 Numba and 2 OpenBLAS threads; "2t / 1t" above 1 (bold past 1.1)
means the second thread made the packed product slower.

{thread_table(tables[selected], threads2)}

{e2e_section}"""


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="H in {256, 1000}, B in {1, 4, 64}, shorter runs")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "kernels.md")
    p.add_argument("--runs", type=int, default=None, help="timed runs per case (median; >= 7)")
    p.add_argument("--min-time", type=float, default=None, help="seconds per timed run")
    p.add_argument("--no-e2e", action="store_true", help="skip the end-to-end sampling part")
    p.add_argument("--child", choices=["kernels", "e2e"], help=argparse.SUPPRESS)
    p.add_argument("--numba-threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--blas-threads", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    args.runs = args.runs or (7 if args.quick else 9)
    args.min_time = args.min_time if args.min_time is not None else (0.005 if args.quick else 0.02)
    if args.runs < 7:
        p.error("--runs must be at least 7")
    return args


def main():
    args = parse()
    if args.child:
        child(args)
        return
    from rbtw.kernels import isa
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    load0 = loadavg()
    selected = isa.path()
    tables, how, loads = {}, None, []
    for path in isa.runnable():
        print(f"kernels, {path}, 1 thread ...", file=sys.stderr, flush=True)
        loads.append(f"{path} 1t {loadavg()}")
        res = spawn("kernels", 1, 1, args, path)
        tables[path], how = res["result"], res["how"]
    print(f"kernels, {selected}, 2 threads ...", file=sys.stderr, flush=True)
    loads.append(f"{selected} 2t {loadavg()}")
    threads2 = spawn("kernels", 2, 2, args, selected)["result"]
    e2e = []
    for n_numba, n_blas in ([] if args.no_e2e else QUICK_E2E_THREADS if args.quick else E2E_THREADS):
        print(f"end to end, numba {n_numba} / OpenBLAS {n_blas} thread(s) ...", file=sys.stderr, flush=True)
        loads.append(f"e2e {n_numba}/{n_blas} {loadavg()}")
        e2e.append(spawn("e2e", n_numba, n_blas, args)["result"])
    text = report(args, tables, threads2, e2e, how, load0,
                  f"{loadavg()} (before each part: {', '.join(loads)})", started, selected)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(args.out)
    print(text)


if __name__ == "__main__":
    from rbtw.errors import run_script
    run_script(main)
