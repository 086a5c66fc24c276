"""A fixed-seed train → export → eval → sample pipeline, recorded as a golden file.

``python3 tests/golden_pipeline.py`` (from the repository root) rewrites
``tests/data/golden_pipeline.json`` from the code as it is; ``test_golden_pipeline.py``
runs the same pipeline and compares.  The pipeline goes through the command line, as a user
would: ``rbtw train`` (three small models on the embedded corpus), ``rbtw export`` (default
BN tables and one table per step), ``rbtw eval`` of the checkpoint and of each export, and
``rbtw sample`` from the export.

The record holds, for every array (parameters, BN statistics, optimiser state, export arrays),
its sha256 and a few float64 summaries, and every printed figure.  On the machine that wrote
the record (same CPU, NumPy and BLAS: ``fingerprint()``) every hash must match: the code's
arithmetic is unchanged bit for bit.  Elsewhere BLAS may round differently, so the summaries
are compared with a tolerance instead.
"""

import hashlib
import json
import platform
import sys
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).parent / "data" / "golden_pipeline.json"

TINY = ["--hidden", "24", "--epochs", "2", "--max-batches", "6", "--eval-max-batches", "3", "--seq-len", "30",
        "--batch", "8"]
RUNS = {
    "lstm-ternary": ["--quant", "ternary", "--stochastic", "--seed", "3"],
    "gru-binary": ["--cell", "gru", "--quant", "binary", "--stochastic", "--seed", "4"],
    "lstm-fp": ["--quant", "fp", "--seed", "5"],
}


def fingerprint():
    """What decides the bits of a float computation here: CPU, NumPy, its BLAS, Numba."""
    import numba
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # older NumPy: no dicts mode
        blas = "unknown"
    return {"cpu": cpu, "machine": platform.machine(), "numpy": np.__version__, "blas": blas,
            "numba": numba.__version__}


def summarize(arr):
    a = np.asarray(arr)
    x = a.astype(np.float64).ravel() if a.dtype.kind in "fiub" else np.zeros(0)
    return {"sha256": hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest(),
            "dtype": a.dtype.str, "shape": list(a.shape),
            "sum": float(x.sum()) if x.size else 0.0,
            "abs_sum": float(np.abs(x).sum()) if x.size else 0.0,
            "head": [float(v) for v in x[:4]]}


def _invoke(*args):
    from click.testing import CliRunner

    from rbtw.cli import main
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if result.exit_code != 0:
        raise AssertionError(f"rbtw {' '.join(map(str, args))} failed: {result.output}")
    return result.stdout


def run_pipeline(tmp):
    """{"arrays": {name: summary}, "figures": {name: value}, "texts": {name: str}}."""
    from rbtw.checkpoint import load_checkpoint
    from rbtw.export_format import read_export
    tmp = Path(tmp)
    arrays, figures, texts = {}, {}, {}
    for name, args in RUNS.items():
        run = tmp / name
        _invoke("train", "default", *TINY, *args, "--out", run)
        ckpt = load_checkpoint(run / "checkpoint.npz")
        for section, part in (("param", ckpt.params), ("stat", ckpt.stats), ("opt", ckpt.optimizer)):
            for key, value in part.items():
                arrays[f"{name}/{section}/{key}"] = summarize(value)
        tests = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
                 if '"event": "test"' in line]
        figures[f"{name}/train/test_bpc"] = tests[-1]["test_bpc"]
        for line in (run / "metrics.jsonl").read_text().splitlines():
            event = json.loads(line)
            if event.get("event") == "epoch":
                figures[f"{name}/epoch{event['epoch']}/valid_bpc"] = event["valid_bpc"]
        dense = json.loads(_invoke("eval", run / "checkpoint.npz", "--json", "--max-batches", "3"))
        figures[f"{name}/eval/dense"] = dense["bpc"]
        for label, extra in (("default", []), ("per-step", ["--bn-steps", "1000"])):
            path = tmp / f"{name}-{label}.rbtw"
            _invoke("export", run / "checkpoint.npz", path, *extra)
            export = read_export(path)
            for key, value in export.arrays.items():
                arrays[f"{name}/export-{label}/{key}"] = summarize(value)
            packed = json.loads(_invoke("eval", path, "--json", "--max-batches", "3"))
            figures[f"{name}/eval/packed-{label}"] = packed["bpc"]
        texts[f"{name}/sample"] = _invoke("sample", tmp / f"{name}-default.rbtw", "--prime", "Alice ",
                                          "--length", "60", "--seed", "2")
    return {"arrays": arrays, "figures": figures, "texts": texts}


def main():
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        record = run_pipeline(tmp)
    record["fingerprint"] = fingerprint()
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}: {len(record['arrays'])} arrays, {len(record['figures'])} figures", file=sys.stderr)


if __name__ == "__main__":
    main()
