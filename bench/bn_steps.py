"""Benchmark: test BPC of the packed engine when BN tables are shared after step K.

    PYTHONPATH=$PWD python3 bench/bn_steps.py CHECKPOINT [CHECKPOINT ...] --data-dir DIR \\
        [--ks 1,2,5,10,20] [--out bench/results/bn_steps.md]

For every checkpoint (char LMs) and every K, the export with ``bn_steps=K`` (rbtw.export:
per-step tables for steps < K, one table from the pooled statistics of the later steps) runs
on the packed engine over the whole test split (segments of T from the initial state, as
``rbtw eval``); the last row is the per-step export (K = T_max).  The default K is the
smallest whose BPC is within TOLERANCE of T_max for every checkpoint.  Also reports each
export's size and the BN tables' share.  The checkpoints are measured in parallel, one process
each.
"""

import argparse
import datetime
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rbtw.checkpoint import load_checkpoint  # noqa: E402
from rbtw.export import build_export  # noqa: E402
from rbtw.export_format import size_breakdown, write_export
from rbtw.infer import PackedEngine  # noqa: E402
from rbtw.config import TrainConfig
from rbtw.evaluate import evaluate_engine
from rbtw.tasks import load_task_data  # noqa: E402

TOLERANCE = 0.005


def machine():
    """(this host as reports name it (rbtw.machine), the 1-minute load average)."""
    from rbtw.machine import describe
    return describe(), os.getloadavg()[0]


def measure(path, ks, data_dir):
    """Rows (K or None, bpc, export bytes, BN-table bytes) for one checkpoint."""
    ckpt = load_checkpoint(path)
    config = TrainConfig.from_dict(ckpt.meta["config"])
    config.eval_max_batches = None                     # the whole test split
    data = load_task_data(config, data_dir)
    rows = []
    for K in list(ks) + [None]:
        ex = build_export(ckpt.meta, ckpt.params, ckpt.stats, bn_steps=K)
        with tempfile.TemporaryDirectory() as tmp:
            size = write_export(Path(tmp) / "m.rbtw", ex)
        t = time.perf_counter()
        bpc = evaluate_engine(PackedEngine(ex), data, "test", config, max_batches=None)["bpc"]
        rows.append((K, bpc, size, size_breakdown(ex)["bn_tables"], time.perf_counter() - t))
        print(f"{path}: K={K or 'T_max'} bpc {bpc:.4f} size {size:,} ({rows[-1][4]:.0f} s)", flush=True)
    return config, ckpt.meta, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--ks", default="1,2,5,10,20")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "bn_steps.md"))
    args = ap.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    cpu, load0 = machine()
    with ProcessPoolExecutor(len(args.checkpoints)) as pool:       # one process per model
        futures = [pool.submit(measure, p, ks, args.data_dir) for p in args.checkpoints]
        results = [(p,) + f.result() for p, f in zip(args.checkpoints, futures)]
    _, load1 = machine()
    ok = [K for K in ks if all(next(b for k, b, *_ in rows if k == K) <= rows[-1][1] + TOLERANCE
                               for _, _, _, rows in results)]
    lines = ["# Shared BN tables after step K: test BPC of the packed engine", "",
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu}, "
             f"load average {load0:.1f} → {load1:.1f} (a shared machine).", "",
             "Command: `PYTHONPATH=$PWD python3 bench/bn_steps.py " + " ".join(sys.argv[1:]) + "`", ""]
    for path, config, meta, rows in results:
        base = rows[-1][1]
        lines += [f"## {config.quant} {'stochastic' if config.stochastic else 'deterministic'}, "
                  f"H {config.hidden}, T_max {config.seq_len}, {meta['epoch']} epoch(s), {meta['step']} minibatches",
                  "", f"checkpoint `{path}`; test split, whole (segments of {config.seq_len} from the initial state)", "",
                  "| K | test BPC | − T_max | export bytes | BN tables bytes | BN share |", "|---|---|---|---|---|---|"]
        for K, bpc, size, bn, _ in rows:
            lines.append(f"| {K or f'{config.seq_len} (T_max, per step)'} | {bpc:.4f} | {bpc - base:+.4f} | "
                         f"{size:,} | {bn:,} | {bn / size:.0%} |")
        lines.append("")
    lines.append(f"Smallest K within {TOLERANCE} BPC of T_max for every model: "
                 f"**{ok[0] if ok else 'none of ' + args.ks}**.")
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
