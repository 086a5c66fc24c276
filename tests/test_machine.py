"""rbtw.machine names the machine a figure was measured on, and every sweep attempt records it,
so a study's record names the hosts that trained it, not the host that collected it."""

import json

import pytest

from rbtw import machine
from rbtw import sweep as sw
from rbtw.rundir import RunDir

CPU = "model name\t: Test CPU 9000\nflags\t\t: fpu sse2 {flags}\n"


@pytest.mark.parametrize("flags, isa", [("avx avx2 avx512f avx512bw", "AVX-512"), ("avx avx2 bmi2", "AVX2")])
def test_the_widest_vector_instruction_set_is_named(tmp_path, monkeypatch, flags, isa):
    info = tmp_path / "cpuinfo"
    info.write_text(CPU.format(flags=flags))
    monkeypatch.setattr(machine, "CPUINFO", info)
    assert machine.cpu_model() == "Test CPU 9000" and machine.vector_isa() == isa
    assert machine.describe().startswith("Test CPU 9000, ") and machine.describe().endswith(f" cores, {isa}")


def test_an_arm_cpu_is_named_by_its_architecture(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes\n")
    monkeypatch.setattr(machine, "CPUINFO", info)
    monkeypatch.setattr(machine.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(machine.platform, "processor", lambda: "")
    assert machine.vector_isa() == "aarch64" and machine.cpu_model() == "unknown CPU"


def test_each_attempt_records_its_machine_and_the_record_names_them(tmp_path):
    spec = sw.parse_spec({"task": "default", "seeds": [0], "grid": {"fp": {"quant": "none"}},
                          "options": dict(hidden=8, seq_len=10, batch=4, epochs=1, max_batches=2,
                                          eval_max_batches=1, log_every=1000)})
    (run,) = spec.runs(tmp_path)
    assert sw.train_one(run.config, run.out)["status"] == "done"
    rd = RunDir(run.out)
    attempts = [e for e in rd.events() if e["event"] == "attempt"]
    assert [e["machine"] for e in attempts] == [machine.describe()]
    # a later attempt on another host (as a resumed study's is): both are named, in order
    lines = rd.metrics_path.read_text().splitlines()
    moved = dict(json.loads(next(line for line in lines if '"attempt"' in line)), machine="Other CPU, 8 cores, AVX2")
    rd.metrics_path.write_text("\n".join(lines + [json.dumps(moved)]) + "\n")
    _, (rec,) = sw.collect(spec, tmp_path)
    assert rec["machines"] == [machine.describe(), "Other CPU, 8 cores, AVX2"]
