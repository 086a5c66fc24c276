"""Collect the converged PTB-character study into results a reader can check.

    python3 bench/converged.py STUDY_DIR ... [--results bench/results]

Each STUDY_DIR is a directory made by ``rbtw sweep bench/studies/ptb_char_hH.toml`` (its
sweep.json says what it holds).  For every arm run (variant × seed × arm): validation BPC after
every epoch, whether it converged (the last epoch improved validation BPC by less than 0.005;
epochs past the schedule's end run at its end rate), wall time over every attempt, and test BPC
under the evaluation conventions (population: population statistics, deterministic weights;
official: test-batch statistics, sampled weights; expected: population statistics, E[W^q];
calibrated: the deterministic model after re-estimating its BN statistics and, for ternary, its
threshold on the validation split — rbtw.calibrate; full precision: its statistics) at the
final checkpoint and at the schedule's end.  Records made before the calibrated convention
existed lack it, and full precision's calibrated figure counts only when its report names the
calibration rule (before rule 2, full precision was not calibrated and scored its population
figure there): such cells show "—".

The records join those already in RESULTS/converged.json (earlier points: H 128, the GRU, a
14-epoch budget, the first H 256 cosine runs on another host), which are kept as they are.  A
study's records replace earlier records of the same study and name.  Writes converged.json,
converged.md (every run; per width × arm × convention the paired gaps with 95 % Student-t
intervals and each claim's verdict; where a claim fails at the widest width, the width at which
the measured trend would meet it) and gap-vs-width.png.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rbtw.errors import UserError  # noqa: E402
from rbtw.fileio import atomic_open, atomic_path  # noqa: E402
from rbtw.sweep.summary import t_interval  # noqa: E402

CONVENTIONS = ("population", "official", "expected", "calibrated")
CLAIMS = {"ternary": (0.02, "≤"), "binary": (0.06, "≤"), "binaryconnect": (0.5, "≥")}
ARMS = ("constant", "cosine")


# ---------------------------------------------------------------------------------------------
# records


def machine():
    """CPU model, cores and the widest vector instruction set."""
    import os
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                 "unknown CPU")
    isa = "AVX-512" if "avx512f" in text else "AVX2" if "avx2" in text else "no AVX2"
    return f"{model}, {os.cpu_count()} cores, {isa}"


def study_records(study_dir):
    """The arm runs of a study directory as converged.json records."""
    from rbtw import sweep as sw
    sweep = sw.stored_sweep(study_dir)
    _, recs = sw.collect(sweep, study_dir)
    runs = {r.key: r for r in sweep.runs(study_dir)}
    out = []
    for rec in recs:
        run = runs[rec["key"]]
        if run.stage == "prefix":
            continue
        c = run.config
        schedule_epochs = c.get("lr_warmdown_epochs") or c["epochs"]
        valid = [round(v, 5) for v in rec["valid"] if v is not None]
        r = dict(name=f"{run.variant}-{run.arm or 'run'}-s{run.seed}", study=Path(study_dir).name, machine=machine(),
                 variant=run.variant, schedule=run.arm or "run", seed=run.seed, cell=c["cell"], hidden=c["hidden"],
                 epochs=len(valid), schedule_epochs=schedule_epochs, tail_epochs=max(len(valid) - schedule_epochs, 0),
                 valid_bpc=valid, wall_seconds=round(rec["wall_seconds"], 1), attempts=rec["attempts"],
                 status="finished" if rec["status"] == "done" else f"{rec['status']} ({len(valid)} epochs)")
        if rec["status"] == "done":
            r.update(converged=rec.get("converged"), last_epoch_gain=rec.get("last_epoch_gain"),
                     test_bpc=rec.get("conventions"))
            if rec.get("calibration"):
                r["calibration"] = rec["calibration"]
            if rec.get("conventions_at_schedule_end"):
                r["test_bpc_at_schedule_end"] = rec["conventions_at_schedule_end"]
            if rec.get("conventions_at_best"):
                r["test_bpc_at_best"], r["best_epoch"] = rec["conventions_at_best"], rec.get("best_epoch")
        out.append(r)
    return out


def merge(old, new):
    """``old`` records with those of ``new`` laid over them (same study and name: replaced)."""
    key = lambda r: (r.get("study"), r["name"], r["cell"], r["hidden"])  # noqa: E731
    merged = {key(r): r for r in old}
    merged.update({key(r): r for r in new})
    return list(merged.values())


# ---------------------------------------------------------------------------------------------
# statistics


def interval(values):
    """(mean, 95 % Student-t half-width) of ``values``; nan where not defined (n < 2: no width)."""
    n, mean, _, ci = t_interval(values)
    return (math.nan if mean is None else mean), (math.nan if ci is None else ci[1] - mean)


def chosen(records, cell="lstm"):
    """The records a width table uses: finished LSTM runs; where a study measured fp at a width
    and schedule, only the study's runs there (one host, both arms from the same prefixes: the
    gaps pair the study's own fp), except variants the study did not train (an earlier
    BinaryConnect run is still the only one at its width)."""
    done = [r for r in records if r.get("test_bpc") and r["cell"] == cell]
    studied = {(r["hidden"], r["schedule"]) for r in done if r.get("study") and r["variant"] == "fp"}
    variants = {(r["hidden"], r["schedule"], r["variant"]) for r in done if r.get("study")}
    return [r for r in done if r.get("study") or (r["hidden"], r["schedule"]) not in studied
            or (r["variant"] != "fp" and (r["hidden"], r["schedule"], r["variant"]) not in variants)]


def gaps(records, variant, hidden, schedule, convention, at="final"):
    """Paired gaps variant − fp (same width, schedule and seed; runs measured in the convention)."""
    pick = [r for r in records if (r["hidden"], r["schedule"]) == (hidden, schedule)
            and test_value(r, convention, at) is not None]
    fp = {r["seed"]: test_value(r, convention, at) for r in pick if r["variant"] == "fp"}
    return [test_value(r, convention, at) - fp[r["seed"]] for r in pick
            if r["variant"] == variant and r["seed"] in fp]


def test_value(r, convention, at="final"):
    """A record's test BPC in ``convention`` at checkpoint ``at`` — "final", "schedule_end" (the
    final one when the run was not extended) or "best" (the best validation point) — or None
    when it was not measured there."""
    if convention == "calibrated" and r["variant"] == "fp" and not (r.get("calibration") or {}).get("rule"):
        return None             # measured before full precision's statistics were re-estimated too
    v = {"final": r["test_bpc"], "schedule_end": r.get("test_bpc_at_schedule_end") or r["test_bpc"],
         "best": r.get("test_bpc_at_best")}[at]
    return None if v is None else v.get(convention)


def verdict(variant, g, half):
    bound, op = CLAIMS[variant]
    lo, hi = (g - half, g + half) if not math.isnan(half) else (g, g)
    if op == "≤":
        text = "holds" if hi <= bound else ("does not hold" if lo > bound else "undecided")
    else:
        text = "holds" if lo >= bound else ("does not hold" if hi < bound else "undecided")
    return text + (" (one seed)" if math.isnan(half) else "")


def meeting_width(points, bound):
    """Where a gap shrinking geometrically with width would meet ``bound``: fit ln(gap) =
    a + b·log2(H) to ``points`` [(H, gap)] (least squares); returns (H*, per-doubling factor
    e^b) or None when the gap does not shrink or a gap is not positive."""
    pts = [(h, g) for h, g in points if g > 0]
    if len(pts) < 2 or len(pts) != len(points):
        return None
    x = np.log2([h for h, _ in pts])
    y = np.log([g for _, g in pts])
    b, a = np.polyfit(x, y, 1)
    if b >= 0:
        return None
    return float(2 ** ((math.log(bound) - a) / b)), float(math.exp(b))


# ---------------------------------------------------------------------------------------------
# the report


def width_table(records, convention, at="final"):
    widths = sorted({r["hidden"] for r in records})
    lines = ["| H | schedule | fp test BPC | ternary − fp | binary − fp | BinaryConnect − fp |",
             "|---|---|---|---|---|---|"]
    for hidden in widths:
        for schedule in ARMS:
            fp = [test_value(r, convention, at) for r in records
                  if (r["hidden"], r["schedule"], r["variant"]) == (hidden, schedule, "fp")]
            fp = [v for v in fp if v is not None]
            if not fp:
                continue
            m, h = interval(fp)
            cells = [f"{m:.3f}" + ("" if math.isnan(h) else f" ± {h:.3f}") + f" (n={len(fp)})"]
            for variant in ("ternary", "binary", "binaryconnect"):
                g = gaps(records, variant, hidden, schedule, convention, at)
                if not g:
                    cells.append("—")
                    continue
                gm, gh = interval(g)
                cells.append(f"{gm:+.3f}" + ("" if math.isnan(gh) else f" ± {gh:.3f}")
                             + f" (n={len(g)}): {verdict(variant, gm, gh)}")
            lines.append(f"| {hidden} | {schedule} | " + " | ".join(cells) + " |")
    return lines


def trend_lines(records):
    out = []
    for convention in CONVENTIONS:
        for schedule in ARMS:
            for variant in ("ternary", "binary"):
                points = []
                for hidden in sorted({r["hidden"] for r in records}):
                    g = gaps(records, variant, hidden, schedule, convention)
                    if g:
                        points.append((hidden, interval(g)[0]))
                if len(points) < 2:
                    continue
                bound = CLAIMS[variant][0]
                widest, g_widest = points[-1]
                fit = meeting_width(points, bound)
                where = ", ".join(f"H {h}: {g:+.3f}" for h, g in points)
                if g_widest <= bound:
                    text = f"meets ≤ {bound} at H {widest}"
                elif fit is None:
                    text = "does not shrink with width: no width meets the claim on this trend"
                else:
                    h_star, per_doubling = fit
                    text = (f"each doubling of H multiplies the gap by {per_doubling:.2f} (fit over {len(points)} "
                            f"widths); on that trend the gap would reach {bound} at H ≈ {h_star:,.0f}")
                out.append(f"- {variant}, {schedule}, {convention}: {where} — {text}")
    return out


def report(records):
    lstm = chosen(records)
    out = [f"Collected {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `python3 bench/converged.py`. "
           "Validation BPC on the whole valid split, test BPC on the whole test split. Gaps are paired by "
           "seed (variant − fp, same width, schedule and seed); ± is the 95 % Student-t half-width over "
           "seeds (none with one seed). Claims: ternary − fp ≤ 0.02, binary − fp ≤ 0.06, BinaryConnect − fp "
           "≥ 0.5. Where a study measured a width and schedule, only its runs are used.", ""]
    for convention in CONVENTIONS:
        table = width_table(lstm, convention)
        out += [f"### Width × schedule, {convention} convention, final checkpoints", ""]
        out += table if len(table) > 2 else ["No run was measured in this convention yet."]
        out.append("")
    if any(r.get("test_bpc_at_schedule_end") for r in lstm):
        out += ["### Width × schedule, population convention, at the schedule's end (before the epochs "
                "added until convergence)", ""] + width_table(lstm, "population", at="schedule_end") + [""]
    if any(r.get("test_bpc_at_best") for r in lstm):
        out += ["### Width × schedule at the best validation epoch (the official code's model selection: it "
                "reports the test error where validation was lowest; here at epoch ends)", ""]
        for convention in ("population", "official"):
            out += [f"{convention} convention:", ""] + width_table(lstm, convention, at="best") + [""]
    out += ["### The trend with width", "",
            "A fit of log(gap) against log2(H) over the widths measured (a straight line there means each "
            "doubling of H removes the same fraction of the gap). Two to four widths and one to three seeds "
            "each: the extrapolated width is a rough guide, not a measurement. The population and expected "
            "conventions use full precision's running statistics, which a constant rate leaves stale (the calibration "
            "table below shows by how much): for the constant arm read the official and "
            "calibrated rows.", ""] + trend_lines(lstm) + [""]
    calibrated = [r for r in lstm if r.get("calibration")]
    if calibrated:
        out += ["### Calibration of the deterministic model", "",
                "Per run with BN or ternary weights: the BN statistics re-estimated under the deterministic "
                "weights (full precision: its own; 150 training minibatches, no parameter update) and, for "
                "ternary, the threshold θ·α chosen among the candidates on the validation split (`rbtw "
                "calibrate`); test BPC before (population convention) and after, and the expected-weights "
                "figure (full precision: the same as population). A full-precision run not listed was "
                "measured before full precision was calibrated: its calibrated cells show —.", "",
                "| run | H | θ chosen | valid BPC before → after | test BPC population → calibrated | expected |",
                "|---|---|---|---|---|---|"]
        for r in sorted(calibrated, key=lambda r: (r["hidden"], r["schedule"], r["variant"], r["seed"])):
            c, t = r["calibration"], r["test_bpc"]
            theta = "1/3" if c.get("threshold") is None else f"{c['threshold']:g}"
            theta = theta if r["variant"] == "ternary" else "—"
            out.append(f"| {r['name']} | {r['hidden']} | {theta} | {c['uncalibrated']:.3f} → {c['calibrated']:.3f} "
                       f"| {t['population']:.3f} → {t['calibrated']:.3f} | {t['expected']:.3f} |")
        out.append("")
    out += ["### Every run", "", "| run | machine | status | schedule + tail epochs | valid BPC per epoch | "
            "last gain | converged | test BPC population / official / expected / calibrated | best validation: epoch, "
            "test BPC (population) | wall |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (r["cell"], r["hidden"], r["schedule"], r["variant"], r["seed"])):
        t = r.get("test_bpc")
        tests = " / ".join("—" if test_value(r, c) is None else f"{test_value(r, c):.3f}" for c in CONVENTIONS) \
            if t else "—"
        gain = f"{r['last_epoch_gain']:.4f}" if r.get("last_epoch_gain") is not None else "—"
        curve = [f"{v:.3f}" for v in r["valid_bpc"]]
        if r.get("tail_epochs"):
            curve.insert(r["schedule_epochs"], "‖")
        where = r.get("study") or "earlier study"
        best = (f"{r['best_epoch']}, {r['test_bpc_at_best']['population']:.3f}" if r.get("test_bpc_at_best")
                else "—")
        out.append(f"| {r['name']} ({r['cell']} H {r['hidden']}, {where}) | {r.get('machine', 'AMD EPYC, 2 cores, AVX2')} "
                   f"| {r['status']} | {r.get('schedule_epochs', '?')} + {r.get('tail_epochs', 0)} | {' '.join(curve)} "
                   f"| {gain} | {r.get('converged', '—')} | {tests} | {best} | {r['wall_seconds'] / 60:.0f} min |")
    return "\n".join(out)


def plot(records, path):
    """Gap to fp against H (log2 axis), one panel per convention; claim bounds drawn."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    lstm = chosen(records)
    fig, axes = plt.subplots(1, len(CONVENTIONS), figsize=(5 * len(CONVENTIONS), 4.6), sharex=True, sharey=True)
    colours = {"ternary": "C1", "binary": "C2"}
    for ax, convention in zip(axes, CONVENTIONS):
        for variant in ("ternary", "binary"):
            for schedule, style in (("cosine", "-"), ("constant", "--")):
                pts = []
                for hidden in sorted({r["hidden"] for r in lstm}):
                    g = gaps(lstm, variant, hidden, schedule, convention)
                    if g:
                        m, h = interval(g)
                        pts.append((hidden, m, 0 if math.isnan(h) else h))
                if pts:
                    h_, m_, e_ = zip(*pts)
                    ax.errorbar(h_, m_, yerr=e_, color=colours[variant], ls=style, marker="o", capsize=3,
                                label=f"{variant}, {schedule}")
            ax.axhline(CLAIMS[variant][0], color=colours[variant], lw=0.8, ls=":")
        ax.set_xscale("log", base=2)
        ax.set(title=f"{convention} convention", xlabel="hidden units H (log2)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test BPC gap to fp (paired by seed)")
    axes[0].legend(fontsize=8)
    fig.suptitle("PTB characters, BN-LSTM: quantized − full precision against width; dotted: the claims "
                 "(ternary 0.02, binary 0.06)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("studies", nargs="*", help="study directories made by rbtw sweep")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()
    results = Path(args.results)
    known = results / "converged.json"
    try:
        old = json.loads(known.read_text())["runs"] if known.exists() else []
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"error: {known} is not a converged.json this script wrote ({type(e).__name__}: {e})")
    try:
        new = [r for d in args.studies for r in study_records(d)]
    except UserError as e:
        sys.exit(f"error: {e}")
    records = [r for r in merge(old, new) if not r["status"].startswith("not started")]  # an arm
    # not begun yet (its prefix still training, or left for another session) is not a run
    text = report(records)
    made = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    try:        # each file whole or not at all: a full or read-only disk keeps the old results
        with atomic_open(known, "w") as f:
            f.write(json.dumps({"made": made, "runs": records}, indent=1) + "\n")
        with atomic_open(results / "converged.md", "w") as f:
            f.write(text + "\n")
        print(text)
        plot(records, results / "gap-vs-width.png")
    except ImportError:
        print("no figure: matplotlib is not installed (pip install -e '.[plot]')", file=sys.stderr)
    except OSError as e:
        sys.exit(f"error: cannot write {e.filename or results}: {e.strerror or e}")


if __name__ == "__main__":
    main()
