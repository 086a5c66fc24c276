"""summary.md: a sweep's summary as Markdown tables."""

from rbtw.summary import figure as _fmt      # four decimals, no negative zero


def _num(x):
    return "—" if x is None else _fmt(x)


def _ci(ci):
    return "—" if not ci else f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"


def _pm(stat):
    """"mean ± half-width" (or the mean alone without an interval)."""
    if stat["mean"] is None:
        return "—"
    if not stat["ci95"]:
        return _fmt(stat["mean"])
    return f"{_fmt(stat['mean'])} ± {_fmt((stat['ci95'][1] - stat['ci95'][0]) / 2)}"


def _axes(axes):
    return ", ".join(f"{k}={v}" for k, v in axes.items()) or "—"


def markdown(summary):
    metric = summary["metric"]
    arms = any(g.get("arm") for g in summary["groups"])
    head_where = "axes | arm" if arms else "axes"
    sep_where = "---|---" if arms else "---"

    def where(g):
        return f"{_axes(g['axes'])} | {g.get('arm') or '—'}" if arms else _axes(g["axes"])

    conventions = {(r["eval_weights"], r["eval_stats"]) for r in summary["runs"] if r["status"] == "done"}
    conv = "; ".join(f"{w or 'unrecorded'} weights, {s or 'unrecorded'} statistics"
                     for w, s in sorted(conventions, key=lambda ws: tuple(map(str, ws)))) or "—"
    lines = [f"# Sweep: {summary['task']}, {metric}", "",
             f"Evaluation: {conv}. Intervals: {summary['interval']}.", "",
             f"| variant | {head_where} | seeds done | mean {metric} | sd | 95 % interval | failed |",
             f"|---|{sep_where}|---|---|---|---|---|"]
    for g in summary["groups"]:
        lines.append(f"| {g['variant']} | {where(g)} | {g['n']}/{g['runs']} | {_num(g['mean'])} | "
                     f"{_num(g['sd'])} | {_ci(g['ci95'])} | {g['failed']} |")
    if summary["reference"]:
        lines += ["", f"Paired differences, variant − {summary['reference']}, same seed:", "",
                  f"| variant | {head_where} | pairs | mean Δ | sd | 95 % interval |", f"|---|{sep_where}|---|---|---|---|"]
        for d in summary["differences"]:
            lines.append(f"| {d['variant']} | {where(d)} | {d['n']} | {_num(d['mean'])} | "
                         f"{_num(d['sd'])} | {_ci(d['ci95'])} |")
    lines += _conventions_tables(summary, where, head_where, sep_where)
    lines += _runs_table(summary, metric)
    return "\n".join(lines)


def _conventions_tables(summary, where, head_where, sep_where):
    convs = summary.get("conventions") or []
    if not convs:
        return []

    def table(rows, field, count=None, n_of=lambda r, field: r[field][convs[0]]["n"]):
        """Rows of ``field`` ({convention: stat}) per group, with a count column when named."""
        head = f"| variant | {head_where} | " + (f"{count} | " if count else "") + " | ".join(convs) + " |"
        out = [head, f"|---|{sep_where}|" + ("---|" if count else "") + "---|" * len(convs)]
        for r in rows:
            n = f"{n_of(r, field)} | " if count else ""
            out.append(f"| {r['variant']} | {where(r)} | {n}" + " | ".join(_pm(r[field][c]) for c in convs) + " |")
        return out

    ref = summary["reference"]
    lines = ["", "Test metric under each evaluation convention (mean ± 95 % t half-width over seeds; "
                 "population: population statistics, deterministic weights; official: test-batch "
                 "statistics, sampled weights; expected: population statistics, E[W^q]; calibrated: "
                 "population after re-estimating the statistics (full precision too) and the ternary "
                 "threshold on the validation split):", ""] + table(summary["groups"], "conventions")
    if ref:
        lines += ["", f"Paired gaps, variant − {ref}, same seed, per convention:", ""]
        lines += table(summary["differences"], "conventions", "pairs", lambda d, field: d["n"])
    best = [g for g in summary["groups"] if g.get("conventions_at_best", {}).get(convs[0], {}).get("n")]
    if best:
        lines += ["", "At each run's best validation epoch (best.npz: the model a validation-selected report "
                      "uses, as the official code does), per convention:", ""]
        lines += table(best, "conventions_at_best", "seeds")
        if ref:
            lines += ["", f"Paired gaps there, variant − {ref}, same seed:", ""]
            lines += table(summary["differences"], "conventions_at_best", "pairs")
    return lines


def _runs_table(summary, metric):
    """One row per run: its status, test metric, how far it has trained (epochs with a
    validation figure, of those its schedule plans, or planned + added when the until criterion
    trained on past the schedule; and the last figure: a study in progress shows where each run
    stands), wall time and attempts; with an until criterion, the last epoch's gain and whether
    it converged."""
    key = "test_" + metric.split()[-1]
    name = metric.split()[-1]
    until = any("until" in r for r in summary["runs"])
    head = (f"| run | status | {metric} | epochs | last valid {name} | wall time | attempts |"
            + (" last gain | converged |" if until else ""))
    lines = ["", head, "|---|---|---|---|---|---|---|" + ("---|---|" if until else "")]
    extended = False
    for r in summary["runs"]:
        status = r["status"] + (f": {r['error']}" if r.get("error") else "")
        attempts = f"{r['attempts']}" + (" (resumed)" if r.get("resumed") else "")
        valid = [v for v in r.get("valid") or [] if v is not None]
        epochs = _epochs(len(valid), r.get("schedule_epochs"))
        extended = extended or "added" in epochs
        last = _num(valid[-1]) if valid else "—"
        row = (f"| {r['key']} | {status} | {_num(r[key])} | {epochs} | {last} | {_duration(r['wall_seconds'])} "
               f"| {attempts} |")
        if until:
            conv = {"converged": "yes", "cap": "no (cap)", "extend": "not yet"}.get(r.get("until"), "—")
            row += f" {_num(r.get('last_epoch_gain'))} | {conv} |"
        lines.append(row)
    if any(r.get("stage") == "arm" for r in summary["runs"]):
        lines += ["", "An arm's wall time and attempts include its prefix's: its log begins with the prefix's."]
    if extended:
        lines += ["", "Epochs planned + added: the schedule's epochs, then those the until criterion added, one "
                      "at a time at the schedule's end rate."]
    return lines


def _epochs(done, planned):
    """How far a run has trained: "1 of 2" planned epochs, or "4 (2 planned + 2 added)" when the
    until criterion extended it past its schedule."""
    if not planned:
        return f"{done}"
    if done > planned:
        return f"{done} ({planned} planned + {done - planned} added)"
    return f"{done} of {planned}"


def _duration(seconds):
    """Wall time as a reader takes it in: "45 s", "12 min", "7.7 h"."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
