"""The run directory's metrics log: a write cut off anywhere is never read as an event and never
glues itself to the next one; damage elsewhere is reported."""

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rbtw.errors import UserError
from rbtw.rundir import RunDir

EVENTS = [{"event": "train", "step": k, "loss": 3.0 - 0.1 * k, "note": "ü" * k} for k in range(1, 6)]


def write(rd, events):
    rd.path.mkdir(parents=True, exist_ok=True)
    rd.metrics_path.write_bytes(b"".join((json.dumps(e) + "\n").encode("utf-8") for e in events))


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(0, 10_000))
def test_a_log_cut_at_any_byte_reads_its_whole_lines_and_appends_cleanly(tmp_path_factory, cut):
    rd = RunDir(tmp_path_factory.mktemp("run"))
    write(rd, EVENTS)
    data = rd.metrics_path.read_bytes()
    cut = cut % (len(data) + 1)
    rd.metrics_path.write_bytes(data[:cut])
    whole = data[:cut].count(b"\n")
    # a cut exactly at the end of an event's JSON (its newline not yet written) still holds that event
    complete = whole + (1 if cut < len(data) and data[cut:cut + 1] == b"\n" else 0)
    assert rd.events() == EVENTS[:complete]
    rd.append(event="test", step=99, test_bpc=1.0)
    events = rd.events()
    assert events[:-1] == EVENTS[:complete] and events[-1]["event"] == "test"
    assert rd.metrics_path.read_bytes().endswith(b"\n")


def test_damage_inside_the_log_is_named(tmp_path):
    rd = RunDir(tmp_path)
    write(rd, EVENTS)
    lines = rd.metrics_path.read_text().splitlines()
    lines[2] = "{oops"
    rd.metrics_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"metrics.jsonl:3 is not a metrics log line"):
        rd.events()


def test_readers_of_a_run(tmp_path):
    rd = RunDir(tmp_path / "run")
    assert rd.events() == [] and rd.final_test() is None and not rd.has_checkpoint()
    rd.path.mkdir()
    rd.append(event="epoch", epoch=0, step=3, valid_bpc=2.1)
    rd.append(event="test", epoch=1, step=3, test_bpc=2.0)
    rd.append(event="epoch", epoch=1, step=6, valid_bpc=1.6)
    rd.append(event="test", epoch=2, step=6, test_bpc=1.5)
    assert [e["epoch"] for e in rd.epochs()] == [0, 1]
    assert rd.final_test()["test_bpc"] == 1.5
    rd.keep_events(lambda e: e["step"] <= 3)
    assert rd.final_test()["test_bpc"] == 2.0 and len(rd.events()) == 2
    assert RunDir.of_log(rd.metrics_path).events() == RunDir.of_log(rd.path).events()


@pytest.mark.parametrize("event, why", [
    ({"event": "epoch", "step": 3, "valid_bpc": 2.0}, "no epoch"),
    ({"event": "epoch", "epoch": 0, "valid_loss": 1.0}, "no valid_metric"),
    ({"event": "test", "epoch": 1, "test_loss": 1.0}, "no test_metric"),
    ({"event": "train", "step": 1}, "no loss"),
    ({"event": "sweep", "status": "done"}, "no seconds"),
    ({"event": "epoch", "epoch": "0", "valid_bpc": 2.0}, 'epoch is "0"'),
    ({"event": "epoch", "epoch": True, "valid_bpc": 2.0}, "epoch is true"),
    ({"event": "epoch", "epoch": -1, "valid_bpc": 2.0}, "epoch is -1"),
    ({"event": "test", "test_bpc": "x"}, 'test_bpc is "x"'),
    ({"event": "test", "test_bpc": 1.0, "eval_stats": None}, "eval_stats is null"),
    ({"event": "sweep", "seconds": 1.0, "resumed": "no"}, 'resumed is "no"'),
    ({"event": ["test"]}, 'event is ["test"]'),
    ({"event": "train", "step": 1, "loss": None}, "loss is null"),
])
def test_an_event_with_a_field_missing_or_of_the_wrong_type_is_damage_named_by_line(tmp_path, event, why):
    # what readers take from a log without a default (the plot's steps and losses, the
    # convergence test's validation metric, a sweep's wall time) must be there, and every field
    # the project writes must have its type: otherwise the line is damaged, as one that is not JSON
    rd = RunDir(tmp_path)
    write(rd, EVENTS + [event] + EVENTS)
    with pytest.raises(UserError, match=rf"metrics.jsonl:6 is not a metrics log line \({re.escape(why)}\)"):
        rd.events()


def test_an_epoch_without_a_minibatch_logs_a_null_training_loss_and_is_whole(tmp_path):
    rd = RunDir(tmp_path)
    write(rd, [{"event": "epoch", "epoch": 0, "step": 0, "train_loss": None, "valid_bpc": 2.0}])
    assert rd.epochs()[0]["train_loss"] is None


# ---------------------------------------------------------------------------------------------
# rbtw runs: a damaged run says why


def test_runs_lists_a_damaged_run_with_the_reason_in_one_short_line(tmp_path):
    from click.testing import CliRunner

    from rbtw.cli import main
    from rbtw.rundir import REASON_WIDTH, find_runs, run_row
    root = tmp_path / "runs"
    good = {"task": "default", "cell": "lstm", "quant": "none", "epochs": 1}
    damage = {
        "no-config": ({"checkpoint.npz": b""}, "unreadable (no config.json)"),
        "bad-json": ({"config.json": b"{bad"}, "unreadable (config.json is not JSON (line 1, column 2))"),
        "not-utf8": ({"config.json": b"\xff\xfe"}, "unreadable (config.json is not UTF-8 text)"),
        "bad-log": ({"config.json": json.dumps(good).encode(), "metrics.jsonl": b'{"event": "epoch"}\n{}\n'},
                    "unreadable (metrics.jsonl:1 is not a metrics log line (no epoch))"),
        "long": ({"config.json": json.dumps(good).encode(),
                  "metrics.jsonl": json.dumps({"event": "train", "step": 1, "loss": "x" * 200}).encode() + b"\n{}\n"},
                 None),
    }
    for name, (files, _) in damage.items():
        (root / name).mkdir(parents=True)
        for file, data in files.items():
            (root / name / file).write_bytes(data)
    rows = {row["run"]: row for row in (run_row(d, root) for d in find_runs(root))}
    for name, (_, status) in damage.items():
        reason = rows[name]["status"]
        assert "Error)" not in reason and str(root) not in reason, reason
        assert status is None or reason == status, reason
    long = rows["long"]["status"]
    assert long.startswith("unreadable (metrics.jsonl:1 is not a metrics log line (loss is \"xxx")
    assert long.endswith("…)") and len(long) == len("unreadable ()") + REASON_WIDTH
    result = CliRunner().invoke(main, ["runs", str(root)])
    assert result.exit_code == 0, result.output
    assert "(UserError)" not in result.stdout and "(FileNotFoundError)" not in result.stdout
    assert re.search(r"no-config\s+\?\s+\?\s+unreadable \(no config\.json\)", result.stdout), result.stdout
