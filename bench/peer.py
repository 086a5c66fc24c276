"""Benchmark: rbtw end to end against what a user would run instead, PyTorch's LSTMs.

    PYTHONPATH=$PWD python3 bench/peer.py --paths avx512 [avx2 portable avx2@x86-64-v3]
        [--checkpoints DIR] [--hidden 256 1000] [--runs 5] [--json bench/results/peer.json]
    PYTHONPATH=$PWD python3 bench/peer.py --report [--json …] [--out bench/results/peer.md]
    PYTHONPATH=$PWD python3 bench/peer.py --bpc --checkpoints DIR        (no timing: the BPC check)

Dimension legend: H hidden, V vocabulary (PTB char: 50), T = 100 steps, B batch.

Two jobs, for each H, binary and ternary exports, and each kernel path asked for:

    generation   chars/s at batch 1, tokens drawn from softmax(logits) and fed back:
                 rbtw.load(export).sample (the packed engine's per-token path), the emulator
                 (rbtw.generate.generate on AccelEngine), torch int8 dynamic
                 (torch.ao.quantization.quantize_dynamic of nn.LSTM + nn.Linear) and torch
                 float32 — each torch model as nn.LSTM and as nn.LSTMCell, the faster one kept
                 (named) — with a one-hot input, softmax and torch.multinomial
    evaluation   scored chars/s on the first --eval-batches minibatches (B = 64, T = 100) of the
                 PTB-char test split: Model.evaluate of the export (packed) and of its checkpoint
                 (the dense float engine), the emulator (evaluate_engine), torch int8 and float32
                 nn.LSTM over the window + nn.Linear + summed cross-entropy

Every system of one H runs in one process, 1 thread each (OPENBLAS/MKL/OMP/NUMBA_NUM_THREADS=1,
torch.set_num_threads(1)), the timed runs taking turns (interleaved), --runs of each; the
tables give medians and ratios of medians from the same process.  A kernel path runs in its own
child process (RBTW_KERNELS=path); "avx2@x86-64-v3" also compiles rbtw's jitted code for
x86-64-v3 without AVX-512 (NUMBA_CPU_NAME=x86-64-v3, NUMBA_CPU_FEATURES=-avx512f: a named CPU
alone keeps the host's features) and asks torch for AVX2 (ATEN_CPU_CAPABILITY=avx2) — the
nearest this host comes to an AVX2 machine.

Exports: from the checkpoints DIR/h{H}-{binary,ternary}/checkpoint.npz when given, else random
models (tests/randmodel.py) with the PTB-char vocabulary; each exported as `rbtw export` does
(BN tables: the smallest number K of per-step tables within the tolerance on the validation
split).  --bpc evaluates the whole test split with the dense engine and with exports of one BN
table per step (the same model) and of rbtw export's default.
Results accumulate in the JSON file (one entry per path), so long runs split into short windows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]
import rbtw  # noqa: E402,F401  (before NumPy: OpenBLAS's spin timeout)

PATHS = ("avx512", "avx2", "portable", "avx2@x86-64-v3")
ONE = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS")
SYSTEMS = ("packed", "emulator", "dense", "torch int8", "torch fp32")
TARGETS = {  # (job, path, quant, against) -> ratio at H 1000, docs: issue 21
    ("gen", "avx512", "binary", "torch int8"): 3.0, ("gen", "avx2", "binary", "torch int8"): 2.0,
    ("gen", "portable", "binary", "torch int8"): 1.0, ("gen", "avx512", "ternary", "torch int8"): 2.5,
    ("gen", "avx2", "ternary", "torch int8"): 1.5, ("gen", "portable", "ternary", "torch int8"): 1.0,
    ("eval", "avx512", "binary", "dense"): 1.5, ("eval", "avx512", "ternary", "dense"): 1.5,
}


# ------------------------------------------------------------------------------------ models


def checkpoints(args, H, tmp, vocab):
    """{quant: checkpoint path} for H: the given ones, or random models saved in tmp."""
    if args.checkpoints:
        return {q: Path(args.checkpoints) / f"h{H}-{q}" / "checkpoint.npz" for q in ("binary", "ternary")}
    import numpy as np
    from randmodel import random_model

    from rbtw.checkpoint import save_checkpoint
    out = {}
    for q in ("binary", "ternary"):
        meta, params, stats = random_model(np.random.default_rng(H), hidden=H, quant=q, n_in=len(vocab), t_max=100)
        meta = dict(meta, vocab=list(vocab), config=dict(meta["config"], batch=64, eval_batch=None))
        out[q] = Path(tmp) / f"h{H}-{q}.npz"
        save_checkpoint(out[q], meta, params, stats, {})
    return out


def export_of(ckpt, path, bn_steps=None):
    """Write the export of ``ckpt`` as ``rbtw export`` does (bn_steps None: K measured on the
    validation split, rbtw.export.export_checkpoint) and return its path."""
    from rbtw.api import read_checkpoint
    from rbtw.export import export_checkpoint
    from rbtw.export_format import write_export
    c, _ = read_checkpoint(ckpt)
    write_export(path, export_checkpoint(c, bn_steps))
    return path


# ------------------------------------------------------------------------------------ torch


def torch_models(H, V):
    """{(precision, form): (module, step)}: nn.LSTM and nn.LSTMCell, float32 and int8 dynamic."""
    import torch
    import warnings
    warnings.filterwarnings("ignore")
    nn = torch.nn
    torch.manual_seed(0)
    out = {}
    for form in ("LSTM", "LSTMCell"):
        m = nn.Module()
        m.rnn = nn.LSTM(V, H) if form == "LSTM" else nn.LSTMCell(V, H)
        m.out = nn.Linear(H, V)
        q = torch.ao.quantization.quantize_dynamic(m, {nn.LSTM, nn.LSTMCell, nn.Linear}, dtype=torch.qint8)
        out[("fp32", form)] = m.eval()
        out[("int8", form)] = q.eval()
    return out


def torch_generate(m, form, V, n, seed):
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        x = torch.zeros((1, 1, V) if form == "LSTM" else (1, V))
        state, tok = None, 0
        for _ in range(n):
            x.zero_()
            x[..., tok] = 1
            if form == "LSTM":
                y, state = m.rnn(x, state)
                logits = m.out(y[0])
            else:
                state = m.rnn(x, state)
                logits = m.out(state[0])
            tok = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=g))


def torch_evaluate(m, V, batches):
    """Summed cross-entropy of nn.LSTM over each (inputs (T, B), targets (T, B)) window."""
    import torch
    with torch.inference_mode():
        total = 0.0
        for ids, tg in batches:
            x = torch.nn.functional.one_hot(torch.from_numpy(ids.astype("int64")), V).float()   # (T, B, V)
            y, _ = m.rnn(x)
            logits = m.out(y)
            total += float(torch.nn.functional.cross_entropy(logits.reshape(-1, V), torch.from_numpy(tg.astype("int64")).reshape(-1),
                                                             reduction="sum"))
    return total


# ------------------------------------------------------------------------------------ child


def interleaved(jobs, runs):
    """{name: [chars/s per run]} for jobs {name: (fn, chars)}, each run taking turns."""
    for fn, _ in jobs.values():                     # warm-up: compile, caches
        fn()
    rates = {name: [] for name in jobs}
    names = list(jobs)
    for r in range(runs):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn, chars = jobs[name]
            t = time.perf_counter()
            fn()
            rates[name].append(chars / (time.perf_counter() - t))
    return rates


def child(args):
    import numpy as np
    import torch

    import numba
    from rbtw.accel import design as dm
    from rbtw.accel.engine import AccelEngine
    from rbtw.config import TrainConfig
    from rbtw.evaluate import evaluate_engine
    from rbtw.generate import generate
    from rbtw.kernels import isa
    from rbtw.tasks import load_task_data
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    config = TrainConfig(task="ptb_char", seq_len=100, batch=64)
    data = load_task_data(config)
    V = len(data.vocab)
    batches = [b for _, b in zip(range(args.eval_batches), data.batches("test", config, batch=64))]
    chars = sum(b[1].size for b in batches)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for H in args.hidden:
            ckpts = checkpoints(args, H, tmp, data.vocab)
            tm = torch_models(H, V)
            gen, ev = {}, {}
            for (prec, form), m in tm.items():
                gen[f"torch {prec} {form}"] = (lambda m=m, form=form: torch_generate(m, form, V, args.gen_chars, 0),
                                               args.gen_chars)
                if form == "LSTM":
                    ev[f"torch {prec}"] = (lambda m=m: torch_evaluate(m, V, batches), chars)
            for q, ckpt in ckpts.items():
                model = rbtw.load(export_of(ckpt, Path(tmp) / f"h{H}-{q}.rbtw"))
                dense = rbtw.load(ckpt)
                emu = AccelEngine(model._export, dm.preset(q))
                gen[f"packed {q}"] = (lambda model=model: model.sample("the", length=args.gen_chars, seed=1),
                                      args.gen_chars)
                gen[f"emulator {q}"] = (lambda emu=emu: generate(emu, [0], args.gen_chars, rng=np.random.default_rng(1)),
                                        args.gen_chars)
                ev[f"packed {q}"] = (lambda model=model: model.evaluate(split="test", max_batches=args.eval_batches), chars)
                ev[f"dense {q}"] = (lambda dense=dense: dense.evaluate(split="test", max_batches=args.eval_batches), chars)
                ev[f"emulator {q}"] = (lambda emu=emu: evaluate_engine(emu, data, "test", config,
                                                                       max_batches=args.eval_batches), chars)
            for job, jobs in (("gen", gen), ("eval", ev)):
                for name, r in interleaved(jobs, args.runs).items():
                    rows.append({"H": H, "job": job, "system": name, "median": statistics.median(r), "runs": r})
            print(f"H {H} done", file=sys.stderr, flush=True)
    return {"rows": rows, "isa": isa.describe(), "torch": torch.__version__,
            "torch_isa": torch.backends.cpu.get_cpu_capability(),
            "numba_target": " ".join(f"{k}={os.environ[k]}" for k in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")
                                     if k in os.environ) or "host",
            "load": os.getloadavg()[0], "eval_chars": chars}


def spawn(path, args):
    kernels, _, cpu = path.partition("@")
    env = dict(os.environ, RBTW_KERNELS=kernels, **{k: "1" for k in ONE},
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if cpu:
        env.update(NUMBA_CPU_NAME=cpu, NUMBA_CPU_FEATURES="-avx512f", ATEN_CPU_CAPABILITY="avx2")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--runs", str(args.runs),
           "--gen-chars", str(args.gen_chars), "--eval-batches", str(args.eval_batches),
           "--hidden", *map(str, args.hidden)] + (["--checkpoints", args.checkpoints] if args.checkpoints else [])
    done = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------ BPC check


def bpc_check(args):
    """Whole test split: dense engine vs exports with one BN table per step and the default."""
    from rbtw.data import load_corpus
    from rbtw.export import PER_STEP
    vocab = load_corpus("ptb_char", None).vocab
    lines = ["| H | export | dense test BPC | packed, one table per step | difference | packed, rbtw export's "
             "default | its K | chars |", "|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for H in args.hidden:
            for q, ckpt in checkpoints(args, H, tmp, vocab).items():
                whole = dict(split="test", max_batches=1 << 30)         # not the run's eval cap
                dense = rbtw.load(ckpt).evaluate(**whole)
                step = rbtw.load(export_of(ckpt, Path(tmp) / "s.rbtw", PER_STEP)).evaluate(**whole)["bpc"]
                default = rbtw.load(export_of(ckpt, Path(tmp) / "k.rbtw"))
                k = default._export.manifest.get("bn_steps") or "per step"
                k1 = default.evaluate(**whole)["bpc"]
                lines.append(f"| {H} | {q} | {dense['bpc']:.6f} | {step:.6f} | {step - dense['bpc']:+.1e} | {k1:.6f} | "
                             f"{k} | {dense['n']:,} |")
                print(lines[-1], flush=True)
    return lines


# ------------------------------------------------------------------------------------ report


def best(rows, H, job, prefix):
    """(median, name) of the fastest system whose name starts with ``prefix``."""
    cands = [(r["median"], r["system"]) for r in rows if r["H"] == H and r["job"] == job
             and r["system"].startswith(prefix)]
    return max(cands) if cands else (float("nan"), "?")


def ratios(rows, H, job, q):
    """{system: (median chars/s, label)} of one export's row."""
    out = {"packed": best(rows, H, job, f"packed {q}"), "emulator": best(rows, H, job, f"emulator {q}"),
           "torch int8": best(rows, H, job, "torch int8"), "torch fp32": best(rows, H, job, "torch fp32")}
    if job == "eval":
        out["dense"] = best(rows, H, job, f"dense {q}")
    return out


