"""Benchmark: emulator throughput vs the packed inference engine; --compare table of a real model.

    PYTHONPATH=$PWD python3 bench/accel.py [--export PATH] [--out bench/results/accel.md]

Speed uses random-initialised binary char-LM exports (H = 256 and 1000, 50-symbol vocabulary;
weights do not change the work done), batch 1, one forward over T steps per run; median of
RUNS runs after a warm-up.  Both engines run the same export and the same ids.
"""

import argparse
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rbtw.accel import design as dm  # noqa: E402
from rbtw.accel.engine import AccelEngine  # noqa: E402
from rbtw.accel.randmodel import random_export  # noqa: E402
from rbtw.infer import PackedEngine  # noqa: E402

RUNS = 7


def steps_per_s(engine, ids):
    engine.forward(ids[:2])                                    # warm-up / JIT
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        engine.forward(ids)
        times.append(time.perf_counter() - t)
    return ids.size / statistics.median(times)


def speed_rows():
    rows = []
    for H, T in ((256, 400), (1000, 100)):
        rng = np.random.default_rng(H)
        ex = random_export(rng, hidden=H, quant="binary", kind="char", n_in=50, t_max=100)
        ids = rng.integers(0, 50, size=(T, 1))
        packed = steps_per_s(PackedEngine(ex), ids)
        for name in ("binary", "fp12"):
            emu = steps_per_s(AccelEngine(ex, dm.preset(name)), ids)
            rows.append((H, T, name, emu, packed))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--export", default="/tmp/accel2-run/model.rbtw")
    ap.add_argument("--out", default=str(ROOT / "bench/results/accel.md"))
    args = ap.parse_args()
    load0 = Path("/proc/loadavg").read_text().strip()
    rows = speed_rows()
    load1 = Path("/proc/loadavg").read_text().strip()
    cmd = [sys.executable, "-m", "rbtw.cli", "emulate", args.export, "--compare", "--steps", "20000"]
    compare = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                             env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    lines = ["# Accelerator emulator: speed and the fp12 / binary / ternary comparison", "",
             f"Command: `PYTHONPATH=$PWD python3 bench/accel.py --export {args.export}`", "",
             f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
             f"2 shared cores; /proc/loadavg before `{load0}`, after `{load1}`.", "",
             "## Throughput (batch 1, random-initialised binary char-LM exports, median of "
             f"{RUNS} runs)", "",
             "| H | T | emulated design | emulator steps/s | PackedEngine steps/s | ratio |", "|---|---|---|---|---|---|"]
    for H, T, name, emu, packed in rows:
        lines.append(f"| {H} | {T} | {name} | {emu:,.0f} | {packed:,.0f} | {emu / packed:.2f}× |")
    lines += ["", "## --compare on a small trained model", "",
              f"`{' '.join(['rbtw'] + cmd[3:])}` (binary BN-LSTM, H = 128, ptb_char, 1 epoch of 100 batches)", "",
              "```"] + compare.stdout.rstrip().splitlines() + ["```", ""]
    if compare.returncode:
        lines += ["stderr:", "```", compare.stderr, "```"]
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
