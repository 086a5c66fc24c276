"""A study in progress: validation (and training) BPC per epoch of its runs, side by side.

    PYTHONPATH=$PWD python3 bench/study_progress.py DIR [--part prefix] [--reference fp]

DIR is a study directory (rbtw sweep's --out); --part chooses its prefix runs or one arm's
runs (``--part .``: the runs of a sweep without arms, in DIR itself).  One row per epoch that
every run has finished; for each run its validation BPC (the whole valid split, as the trainer
logs it) and its training BPC (the epoch's mean minibatch loss, with sampled weights where the
run trains with them; "—" for an epoch without a minibatch); and each run's validation gap to
the reference variant's run of the same seed (and axis values): variant-seedN − fp-seedN,
omitted where that run is not in the part.  Markdown on stdout: bench/results/REPRODUCTION.md's
in-progress tables are made with it.  A directory, part or reference that is not there, or a
damaged metrics log, is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rbtw.errors import UserError, run_script  # noqa: E402
from rbtw.rundir import RunDir  # noqa: E402

SEED = re.compile(r"-seed\d+$")


def epochs_of(run):
    """{epoch number (1-based): (valid BPC, train BPC or None)} of a run directory."""
    out = {}
    for e in RunDir(run).epochs():
        if "valid_bpc" in e:
            loss = e.get("train_loss")
            out[e["epoch"] + 1] = (e["valid_bpc"], None if loss is None else loss / math.log(2))
    return out


def has_runs(d):
    try:
        return any((p / "metrics.jsonl").is_file() for p in d.iterdir())
    except OSError:
        return False


def part_dir(study, part):
    """DIR/PART, or a UserError saying which parts DIR has."""
    if not study.is_dir():
        raise UserError(f"{study} is not a directory")
    d = study / part
    if d.is_dir():
        return d
    parts = sorted(p.name for p in study.iterdir() if p.is_dir() and has_runs(p))
    if has_runs(study):
        parts.insert(0, ". (a sweep without arms: its runs are in the directory itself)")
    have = f"its parts: {', '.join(parts)}" if parts else "it holds no runs"
    raise UserError(f"{study} has no part {part!r} ({have})")


def variants_of(part, names):
    """{run name: variant}: as the study's sweep.json says where it names the run, else the name
    without its seed."""
    from rbtw import sweep as sw
    known = {}
    for study in (part, part.parent):
        if (study / sw.SPEC_NAME).is_file():
            known = {r.out.name: r.variant for r in sw.stored_sweep(study).runs(study) if r.out.parent == part}
            break
    return {n: known.get(n) or SEED.sub("", n) for n in names}


def table(part, reference):
    runs = sorted(p for p in part.iterdir() if (p / "metrics.jsonl").is_file())
    if not runs:
        raise UserError(f"{part}: no runs")
    names = [p.name for p in runs]
    variant = variants_of(part, names)
    if reference not in variant.values():
        present = ", ".join(dict.fromkeys(variant[n] for n in names))
        raise UserError(f"--reference {reference!r} is no variant of {part} (its variants: {present})")
    # the reference run of the same seed and axis values: the name with the variant replaced
    ref = {n: reference + n[len(variant[n]):] for n in names if variant[n] != reference}
    ref = {n: r for n, r in ref.items() if r in names}
    data = {p.name: epochs_of(p) for p in runs}
    shared = sorted(set.intersection(*(set(d) for d in data.values())))
    head = ["epoch"] + [f"{n} valid" for n in names] + [f"{n} − {ref[n]}" for n in names if n in ref] + \
        [f"{n} train" for n in names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in shared:
        cells = [str(e)] + [f"{data[n][e][0]:.4f}" for n in names]
        cells += [f"{data[n][e][0] - data[ref[n]][e][0]:+.4f}" for n in names if n in ref]
        cells += ["—" if data[n][e][1] is None else f"{data[n][e][1]:.3f}" for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("study", type=Path)
    ap.add_argument("--part", default="prefix", help="prefix, or an arm's name (.: a sweep without arms)")
    ap.add_argument("--reference", default="fp", help="the variant the gaps are taken to")
    args = ap.parse_args()
    run_script(lambda: print("\n".join(table(part_dir(args.study, args.part), args.reference))))


if __name__ == "__main__":
    main()
