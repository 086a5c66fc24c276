"""Collect the converged PTB-character study (bench/converged.sh) into results a reader can check.

    python3 bench/converged.py [OUT ...] [--results bench/results]

For every run directory under each OUT (named VARIANT-SCHEDULE-sSEED): the configuration,
validation BPC after every epoch, wall time, whether it converged (the last epoch improved
validation BPC by less than 0.005; epochs past the warm-down's end run at its end rate, see
bench/converged.sh converge), and test BPC under three evaluation conventions from the same
checkpoint:

    population   population BN statistics, deterministic weights (what hardware runs; default)
    official     the test batch's own statistics, freshly sampled weights (the official code)
    expected     population statistics, E[W^q] = clip(W, -α, α) (a float reference)

Per (cell, H, variant): mean test BPC with a 95 % Student-t interval over seeds; per claim the
paired gap (variant − fp, same cell, H, seed and schedule) with its interval, for the final
checkpoints and for those at the warm-down's end where a run trained on past it.  Writes
RESULTS/converged.json, RESULTS/converged.md and RESULTS/curves-converged.png.  Conventions are
cached in each run directory by checkpoint step (conventions.json), so re-running is cheap.
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
CRITERION = 0.005   # converged: the last epoch improved validation BPC by less than this


def read_events(run_dir):
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def has_converged(valid):
    """Whether the validation BPC per epoch ``valid`` meets the convergence criterion."""
    return len(valid) >= 2 and valid[-2] - valid[-1] < CRITERION


def next_step(run_dir, max_epochs):
    """What bench/converged.sh converge does next with a run: resume (unfinished), converged,
    cap (``max_epochs`` reached), or the epoch count to extend it to."""
    events = read_events(run_dir)
    valid = [e["valid_bpc"] for e in events if e.get("event") == "epoch"]
    if not any(e.get("event") == "test" for e in events):
        return "resume"
    if has_converged(valid):
        return "converged"
    return "cap" if len(valid) >= max_epochs else str(len(valid) + 1)


def cached_conventions(run_dir):
    """{checkpoint step (str): {convention: test BPC}} measured so far for this run."""
    cache = run_dir / "conventions.json"
    return json.loads(cache.read_text()) if cache.exists() else {}


def conventions(run_dir, config, checkpoint="checkpoint.npz"):
    """Test BPC of a checkpoint of the run under each convention (cached in conventions.json).

    ``checkpoint``: the final one, or schedule-end.npz, the copy bench/converged.sh keeps of
    the warm-down's last checkpoint before training on at its end rate.
    """
    from rbtw.checkpoint import load_checkpoint
    from rbtw.models import ModelSpec
    from rbtw.config import TrainConfig
    from rbtw.evaluate import evaluate
    from rbtw.tasks import load_task_data
    ckpt = load_checkpoint(run_dir / checkpoint)
    known = cached_conventions(run_dir)
    if str(ckpt.meta["step"]) in known:
        return known[str(ckpt.meta["step"])]
    spec = ModelSpec.from_dict(ckpt.meta["spec"])
    cfg = TrainConfig.from_dict(config)
    data = load_task_data(cfg)
    out = {}
    for name, (weights, batch_stats) in CONVENTIONS.items():
        if cfg.quant == "none" and weights != "deterministic":
            weights = "deterministic"  # full precision: only the statistics differ
        out[name] = evaluate(ckpt.params, ckpt.stats, spec, data, "test", cfg, weights=weights,
                             batch_stats=batch_stats, max_batches=None)["bpc"]
    known[str(ckpt.meta["step"])] = out
    (run_dir / "conventions.json").write_text(json.dumps(known, indent=1))
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
        schedule_epochs = config.get("lr_warmdown_epochs") or config["epochs"]
        rec = dict(name=run_dir.name, variant=m["variant"], schedule=m["schedule"], seed=int(m["seed"]),
                   cell=config["cell"], hidden=config["hidden"], epochs=config["epochs"],
                   schedule_epochs=schedule_epochs, tail_epochs=max(len(valid) - schedule_epochs, 0),
                   minibatches=epochs[-1]["step"] if epochs else 0, valid_bpc=valid,
                   wall_seconds=round(sum(e.get("seconds", 0) for e in epochs), 1),
                   status="finished" if test else f"running ({len(epochs)}/{config['epochs']} epochs)")
        if test:
            rec["converged"] = has_converged(valid)
            rec["last_epoch_gain"] = round(valid[-2] - valid[-1], 5) if len(valid) >= 2 else None
            rec["test_bpc"] = conventions(run_dir, config)
            if rec["tail_epochs"] and (run_dir / "schedule-end.npz").exists():
                rec["test_bpc_at_schedule_end"] = conventions(run_dir, config, "schedule-end.npz")
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


def table(records, convention, at_schedule_end=False):
    """Per (cell, H, variant, schedule): mean ± CI and the paired gap to fp, with the claim's verdict.

    ``at_schedule_end``: the checkpoints at the warm-down's end instead of the final ones (the
    same for runs that stopped there).
    """
    def value(r):
        return (r.get("test_bpc_at_schedule_end") or r["test_bpc"]) if at_schedule_end else r["test_bpc"]

    done = [r for r in records if "test_bpc" in r]
    lines = [f"| cell | H | variant | schedule | runs | test BPC ({convention}) mean ± 95 % CI "
             "| gap to fp, paired by seed | claim | holds? |", "|---|---|---|---|---|---|---|---|---|"]
    fp = {(r["cell"], r["hidden"], r["schedule"], r["seed"]): value(r)[convention]
          for r in done if r["variant"] == "fp"}
    points = sorted({(r["cell"], r["hidden"]) for r in done}, key=lambda p: (p != ("lstm", 256), p))
    for cell, hidden in points:
        for variant in ("fp", "ternary", "binary", "binaryconnect"):
            for schedule in ("constant", "cosine", "long"):
                rows = [r for r in done if (r["cell"], r["hidden"], r["variant"], r["schedule"])
                        == (cell, hidden, variant, schedule)]
                if rows:
                    lines.append(_row(rows, fp, convention, value))
    return lines


def _row(rows, fp, convention, value):
    r0 = rows[0]
    variant = r0["variant"]
    mean, half = interval([value(r)[convention] for r in rows])
    keys = [(r["cell"], r["hidden"], r["schedule"], r["seed"]) for r in rows]
    gaps = [value(r)[convention] - fp[k] for r, k in zip(rows, keys) if k in fp]
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
    return (f"| {r0['cell']} | {r0['hidden']} | {variant} | {r0['schedule']} | {len(rows)} | {fmt(mean, half)} "
            f"| {gap_text} | {claim_text} | {verdict} |")


def report(records):
    lines = ["| run | status | schedule + tail epochs (× 784) | valid BPC per epoch | last-epoch gain | converged | "
             "test BPC population / official / expected | wall |", "|---|---|---|---|---|---|---|---|"]
    for r in records:
        t = r.get("test_bpc")
        tests = " / ".join(f"{t[c]:.3f}" for c in CONVENTIONS) if t else "—"
        gain = f"{r['last_epoch_gain']:.4f}" if r.get("last_epoch_gain") is not None else "—"
        curve = [f"{v:.3f}" for v in r["valid_bpc"]]
        if r["tail_epochs"]:
            curve.insert(r["schedule_epochs"], "‖")      # the warm-down ends here
        lines.append(f"| {r['name']} ({r['cell']} H {r['hidden']}) | {r['status']} | "
                     f"{r['schedule_epochs']} + {r['tail_epochs']} | {' '.join(curve)} | {gain} | "
                     f"{r.get('converged', '—')} | {tests} | {r['wall_seconds'] / 60:.0f} min |")
    out = [f"Collected {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `python3 bench/converged.py`; "
           f"runs by `bash bench/converged.sh` on {machine()}. Validation BPC is the whole valid split; "
           "test BPC the whole test split; `‖` marks the warm-down's end (later epochs: its end rate).",
           "", "### Every run", ""] + lines
    for convention in CONVENTIONS:
        out += ["", f"### Test BPC, {convention} convention, final checkpoints", ""] + table(records, convention)
    if any(r.get("test_bpc_at_schedule_end") for r in records):
        for convention in CONVENTIONS:
            out += ["", f"### Test BPC, {convention} convention, at the warm-down's end", ""] \
                + table(records, convention, at_schedule_end=True)
    return "\n".join(out)


def machine():
    """CPU model, cores and the widest vector instruction set (the fused path's Numba kernels use it)."""
    import os
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                 "unknown CPU")
    isa = "AVX-512" if "avx512f" in text else "AVX2" if "avx2" in text else "no AVX2"
    return f"{model}, {os.cpu_count()} cores, {isa}"


