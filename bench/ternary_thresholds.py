"""Ternary thresholds per matrix and per gate, against calibration's one global θ.

    python3 bench/ternary_thresholds.py CKPT [CKPT ...] [--grid 0.333,0.4,0.5,0.6,0.7]
                                        [--batches 150] [--md bench/results/ternary-thresholds.md]

The deterministic ternary rule sets W^q = α·([W > τ] − [W < −τ]) with τ = θ·α.  ``rbtw calibrate``
chooses one θ for every matrix of the model (the paper's θ = 1/3 and the candidates 0.4, 0.5,
0.6, searched on past the edge).  This asks whether more freedom pays, each candidate chosen on
validation BPC with the BN population statistics re-estimated under its weights (as calibrate
does), and the chosen one scored once on the test split:

    paper       θ = 1/3 everywhere, statistics re-estimated
    global      rbtw.calibrate: one θ for the model
    per matrix  (θ_x, θ_h) for W_x and W_h of every layer, every pair of the grid
    per gate    a θ for each gate's columns (i, f, g, o) of W_x and of W_h (8 a layer), one
                pass of coordinate descent from the best per-matrix choice

A gain smaller than the spread over seeds is not a finding; the report gives the paired
differences against the global θ with 95 % Student-t intervals.

Cost: every candidate is a re-estimation plus a pass over the whole validation split (about 7 s
at H 128 on a 2-core AMD EPYC, AVX2, at nice 5 beside three training runs); the default search
(calibrate, 25 pairs, up to 48 per-gate trials, cached) took 483–505 s a checkpoint there.
(An earlier figure here, 143 s a candidate, was measured at nice 19 behind two training runs:
the time of a starved process, not of the work.)
"""

import argparse
import itertools
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rbtw import quant  # noqa: E402
from rbtw.calibrate import calibrate, reestimate_statistics  # noqa: E402
from rbtw.checkpoint import load_checkpoint  # noqa: E402
from rbtw.config import TrainConfig  # noqa: E402
from rbtw.errors import UserError  # noqa: E402
from rbtw.evaluate import evaluate_engine  # noqa: E402
from rbtw.fileio import atomic_open  # noqa: E402
from rbtw.models import DenseEngine, ModelSpec  # noqa: E402
from rbtw.sweep.summary import t_interval  # noqa: E402
from rbtw.tasks import load_task_data  # noqa: E402

def groups(spec):
    """Every (layer, matrix, gate) group: its key and the column slice of its matrix."""
    out = []
    for k in range(spec.layers):
        H, n_gates = spec.hidden, spec.cell_spec(k).G // spec.hidden
        for m in ("W_x", "W_h"):
            for g in range(n_gates):
                out.append(((k, m, g), slice(g * H, (g + 1) * H)))
    return out


def ternary_weights(params, spec, theta):
    """W^q of every recurrent matrix, group (layer, matrix, gate) thresholded at theta[group]·α."""
    names = [f"rnn{k}.{m}" for k in range(spec.layers) for m in ("W_x", "W_h")]
    qweights = {name: np.empty_like(params[name]) for name in names}
    for (k, m, g), cols in groups(spec):
        alpha = spec.cell_spec(k).alphas[0 if m == "W_x" else 1]
        W = params[f"rnn{k}.{m}"]
        qweights[f"rnn{k}.{m}"][:, cols] = quant.ternary_deterministic(W[:, cols], alpha, theta[(k, m, g)])
    return qweights


class Probe:
    """Scores of one checkpoint under thresholds given per group (cached)."""

    def __init__(self, path, batches):
        self.ckpt = load_checkpoint(path)
        # every evaluation on the whole split, whatever the run evaluated during training
        self.config = replace(TrainConfig.from_dict(self.ckpt.meta["config"]), eval_max_batches=None)
        self.spec = replace(ModelSpec.from_dict(self.ckpt.meta["spec"]), threshold=None)
        if self.spec.quant != "ternary" or not self.spec.bn:
            raise UserError(f"{path}: a ternary BN model is needed, not {self.spec.quant} (bn={self.spec.bn})")
        self.data = load_task_data(self.config)
        self.batches = batches
        self.keys = [key for key, _ in groups(self.spec)]
        self.cache = {}

    def uniform(self, theta):
        return {key: theta for key in self.keys}

    def score(self, theta, split="valid"):
        """BPC on ``split`` with statistics re-estimated under the thresholds ``theta``."""
        sig = (split,) + tuple(round(theta[key], 6) for key in self.keys)
        if sig not in self.cache:
            p = self.ckpt.params
            qw = ternary_weights(p, self.spec, theta)
            stats = reestimate_statistics(p, self.ckpt.stats, self.spec, self.data, self.config, self.batches,
                                          qweights=qw)
            engine = DenseEngine(p, stats, self.spec)
            engine.qweights = qw
            self.cache[sig] = evaluate_engine(engine, self.data, split, self.config, max_batches=None)["bpc"]
        return self.cache[sig]


def per_matrix(probe, grid):
    """The best (θ_x, θ_h) pair of the grid on validation, as per-group thresholds."""
    best = None
    for tx, th in itertools.product(grid, grid):
        theta = {key: (tx if key[1] == "W_x" else th) for key in probe.keys}
        v = probe.score(theta)
        if best is None or v < best[0]:
            best = (v, theta)
    return best[1]


