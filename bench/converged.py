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
study's records replace earlier records of the same study and name; a run whose metrics log is
damaged is left out, said in one line on stderr (an earlier record of it is kept).  A
converged.json that is not one this script wrote (not JSON, or a record without a field the
report reads or with one of the wrong kind) stops it with one line naming the file and the
record, exit status 2, before anything is written.  Writes converged.json,
converged.md (every run; per width × arm × convention the paired gaps with 95 % Student-t
intervals and each claim's verdict; where a claim fails at the widest width, the width at which
the measured trend would meet it, with Fieller's 95 % interval, and, below the paper's H 1000,
what the trend predicts one seed's gap there will be) and gap-vs-width.png.
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

from rbtw.errors import UserError, is_real, is_whole, quoted  # noqa: E402
from rbtw.fileio import atomic_open, atomic_path  # noqa: E402
from rbtw.summary import figure  # noqa: E402
from rbtw.sweep.summary import t_interval  # noqa: E402

CONVENTIONS = ("population", "official", "expected", "calibrated")
CLAIMS = {"ternary": (0.02, "≤"), "binary": (0.06, "≤"), "binaryconnect": (0.5, "≥")}
ARMS = ("constant", "cosine")
PAPER_WIDTH = 1000


# ---------------------------------------------------------------------------------------------
# records


def machine():
    """CPU model, cores and the widest vector instruction set of this host (rbtw.machine)."""
    from rbtw.machine import describe
    return describe()


def study_records(study_dir, warn=lambda line: print(line, file=sys.stderr)):
    """The arm runs of a study directory as converged.json records.  A run whose log is damaged
    is left out with one line to ``warn`` (its earlier record, if any, is kept)."""
    from rbtw import sweep as sw
    sweep = sw.stored_sweep(study_dir)
    _, recs = sw.collect(sweep, study_dir)
    runs = {r.key: r for r in sweep.runs(study_dir)}
    out = []
    for rec in recs:
        run = runs[rec["key"]]
        if run.stage == "prefix":
            continue
        if rec["status"] == "damaged":
            warn(f"warning: {Path(study_dir) / rec['key']} left out: {rec.get('error') or 'damaged'}")
            continue
        c = run.config
        schedule_epochs = c.get("lr_warmdown_epochs") or c["epochs"]
        valid = [round(v, 5) for v in rec["valid"] if v is not None]
        where = "; ".join(rec.get("machines") or [machine()])    # older logs: the collecting host
        r = dict(name=f"{run.variant}-{run.arm or 'run'}-s{run.seed}", study=Path(study_dir).name, machine=where,
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


# what a record of converged.json holds: {field: (required, what it is, test)}; fields not
# named here are kept as they are
def _text(v):
    return isinstance(v, str)


def _whole(v):
    return is_whole(v)


def _number_or_none(v):
    return v is None or is_real(v)


def _conventions(v):
    """None, or {convention: test BPC} (some conventions may be missing)."""
    return v is None or (isinstance(v, dict) and all(k in CONVENTIONS and is_real(x) for k, x in v.items()))


def _calibration(v):
    return v is None or (isinstance(v, dict) and is_real(v.get("uncalibrated")) and is_real(v.get("calibrated"))
                         and _number_or_none(v.get("threshold")) and (v.get("rule") is None or is_whole(v["rule"])))


FIELDS = {
    "name": (True, "text", _text), "variant": (True, "text", _text), "schedule": (True, "text", _text),
    "cell": (True, "text", _text), "status": (True, "text", _text),
    "hidden": (True, "a whole number ≥ 1", lambda v: is_whole(v, 1)), "seed": (True, "a whole number", _whole),
    "valid_bpc": (True, "a list of numbers", lambda v: isinstance(v, list) and all(is_real(x) for x in v)),
    "wall_seconds": (True, "a number", is_real),
    "study": (False, "text or null", lambda v: v is None or _text(v)), "machine": (False, "text", _text),
    "epochs": (False, "a whole number", _whole), "schedule_epochs": (False, "a whole number", _whole),
    "tail_epochs": (False, "a whole number", _whole), "attempts": (False, "a whole number", _whole),
    "minibatches": (False, "a whole number", _whole),
    "best_epoch": (False, "a whole number or null", lambda v: v is None or is_whole(v)),
    "converged": (False, "true, false or null", lambda v: v is None or isinstance(v, bool)),
    "last_epoch_gain": (False, "a number or null", _number_or_none),
    "test_bpc": (False, "null or {convention: number}", _conventions),
    "test_bpc_at_schedule_end": (False, "null or {convention: number}", _conventions),
    "test_bpc_at_best": (False, "null or {convention: number}", _conventions),
    "calibration": (False, "null or a calibration report (uncalibrated and calibrated numbers)", _calibration),
}


def record_problem(r):
    """Why ``r`` is not a converged.json record, or "" when it is one."""
    if not isinstance(r, dict):
        return f"is {quoted(r)}, not an object"
    for name, (required, what, ok) in FIELDS.items():
        if name not in r:
            if required:
                return f"has no {name}"
        elif not ok(r[name]):
            return f"{name} is {quoted(r[name])}, not {what}"
    return ""


def read_results(path):
    """The records of the converged.json at ``path`` ([] when there is none), or a UserError
    naming the file and what is wrong with it."""
    path = Path(path)
    if not path.exists():
        return []
    why = f"{path} is not a converged.json this script wrote"
    try:
        runs = json.loads(path.read_text(encoding="utf-8"))["runs"]
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{why} ({type(e).__name__}: {e})") from None
    if not isinstance(runs, list):
        raise UserError(f"{why} (runs is {quoted(runs)}, not a list)")
    for k, r in enumerate(runs):
        problem = record_problem(r)
        if problem:
            name = f" ({r['name']})" if isinstance(r, dict) and isinstance(r.get("name"), str) else ""
            raise UserError(f"{why} (runs[{k}]{name} {problem})")
    return runs


def not_started(record):
    return record["status"].startswith("not started")


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


def gaps_by_width(records, variant, schedule, convention):
    """[(H, paired gaps variant − fp)] at every width where some were measured, narrowest first."""
    out = []
    for hidden in sorted({r["hidden"] for r in records}):
        g = gaps(records, variant, hidden, schedule, convention)
        if g:
            out.append((hidden, g))
    return out


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


class LogLine:
    """The least-squares line ln(gap) = a + b·x, x = log2(H), through ``points`` [(H, gap)],
    one point per seed, so that its residuals carry both the seeds' scatter and the line's lack
    of fit.  ``V`` is the covariance of (a, b), s² (XᵀX)⁻¹ with s² on n − 2 degrees of freedom;
    it is None with fewer than three widths: a line through two widths fits their means
    exactly, so its residuals would hold the seeds' scatter alone and say nothing of its bend."""

    def __init__(self, points):
        x = np.log2([h for h, _ in points])                            # (n,)
        y = np.log([g for _, g in points])                             # (n,)
        X = np.column_stack([np.ones_like(x), x])                      # (n, 2)
        (self.a, self.b), *_ = np.linalg.lstsq(X, y, rcond=None)
        self.df = len(x) - 2
        self.V = self.s2 = None
        if len(set(x)) >= 3:
            self.s2 = float(np.sum((y - X @ np.array([self.a, self.b])) ** 2)) / self.df
            self.V = self.s2 * np.linalg.inv(X.T @ X)                  # (2, 2)

    def t2(self, level):
        from scipy import stats
        return stats.t.ppf(0.5 + level / 2, self.df) ** 2


def fit(points):
    """The LogLine through ``points``, or None when a gap is not positive or fewer than two
    widths were measured."""
    if len({h for h, _ in points}) < 2 or any(g <= 0 for _, g in points):
        return None
    return LogLine(points)


def meeting_width(points, bound, level=0.95):
    """Where a gap shrinking geometrically with width would meet ``bound``, and how sure that is.

    On the LogLine through ``points`` the gap meets the bound at x* = (ln(bound) − a)/b,
    H* = 2^x*.  The ``level`` interval for H* is Fieller's: the x at which ln(bound) lies
    inside the line's confidence band,

        (ln(bound) − a − b·x)² ≤ t² · (V_aa + 2x·V_ab + x²·V_bb),

    t Student's quantile.  It holds only if the gap really shrinks geometrically; nothing here
    tests that.

    Returns (H*, per-doubling factor e^b, (low, high)) — the interval is None with fewer than
    three widths (see LogLine), and high is inf when the band does not exclude a flat line (the
    fit does not show that the gap shrinks) — or None when the gap does not shrink or a gap is
    not positive.
    """
    line = fit(points)
    if line is None or line.b >= 0:
        return None
    a, b, V = line.a, line.b, line.V
    d = math.log(bound) - a
    h_star, per_doubling = float(2 ** (d / b)), float(math.exp(b))
    if V is None:
        return h_star, per_doubling, None
    t2 = line.t2(level)
    # with x = x* + u the band condition reads A·u² − 2·t²·q1·u − t²·q0 ≤ 0, where q0 is the
    # line's variance at x* and q1 = V_ab + x*·V_bb: centred on x*, so that a line with no
    # scatter gives u = 0 exactly instead of a difference of two large squares
    x_star = d / b
    A = b * b - t2 * V[1, 1]
    q0 = V[0, 0] + 2 * x_star * V[0, 1] + x_star ** 2 * V[1, 1]
    q1 = V[0, 1] + x_star * V[1, 1]
    if A <= 0:
        return h_star, per_doubling, (0.0, math.inf)
    root = math.sqrt(max(t2 * t2 * q1 * q1 + A * t2 * q0, 0.0))
    low, high = x_star + (t2 * q1 - root) / A, x_star + (t2 * q1 + root) / A
    return h_star, per_doubling, (float(2 ** low), float(2 ** high))


def predicted_gap(points, hidden, level=0.95):
    """What the LogLine through ``points`` says one more seed's gap at width ``hidden`` will be:
    (e^ŷ, (low, high)), ŷ = a + b·x, with the ``level`` prediction interval

        exp(ŷ ± t · √(s² + [1 x] V [1 x]ᵀ)),   x = log2(hidden),

    which holds a new seed's gap that often if the gap shrinks geometrically.  The interval is
    None with fewer than three widths; the whole result None when a gap is not positive."""
    line = fit(points)
    if line is None:
        return None
    x = math.log2(hidden)
    y_hat = line.a + line.b * x
    if line.V is None:
        return math.exp(y_hat), None
    u = np.array([1.0, x])
    half = math.sqrt(line.t2(level) * (line.s2 + u @ line.V @ u))
    return math.exp(y_hat), (math.exp(y_hat - half), math.exp(y_hat + half))


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


def paper_width_text(points):
    guess = predicted_gap(points, PAPER_WIDTH)
    if guess is None:
        return ""
    g, band = guess
    text = f"; at the paper's H {PAPER_WIDTH} the line gives +{g:.3f}"
    if band is None:
        return text
    return text + f" (95 % prediction interval for one seed {band[0]:.3f}–{band[1]:.3f})"


def trend_text(meets, bound, widths, seeds):
    h_star, per_doubling, band = meets
    text = (f"each doubling of H multiplies the gap by {per_doubling:.2f} (fit over {widths} widths, "
            f"{seeds} seeds); on that trend the gap would reach {bound} at H ≈ {about(h_star)}")
    if band is None:
        return text + " (two widths: no interval, a line through two widths cannot show its bend)"
    low, high = band
    if math.isinf(high):
        return text + " (95 % interval unbounded: the fit does not show that the gap shrinks)"
    return text + f" (95 % interval {about(low)}–{about(high)})"


def about(h):
    """A width to two significant figures, with thousands separators: 12,349 → "12,000"."""
    return f"{float(f'{h:.2g}'):,.0f}"


def trend_lines(records):
    out = []
    for convention in CONVENTIONS:
        for schedule in ARMS:
            for variant in ("ternary", "binary"):
                by_width = gaps_by_width(records, variant, schedule, convention)
                means = [(hidden, interval(g)[0]) for hidden, g in by_width]
                points = [(hidden, v) for hidden, g in by_width for v in g]
                if len(means) < 2:
                    continue
                bound = CLAIMS[variant][0]
                widest, g_widest = means[-1]
                meets = meeting_width(points, bound)
                where = ", ".join(f"H {h}: {g:+.3f}" for h, g in means)
                if g_widest <= bound:
                    text = f"meets ≤ {bound} at H {widest}"
                elif meets is None:
                    text = "does not shrink with width: no width meets the claim on this trend"
                else:
                    text = trend_text(meets, bound, len(means), len(points))
                if widest < PAPER_WIDTH:
                    text += paper_width_text(points)
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
            "A least-squares fit of log(gap) against log2(H), one point per seed, over the widths measured (a "
            "straight line there means each doubling of H removes the same fraction of the gap). The 95 % "
            "interval on the width where the line meets the claim is Fieller's; its residuals carry both the "
            "seeds' scatter and the line's lack of fit, but it holds only if the gap keeps shrinking "
            "geometrically beyond the widths measured, which nothing here tests: a far extrapolation is a "
            "direction, not a measurement. The population and expected "
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
                       f"| {bpc(t, 'population')} → {bpc(t, 'calibrated')} | {bpc(t, 'expected')} |")
        out.append("")
    out += ["### Every run", "", "| run | machine | status | schedule + tail epochs | valid BPC per epoch | "
            "last gain | converged | test BPC population / official / expected / calibrated | best validation: epoch, "
            "test BPC (population) | wall |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (r["cell"], r["hidden"], r["schedule"], r["variant"], r["seed"])):
        t = r.get("test_bpc")
        tests = " / ".join("—" if test_value(r, c) is None else f"{test_value(r, c):.3f}" for c in CONVENTIONS) \
            if t else "—"
        gain = figure(r['last_epoch_gain']) if r.get("last_epoch_gain") is not None else "—"
        curve = [f"{v:.3f}" for v in r["valid_bpc"]]
        if r.get("tail_epochs"):
            curve.insert(r.get("schedule_epochs", len(curve)), "‖")
        where = r.get("study") or "earlier study"
        best = (f"{r.get('best_epoch')}, {bpc(r['test_bpc_at_best'], 'population')}" if r.get("test_bpc_at_best")
                else "—")
        out.append(f"| {r['name']} ({r['cell']} H {r['hidden']}, {where}) | {r.get('machine', '—')} "
                   f"| {r['status']} | {r.get('schedule_epochs', '?')} + {r.get('tail_epochs', 0)} | {' '.join(curve)} "
                   f"| {gain} | {r.get('converged', '—')} | {tests} | {best} | {r['wall_seconds'] / 60:.0f} min |")
    return "\n".join(out)


def bpc(conventions, convention):
    """A convention's test BPC to three decimals, "—" where it was not measured."""
    v = conventions.get(convention)
    return "—" if v is None else f"{v:.3f}"


def plot_trend(ax, points, colour, style):
    """The LogLine through ``points`` drawn thin from the narrowest width to the paper's, and,
    where the paper's width was not measured, its prediction interval for one seed there."""
    line = fit(points)
    if line is None or line.b >= 0:
        return
    x = np.linspace(math.log2(min(h for h, _ in points)), math.log2(PAPER_WIDTH), 50)
    ax.plot(2 ** x, np.exp(line.a + line.b * x), color=colour, ls=style, lw=0.7, alpha=0.5)
    guess = predicted_gap(points, PAPER_WIDTH)
    if max(h for h, _ in points) < PAPER_WIDTH and guess[1] is not None:
        g, (low, high) = guess
        ax.errorbar([PAPER_WIDTH], [g], yerr=[[g - low], [high - g]], color=colour, marker="o",
                    mfc="none", capsize=3, alpha=0.7)


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
                by_width = gaps_by_width(lstm, variant, schedule, convention)
                pts = []
                for hidden, g in by_width:
                    m, h = interval(g)
                    pts.append((hidden, m, 0 if math.isnan(h) else h))
                seeds = [(hidden, v) for hidden, g in by_width for v in g]
                if pts:
                    h_, m_, e_ = zip(*pts)
                    ax.errorbar(h_, m_, yerr=e_, color=colours[variant], ls=style, marker="o", capsize=3,
                                label=f"{variant}, {schedule}")
                    plot_trend(ax, seeds, colours[variant], style)
            ax.axhline(CLAIMS[variant][0], color=colours[variant], lw=0.8, ls=":")
        ax.set_xscale("log", base=2)
        ax.set(title=f"{convention} convention", xlabel="hidden units H (log2)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test BPC gap to fp (paired by seed)")
    axes[0].legend(fontsize=8)
    fig.suptitle("PTB characters, BN-LSTM: quantized − full precision against width; dotted: the claims "
                 "(ternary 0.02, binary 0.06); thin: the least-squares trend over seeds, hollow: its 95 % "
                 f"prediction for one seed at H {PAPER_WIDTH}", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def fail(message):
    """One line on stderr, exit status 2 (as rbtw's commands end on bad input)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("studies", nargs="*", help="study directories made by rbtw sweep")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()
    results = Path(args.results)
    known = results / "converged.json"
    try:        # refused before anything is written: the file is merged into, never replaced
        old = read_results(known)
        new = [r for d in args.studies for r in study_records(d)]
    except UserError as e:
        fail(str(e))
    # an arm not begun in the study directory (its prefix still training, left for another session,
    # or trained in a directory since lost) is not a run: it neither adds a record nor replaces
    # the one an earlier collection kept
    records = merge(old, [r for r in new if not not_started(r)])
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
        fail(f"cannot write {e.filename or results}: {e.strerror or e}")


if __name__ == "__main__":
    main()