def plot(records, path):
    """Validation BPC per epoch: the study (LSTM H 256, 10-epoch schedule) left, other points right."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    colours = {"fp": "C0", "ternary": "C1", "binary": "C2", "binaryconnect": "C3"}
    styles = {("lstm", 256): "-", ("gru", 256): "--"}      # other widths: dash-dot; constant rate: dotted
    for r in records:
        if not r["valid_bpc"]:
            continue
        main = (r["cell"], r["hidden"], r["schedule"]) in {("lstm", 256, "cosine"), ("lstm", 256, "constant")}
        ls = ":" if r["schedule"] == "constant" else styles.get((r["cell"], r["hidden"]), "-.")
        marker = "s" if r["schedule"] == "long" else "o"       # the 14-epoch budget: squares
        axes[0 if main else 1].plot(range(1, len(r["valid_bpc"]) + 1), r["valid_bpc"], marker=marker, ms=3,
                                    color=colours.get(r["variant"], "k"), ls=ls,
                                    label=f"{r['name']} {r['cell']} H {r['hidden']}")
    axes[0].set(title="the study: BN-LSTM H 256 (warm-down ends at epoch 10)", ylabel="validation BPC")
    axes[1].set(title="other points: H 128, GRU, 14-epoch budget (ends at 14)")
    bc = [r for r in records if r["variant"] == "binaryconnect" and r["valid_bpc"]]
    if bc:       # far above the others: keep the axis on the BN models and say where it is
        axes[0].text(0.02, 0.02, "BinaryConnect: " + "; ".join(f"{r['valid_bpc'][0]:.2f} → {r['valid_bpc'][-1]:.2f}"
                                                               for r in bc) + " (above the axis)",
                     transform=axes[0].transAxes, ha="left", va="bottom", fontsize=8, color=colours["binaryconnect"])
    for ax in axes:
        ax.set(xlabel="epoch (784 minibatches)", ylim=(1.45, 2.25))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle("PTB characters; epochs after the warm-down's end run at its end rate")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="*", default=["/work/runs/converged"])
    ap.add_argument("--results", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--next", metavar="RUN_DIR", help="print what converged.sh converge does next with the run")
    ap.add_argument("--max-epochs", type=int, default=16, help="with --next: the cap on epochs")
    args = ap.parse_args()
    if args.next:
        print(next_step(Path(args.next), args.max_epochs))
        return
    for out in args.out:
        if not Path(out).is_dir():
            sys.exit(f"error: {out} is not a directory of study runs (run bench/converged.sh first)")
    try:
        records = [r for out in args.out for r in collect(out)]
    except UserError as e:
        sys.exit(f"error: {e}")
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "converged.json").write_text(json.dumps(
        {"made": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runs": records}, indent=1) + "\n")
    text = report(records)
    (results / "converged.md").write_text(text + "\n")
    plot(records, results / "curves-converged.png")
    print(text)


if __name__ == "__main__":
    main()
