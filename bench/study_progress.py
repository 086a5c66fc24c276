"""A study in progress: validation (and training) BPC per epoch of its runs, side by side.

    PYTHONPATH=$PWD python3 bench/study_progress.py DIR [--part prefix] [--reference fp]

DIR is a study directory (rbtw sweep's --out); --part chooses its prefix runs or one arm's
runs.  One row per epoch that every run has finished; for each run its validation BPC (the whole
valid split, as the trainer logs it) and its training BPC (the epoch's mean minibatch loss, with
sampled weights where the run trains with them); and each run's validation gap to the reference
run.  Markdown on stdout: bench/results/REPRODUCTION.md's in-progress tables are made with it.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rbtw.rundir import RunDir  # noqa: E402


def epochs_of(run):
    """{epoch number (1-based): (valid BPC, train BPC)} of a run directory."""
    return {e["epoch"] + 1: (e["valid_bpc"], e["train_loss"] / math.log(2)) for e in RunDir(run).epochs()
            if "valid_bpc" in e}


def table(part_dir, reference):
    runs = sorted(p for p in part_dir.iterdir() if (p / "metrics.jsonl").is_file())
    if not runs:
        raise SystemExit(f"{part_dir}: no runs")
    names = [p.name for p in runs]
    ref = next((n for n in names if n.split("-seed")[0] == reference), None)
    data = {p.name: epochs_of(p) for p in runs}
    shared = sorted(set.intersection(*(set(d) for d in data.values())))
    head = ["epoch"] + [f"{n} valid" for n in names] + [f"{n} − {ref}" for n in names if ref and n != ref] + \
        [f"{n} train" for n in names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in shared:
        cells = [str(e)] + [f"{data[n][e][0]:.4f}" for n in names]
        cells += [f"{data[n][e][0] - data[ref][e][0]:+.4f}" for n in names if ref and n != ref]
        cells += [f"{data[n][e][1]:.3f}" for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("study", type=Path)
    ap.add_argument("--part", default="prefix", help="prefix, or an arm's name")
    ap.add_argument("--reference", default="fp", help="the variant the gaps are taken to")
    args = ap.parse_args()
    print("\n".join(table(args.study / args.part, args.reference)))


if __name__ == "__main__":
    main()