def per_gate(probe, grid, start):
    """One pass of coordinate descent over the groups from ``start``, on validation."""
    theta = dict(start)
    for key in probe.keys:
        for value in grid:
            trial = {**theta, key: value}
            if probe.score(trial) < probe.score(theta):
                theta = trial
    return theta


def describe(theta, keys):
    """Thresholds by matrix, e.g. "W_x 0.5/0.5/0.6/0.5, W_h 0.4/…" (gates i, f, g, o)."""
    parts = []
    for m in ("W_x", "W_h"):
        vals = [theta[k] for k in keys if k[1] == m]
        parts.append(f"{m} " + ("/".join(f"{v:.2g}" for v in vals) if len(set(vals)) > 1 else f"{vals[0]:.2g}"))
    return ", ".join(parts)


def theta_grid(text):
    """'0.4,0.5' → [0.4, 0.5]; every θ a number in (0, 1): at θ ≥ 1 no weight of |W| ≤ α is kept."""
    try:
        grid = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    bad = [v for v in grid if not 0 < v < 1]
    if bad:
        raise argparse.ArgumentTypeError(f"θ must lie in (0, 1), not {bad[0]:g}")
    return grid


def positive_int(text):
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number ≥ 1")
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--grid", default="0.3333333333333333,0.4,0.5,0.6,0.7", type=theta_grid,
                    help="candidate θ (τ = θ·α), comma-separated, each in (0, 1)")
    ap.add_argument("--batches", type=positive_int, default=150,
                    help="training minibatches for re-estimating the BN statistics")
    ap.add_argument("--md", default=None, help="write the report here (Markdown)")
    args = ap.parse_args()
    grid = args.grid
    rows = []
    for path in args.checkpoints:
        t0 = time.time()
        probe = Probe(path, args.batches)
        _, _, _, report = calibrate(probe.ckpt, probe.data, probe.config, batches=args.batches)
        g = report["threshold"] or 1 / 3
        choices = {"paper": probe.uniform(1 / 3), "global": probe.uniform(g)}
        # the probe's own weights and statistics must reproduce calibrate's choice exactly
        if abs(probe.score(choices["global"]) - report["calibrated"]) > 1e-6:
            raise SystemExit(f"{path}: the probe scores θ = {g:g} at {probe.score(choices['global']):.6f}, "
                             f"calibrate at {report['calibrated']:.6f}")
        own = sorted(set(grid) | {g})           # calibrate's θ too: more freedom never loses on validation
        choices["per matrix"] = per_matrix(probe, own)
        choices["per gate"] = per_gate(probe, own, choices["per matrix"])
        row = {"checkpoint": path, "H": probe.spec.hidden, "seconds": 0.0}
        for name, theta in choices.items():
            row[name] = (probe.score(theta), probe.score(theta, "test"), describe(theta, probe.keys))
        row["seconds"] = time.time() - t0
        rows.append(row)
        print(path, {k: v for k, v in row.items() if k not in ("checkpoint",)}, flush=True)
    lines = report_lines(rows, args)
    print("\n".join(lines))
    if args.md:
        try:                # hours of search: the report is written whole or not at all
            with atomic_open(args.md, "w") as f:
                f.write("\n".join(lines) + "\n")
        except OSError as e:
            sys.exit(f"error: cannot write {args.md}: {e.strerror or e}")


def mean_pm(values):
    """"+0.0012 ± 0.0034": the mean and its 95 % Student-t half-width (the mean alone for one value)."""
    _, mean, _, ci = t_interval(values)
    return f"{mean:+.4f}" + ("" if ci is None else f" ± {(ci[1] - ci[0]) / 2:.4f}")


def report_lines(rows, args):
    names = ("paper", "global", "per matrix", "per gate")
    out = ["# Ternary thresholds per matrix and per gate", "",
           f"Command: `python3 bench/ternary_thresholds.py {' '.join(args.checkpoints)} "
           f"--grid {','.join(map(str, args.grid))} "
           f"--batches {args.batches}`", "",
           f"Made {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.  Every row: validation BPC (the choice is made "
           "there) → test BPC, deterministic weights, BN statistics re-estimated under the chosen weights "
           f"({args.batches} training minibatches).", "",
           "| checkpoint | H | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for r in rows:
        cells = [f"{r[n][0]:.4f} → **{r[n][1]:.4f}**<br>{r[n][2]}" for n in names]
        out.append(f"| {r['checkpoint']} | {r['H']} | " + " | ".join(cells) + " |")
    out += ["", "Paired differences of test BPC against the global θ (negative: better), mean ± 95 % t:", "",
            "| choice | n | validation Δ | test Δ |", "|---|---|---|---|"]
    for n in ("paper", "per matrix", "per gate"):
        dv = [r[n][0] - r["global"][0] for r in rows]
        dt = [r[n][1] - r["global"][1] for r in rows]
        out.append(f"| {n} | {len(rows)} | {mean_pm(dv)} | {mean_pm(dt)} |")
    return out


if __name__ == "__main__":
    try:
        main()
    except UserError as e:          # a missing or damaged checkpoint, data not imported: one line
        sys.exit(f"error: {e}")