def tables(path, entry):
    rows = entry["rows"]
    out = [f"### {path}", "", f"- kernel path: `RBTW_KERNELS={path.partition('@')[0]}`; Numba target "
           f"{entry['numba_target']}; torch {entry['torch']} (ATen CPU capability {entry['torch_isa']})",
           *[f"- {line}" for line in entry["isa"]], f"- 1-minute load average at the end: {entry['load']:.2f}", "",
           "Generation, batch 1 (chars/s, median):", "",
           "| H | export | packed | emulator | torch int8 | torch fp32 | packed / int8 | packed / fp32 | emulator / packed |",
           "|---|---|---|---|---|---|---|---|---|"]
    Hs = sorted({r["H"] for r in rows})
    for H in Hs:
        for q in ("binary", "ternary"):
            r = ratios(rows, H, "gen", q)
            p, e, i8, f32 = (r[k][0] for k in ("packed", "emulator", "torch int8", "torch fp32"))
            out.append(f"| {H} | {q} | {p:,.0f} | {e:,.0f} | {i8:,.0f} ({r['torch int8'][1].split()[-1]}) | "
                       f"{f32:,.0f} ({r['torch fp32'][1].split()[-1]}) | **{p / i8:.2f}×** | {p / f32:.2f}× | {e / p:.2f} |")
    out += ["", f"Test-split evaluation, batch 64 ({entry['eval_chars']:,} chars; scored chars/s, median):", "",
            "| H | export | packed | dense float engine | emulator | torch int8 | torch fp32 | packed / dense | "
            "packed / int8 | packed / fp32 | emulator / packed |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for H in Hs:
        for q in ("binary", "ternary"):
            r = ratios(rows, H, "eval", q)
            p, d, e, i8, f32 = (r[k][0] for k in ("packed", "dense", "emulator", "torch int8", "torch fp32"))
            out.append(f"| {H} | {q} | {p:,.0f} | {d:,.0f} | {e:,.0f} | {i8:,.0f} | {f32:,.0f} | **{p / d:.2f}×** | "
                       f"{p / i8:.2f}× | {p / f32:.2f}× | {e / p:.2f} |")
    return out + [""]


def target_table(results):
    out = ["| job (H 1000) | path | export | ratio | against | target | |", "|---|---|---|---|---|---|---|"]
    for (job, path, q, against), want in TARGETS.items():
        if path not in results:
            continue
        r = ratios(results[path]["rows"], 1000, job, q)
        got = r["packed"][0] / r[against][0]
        out.append(f"| {'generation' if job == 'gen' else 'evaluation, B 64'} | {path} | {q} | {got:.2f}× | {against} | "
                   f"≥ {want}× | {'met' if got >= want else '**missed**'} |")
    for path, entry in results.items():                    # the emulator never faster
        worst = max((ratios(entry["rows"], H, job, q)["emulator"][0] / ratios(entry["rows"], H, job, q)["packed"][0],
                     H, job, q) for H in sorted({r["H"] for r in entry["rows"]}) for job in ("gen", "eval")
                    for q in ("binary", "ternary"))
        out.append(f"| emulator / packed, worst case (H {worst[1]}, {worst[2]}, {worst[3]}) | {path} | | {worst[0]:.2f} | "
                   f"| ≤ 1 | {'met' if worst[0] <= 1 else '**missed**'} |")
    return out


def report(args):
    results = json.loads(Path(args.json).read_text())
    meta = results.pop("_meta", {})
    lines = ["# rbtw end to end vs PyTorch's LSTMs (generation and test-split evaluation)", "",
             "Produced by `bench/peer.py` (from the project root); the commands, in order:", ""]
    lines += [f"    {c}" for c in meta.get("commands", [])]
    lines += [""] + [f"- {n}" for n in meta.get("notes", [])]
    lines += ["", f"- machine: {meta.get('machine', '?')}; Python {platform.python_version()}",
              "- 1 thread everywhere; medians of the runs of each system, which took turns in one process per "
              "kernel path; ratios of medians from the same process", ""]
    lines += ["## Targets (issue 21)", ""] + target_table(results) + ["", "## Tables", ""]
    for path in PATHS:
        if path in results:
            lines += tables(path, results[path])
    if meta.get("bpc"):
        lines += ["## The same model: test BPC of the dense engine and of the packed exports", ""] + meta["bpc"] + [""]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


def machine():
    """CPU model, cores and the widest vector instruction set (rbtw.machine)."""
    from rbtw.machine import describe
    return describe()


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--paths", nargs="*", default=[], choices=PATHS)
    ap.add_argument("--hidden", nargs="+", type=int, default=[256, 1000])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--gen-chars", type=int, default=3000)
    ap.add_argument("--eval-batches", type=int, default=3)
    ap.add_argument("--checkpoints")
    ap.add_argument("--json", default=str(ROOT / "bench/results/peer.json"))
    ap.add_argument("--out", default=str(ROOT / "bench/results/peer.md"))
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--bpc", action="store_true")
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--note", action="append", default=[], help="a line for the report (e.g. how the checkpoints were made)")
    return ap.parse_args()


def main():
    args = parse()
    if args.child:
        print(json.dumps(child(args)))
        return
    store = Path(args.json)
    results = json.loads(store.read_text()) if store.exists() else {}
    meta = results.setdefault("_meta", {"commands": []})
    meta["machine"] = machine()
    command = "PYTHONPATH=$PWD python3 bench/peer.py " + " ".join(a if " " not in a else repr(a) for a in sys.argv[1:])
    meta.setdefault("notes", []).extend(n for n in args.note if n not in meta.get("notes", []))
    if args.bpc:
        meta["bpc"] = bpc_check(args)
    for path in args.paths:
        results[path] = spawn(path, args)
    if args.bpc or args.paths or args.note:
        meta["commands"].append(command)
        store.write_text(json.dumps(results, indent=1) + "\n")
    if args.report or not (args.bpc or args.paths):
        report(args)


if __name__ == "__main__":
    main()
