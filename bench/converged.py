"""Collect the converged PTB-character study (bench/converged.sh) into results a reader can check.

    python3 bench/converged.py [OUT] [--results bench/results]

For every run directory under OUT (named VARIANT-SCHEDULE-sSEED): the configuration, validation
BPC after every epoch, wall time, whether it converged (the last epoch improved validation BPC
by less than 0.005), and test BPC under three evaluation conventions from the same checkpoint:

    population   population BN statistics, deterministic weights (what hardware runs; default)
    official     the test batch's own statistics, freshly sampled weights (the official code)
    expected     population statistics, E[W^q] = clip(W, -α, α) (a float reference)

Per variant: mean test BPC with a 95 % Student-t interval over seeds; per claim the paired gap
(variant − fp, same seed and schedule) with its interval.  Writes RESULTS/converged.json,
RESULTS/converged.md and RESULTS/curves-converged.png.  Conventions are cached in each run
directory (conventions.json), so re-running is cheap.
"""

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats as sps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rbtw.errors import UserError  # noqa: E402

CONVENTIONS = {"population": ("deterministic", False), "official": ("sampled", True),
               "expected": ("expected", False)}
CLAIMS = [("ternary", 0.02, "≤"), ("binary", 0.06, "≤"), ("binaryconnect", 0.5, "≥")]
NAME = re.compile(r"^(?P<variant>[a-z]+)-(?P<schedule>[a-z]+)-s(?P<seed>\d+)$")


def read_events(run_dir):
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def conventions(run_dir, config):
    """Test BPC of the run's checkpoint under each convention (cached in conventions.json)."""
    cache = run_dir / "conventions.json"
    if cache.exists():
        return json.loads(cache.read_text())
    from rbtw.checkpoint import load_checkpoint
    from rbtw.models import ModelSpec
    from rbtw.train import TrainConfig, evaluate, load_task_data
    ckpt = load_checkpoint(run_dir / "checkpoint.npz")
    spec = ModelSpec.from_dict(ckpt.meta["spec"])
    cfg = TrainConfig.from_dict(config)
    data = load_task_data(cfg)
    out = {}
    for name, (weights, batch_stats) in CONVENTIONS.items():
        if cfg.quant == "none" and weights != "deterministic":
            weights = "deterministic"  # full precision: only the statistics differ
        out[name] = evaluate(ckpt.params, ckpt.stats, spec, data, "test", cfg, weights=weights,
                             batch_stats=batch_stats, max_batches=None)["bpc"]
    cache.write_text(json.dumps(out, indent=1))
    return out


def collect(out_dir):
    records = []
    for run_dir in sorted(p for p in Path(out_dir).iterdir() if (p / "config.json").exists()):
        m = NAME.match(run_dir.name)
        if not m:
            continue
        config = json.loads((run_dir / "config.json").read_text())
        events = read_events(run_dir)
        epochs = [e for e in events if e.get("event") == "epoch"]
        test = [e for e in events if e.get("event") == "test"]
        valid = [round(e["valid_bpc"], 5) for e in epochs]
        rec = dict(name=run_dir.name, variant=m["variant"], schedule=m["schedule"], seed=int(m["seed"]),
                   cell=config["cell"], hidden=config["hidden"], epochs=config["epochs"],
                   minibatches=epochs[-1]["step"] if epochs else 0, valid_bpc=valid,
                   wall_seconds=round(sum(e.get("seconds", 0) for e in epochs), 1),
                   status="finished" if test else f"running ({len(epochs)}/{config['epochs']} epochs)")
        if test:
            rec["converged"] = len(valid) >= 2 and valid[-2] - valid[-1] < 0.005
            rec["last_epoch_gain"] = round(valid[-2] - valid[-1], 5) if len(valid) >= 2 else None
            rec["test_bpc"] = conventions(run_dir, config)
        records.append(rec)
    return records


