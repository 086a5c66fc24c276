"""Benchmark: where the packed kernels beat the dense product when jitted code calls them.

    PYTHONPATH=$PWD python3 bench/jit_routing.py [--paths avx512 avx2 portable] [--out bench/results/jit_routing.md]

The packed engine's steps and the emulator call products from inside Numba
(rbtw.kernels.jitops.product).  There a dense product is a jitted loop over Qᵀ per row; the BLAS
route jitted code could take for more rows is Numba's np.dot, which links SciPy's BLAS, not
NumPy's.  This script measures dense /
packed time ratios (dense: jitops.product's row loop for B 1, Numba's np.dot for more rows)
for LSTM-shaped matrices (G = 4H rows, K = H columns,
binary and ternary) over batches B, one kernel path per child process (RBTW_KERNELS), 1 thread,
the two routes taking turns, median of 7 rounds.  Two things were read off these tables:
JIT_ROW_MIN_COLS in rbtw/kernels/ops.py (B 1: from how many columns the packed matvec beats the
jitted loop), and that for B > 1 Numba's np.dot is too slow to use (it ran 1.4-1.7x slower than
NumPy's BLAS on the same shapes here), so rbtw.infer computes dense products of more rows with
NumPy between jitted steps and routes them as rbtw.kernels.product does.  The route shown is
what the packed engine takes (p packed, d dense; for B > 1 the dense product it takes is NumPy's,
not the one timed here).

Dimension legend: H hidden, G = 4H rows, K = H columns, B batch rows (1 or a multiple of 4, as
the engine pads them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ONE = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS")
HIDDEN = (64, 128, 256, 512, 1000)
BATCHES = (1, 4, 8, 16, 32, 64, 128, 256)


def child():
    sys.path.insert(0, str(ROOT))
    import numpy as np
    from numba import njit

    @njit(cache=False)
    def numba_dot(X, qt, Y):
        """Y[:, :G] = X Qᵀ by Numba's np.dot (SciPy's BLAS): the batch route jitted code would take."""
        Y[:, :qt.shape[1]] = np.dot(X, qt)

    import rbtw  # noqa: F401  (before NumPy's BLAS starts: OpenBLAS's spin timeout)
    from rbtw.kernels import isa, jitops
    from rbtw.kernels.ops import dense_t, packed_wins
    from rbtw.kernels.packing import pack
    path = isa.path()
    number = jitops.PATH_ID[path]
    rng = np.random.default_rng(0)
    rows = []
    for kind in ("binary", "ternary"):
        values = (-1, 1) if kind == "binary" else (-1, 0, 1)
        for H in HIDDEN:
            G, K = 4 * H, H
            pm = pack(rng.choice(values, (G, K)).astype(np.int8), kind)
            lay, nw = pm.path_layout(path)
            qt = dense_t(pm)
            for B in BATCHES:
                X = rng.standard_normal((B, K)).astype(np.float32)
                Y = np.zeros((B, 16 * -(-G // 16)), np.float32)        # (B, GP)
                ternary = kind == "ternary"
                routes = {"packed": lambda: jitops.product(number, lay, nw, ternary, 1, qt, X, Y),
                          "dense": (lambda: jitops.product(number, lay, 0, ternary, 1, qt, X, Y)) if B == 1
                          else (lambda: numba_dot(X, qt, Y))}
                for f in routes.values():
                    f()                                                 # compile, warm caches
                reps = max(1, int(2e8 // (G * K * B)))
                times = {name: [] for name in routes}
                for r in range(7):
                    for name in (("packed", "dense") if r % 2 else ("dense", "packed")):
                        t = time.perf_counter()
                        for _ in range(reps):
                            routes[name]()
                        times[name].append((time.perf_counter() - t) / reps)
                ratio = float(np.median(times["dense"]) / np.median(times["packed"]))
                rows.append({"kind": kind, "H": H, "B": B, "dense_over_packed": ratio,
                             "routed": "packed" if packed_wins(pm, B, path, jitted=True) else "dense"})
    return {"path": path, "isa": isa.describe(), "rows": rows}


def table(entry):
    out = [f"### {entry['path']}", "", *[f"- {line}" for line in entry["isa"]], "",
           "dense time (jitted) / packed time (above 1: packed faster); in brackets the packed engine's route "
           "(p packed, d dense: for B > 1 NumPy's product, not the one timed)", "",
           "| export | H (= K) | " + " | ".join(f"B {b}" for b in BATCHES) + " |",
           "|---|---|" + "---|" * len(BATCHES)]
    for kind in ("binary", "ternary"):
        for H in HIDDEN:
            cells = {r["B"]: r for r in entry["rows"] if r["kind"] == kind and r["H"] == H}
            out.append(f"| {kind} | {H} | " + " | ".join(
                f"{cells[b]['dense_over_packed']:.2f} ({cells[b]['routed'][0]})" for b in BATCHES) + " |")
    return out + [""]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--paths", nargs="+", default=["avx512", "avx2", "portable"])
    ap.add_argument("--out", default=str(ROOT / "bench/results/jit_routing.md"))
    ap.add_argument("--child", action="store_true")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child()))
        return
    lines = ["# Packed vs dense products called from jitted code (rbtw.kernels.jitops.product)", "",
             "Produced by `PYTHONPATH=$PWD python3 bench/jit_routing.py --paths " + " ".join(args.paths) + "`",
             "(module docstring: what is measured and why).  1 thread; median of 7 rounds, the routes "
             "taking turns.", ""]
    for path in args.paths:
        env = dict(os.environ, RBTW_KERNELS=path, **{k: "1" for k in ONE})
        done = subprocess.run([sys.executable, __file__, "--child"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              text=True, check=True)
        lines += table(json.loads(done.stdout.strip().splitlines()[-1]))
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