def interval(values):
    """Mean and 95 % Student-t half-width (nan for fewer than two values)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return float(x.mean()) if len(x) else math.nan, math.nan
    half = sps.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean()), float(half)


def fmt(mean, half):
    return f"{mean:.3f}" if math.isnan(half) else f"{mean:.3f} ± {half:.3f}"


def table(records, convention):
    done = [r for r in records if "test_bpc" in r]
    lines = [f"| variant | schedule | runs | test BPC ({convention}) mean ± 95 % CI | gap to fp, paired by seed "
             "| claim | holds? |", "|---|---|---|---|---|---|---|"]
    fp = {(r["schedule"], r["seed"]): r["test_bpc"][convention] for r in done if r["variant"] == "fp"}
    groups = [(v, s) for v in ("fp", "ternary", "binary", "binaryconnect") for s in ("constant", "cosine")]
    for variant, schedule in groups:
        rows = [r for r in done if r["variant"] == variant and r["schedule"] == schedule]
        if not rows:
            continue
        mean, half = interval([r["test_bpc"][convention] for r in rows])
        gaps = [r["test_bpc"][convention] - fp[(r["schedule"], r["seed"])] for r in rows
                if (r["schedule"], r["seed"]) in fp]
        claim = next((c for c in CLAIMS if c[0] == variant), None)
        gap_text, verdict, claim_text = "—", "—", "—"
        if gaps and variant != "fp":
            g, gh = interval(gaps)
            gap_text = f"{g:+.3f}" + ("" if math.isnan(gh) else f" ± {gh:.3f}") + f" (n={len(gaps)})"
            if claim:
                _, bound, op = claim
                claim_text = f"gap {op} {bound}"
                lo, hi = (g - gh, g + gh) if not math.isnan(gh) else (g, g)
                if op == "≤":
                    verdict = "holds" if hi <= bound else ("does not hold" if lo > bound else "undecided")
                else:
                    verdict = "holds" if lo >= bound else ("does not hold" if hi < bound else "undecided")
                if math.isnan(gh):
                    verdict += " (one seed: no interval)"
        lines.append(f"| {variant} | {schedule} | {len(rows)} | {fmt(mean, half)} | {gap_text} | {claim_text} "
                     f"| {verdict} |")
    return lines


def report(records):
    lines = ["| run | status | epochs × minibatches | valid BPC per epoch | last-epoch gain | converged | "
             "test BPC population / official / expected | wall |", "|---|---|---|---|---|---|---|---|"]
    for r in records:
        t = r.get("test_bpc")
        tests = " / ".join(f"{t[c]:.3f}" for c in CONVENTIONS) if t else "—"
        gain = f"{r['last_epoch_gain']:.4f}" if r.get("last_epoch_gain") is not None else "—"
        lines.append(f"| {r['name']} | {r['status']} | {r['minibatches']} | "
                     f"{' '.join(f'{v:.3f}' for v in r['valid_bpc'])} | {gain} | {r.get('converged', '—')} | "
                     f"{tests} | {r['wall_seconds'] / 60:.0f} min |")
    out = [f"Collected {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `python3 bench/converged.py`; "
           f"runs by `bash bench/converged.sh` on {machine()}. Validation BPC is the whole valid split; "
           "test BPC the whole test split.", "", "### Every run", ""] + lines
    for convention in CONVENTIONS:
        out += ["", f"### Test BPC, {convention} convention", ""] + table(records, convention)
    return "\n".join(out)


def machine():
    """CPU model, cores and the widest vector instruction set (the fused path's Numba kernels use it)."""
    import os
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                 "unknown CPU")
    isa = "AVX-512" if "avx512f" in text else "AVX2" if "avx2" in text else "no AVX2"
    return f"{model}, {os.cpu_count()} cores, {isa}"


def plot(records, out_dir, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colours = {"fp": "C0", "ternary": "C1", "binary": "C2", "binaryconnect": "C3"}
    for r in records:
        if r["valid_bpc"]:
            ax.plot(range(1, len(r["valid_bpc"]) + 1), r["valid_bpc"], marker="o", ms=3,
                    color=colours.get(r["variant"], "k"), ls="-" if r["schedule"] == "cosine" else ":",
                    label=r["name"])
    ax.set(xlabel="epoch (784 minibatches)", ylabel="validation BPC", title="PTB characters, BN-LSTM H 256")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default="/work/runs/converged")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()
    if not Path(args.out).is_dir():
        sys.exit(f"error: {args.out} is not a directory of study runs (run bench/converged.sh first)")
    try:
        records = collect(args.out)
    except UserError as e:
        sys.exit(f"error: {e}")
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "converged.json").write_text(json.dumps(
        {"made": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runs": records}, indent=1) + "\n")
    text = report(records)
    (results / "converged.md").write_text(text + "\n")
    plot(records, args.out, results / "curves-converged.png")
    print(text)


if __name__ == "__main__":
    main()
