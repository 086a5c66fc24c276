"""Training-step throughput of the BN-LSTM: rbtw against PyTorch.

    python3 bench/train_step.py [--quick] [--hidden 256 1000] [--threads 1 2] [--repeats 7]

One training step = forward + backward of a character LM (one-hot input of V = 50 symbols,
one BN-LSTM layer of H units with binary stochastic W_x, W_h, a full-precision output layer,
softmax cross-entropy), batch B = 64, T = 100 steps; no optimiser update.  Timed:

  rbtw            models.loss_and_grads (the fused Numba/BLAS path)
  rbtw-reference  the same with the plain NumPy layer (lstm.forward_reference), the baseline
  torch-eager     the same model in PyTorch eager mode as a user would write it: a per-step
                  Python loop over ``unbind`` of the precomputed input products, F.batch_norm
                  with batch statistics (and running statistics) per step, the stochastic
                  binarisation as a torch.autograd.Function with a straight-through backward,
                  autograd for the rest; the input product is F.embedding(ids, W_x^q) (the same
                  row gather rbtw uses)
  torch-lstm      torch.nn.LSTM (cuDNN-style fused cell, no BN, no quantisation) on the one-hot
                  input, with the same output layer and loss: a floor

PyTorch is optional and used by this script only: without it the torch rows are skipped.
Every thread count runs in its own child process with OPENBLAS/OMP/MKL/NUMBA_NUM_THREADS set
(and torch.set_num_threads).  Times are the median of --repeats runs after two warm-up steps.
Peak RSS of one step is measured in a fresh child per implementation (VmHWM reset with
/proc/self/clear_refs after a warm-up step, so it is the step's own peak, not the compiler's).
Unless --no-train, characters per second of a `rbtw train ptb_char` epoch are measured too.
Results: bench/results/train_step.{md,json}.
"""

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

ROOT = Path(__file__).resolve().parent.parent
V, B, T = 50, 64, 100
IMPLS = ("rbtw", "rbtw-reference", "torch-eager", "torch-lstm")


# ------------------------------------------------------------------------------------------
# the steps (built inside the child, after the thread variables are set)


def rbtw_step(H, reference=False):
    import numpy as np

    from rbtw import models
    from rbtw.nn import lstm
    if reference:
        lstm.forward_fused = lstm.forward_reference     # backward follows the cache it is given
    spec = models.ModelSpec(kind="char", n_in=V, n_out=V, hidden=H, quant="binary", stochastic=True,
                            bn=True, t_max=T)
    rng = np.random.default_rng(0)
    params, stats = models.init(spec, rng)
    ids = rng.integers(0, V, size=(T, B))
    targets = rng.integers(0, V, size=(T, B))

    def step():
        return models.loss_and_grads(params, stats, spec, ids, targets, rng=rng)[0]
    return step


def torch_eager_step(H):
    import torch
    import torch.nn.functional as F

    class BinarizeSTE(torch.autograd.Function):
        """W^q = +α with p = clip((W/α + 1)/2, 0, 1), else −α; backward: straight through."""

        @staticmethod
        def forward(ctx, W, alpha):
            p = ((W / alpha + 1) * 0.5).clamp(0, 1)
            return torch.where(torch.rand_like(W) < p, alpha, -alpha)

        @staticmethod
        def backward(ctx, grad):
            return grad, None

    G = 4 * H
    torch.manual_seed(0)
    par = lambda *shape, fill=None: torch.nn.Parameter(  # noqa: E731
        torch.full(shape, fill) if fill is not None else torch.randn(*shape) * 0.1)
    Wx, Wh = par(V, G), par(H, G)
    gamma_a, gamma_b, gamma_c = par(G, fill=0.1), par(G, fill=0.1), par(H, fill=0.1)
    beta_a, beta_c = par(G, fill=0.0), par(H, fill=0.0)
    h0, c0 = par(H, fill=0.0), par(H, fill=0.0)
    Wout, bout = par(H, V), par(V, fill=0.0)
    params = [Wx, Wh, gamma_a, gamma_b, gamma_c, beta_a, beta_c, h0, c0, Wout, bout]
    ax, ah = 0.5 * (6 / (V + G)) ** 0.5, 0.5 * (6 / (H + G)) ** 0.5
    rm = {k: torch.zeros(T, n) for k, n in (("a", G), ("c", H))}
    rv = {k: torch.ones(T, n) for k, n in (("a", G), ("c", H))}
    rm_b, rv_b = torch.zeros(T * G), torch.ones(T * G)
    ids = torch.randint(0, V, (T, B))
    targets = torch.randint(0, V, (T, B))

    def step():
        for p in params:
            p.grad = None
        Wxq, Whq = BinarizeSTE.apply(Wx, ax), BinarizeSTE.apply(Wh, ah)
        b = F.embedding(ids, Wxq)                                            # (T, B, G)
        nb = F.batch_norm(b.transpose(0, 1).reshape(B, T * G), rm_b, rv_b, gamma_b.repeat(T), None,
                          True, 0.05, 1e-5).reshape(B, T, G).transpose(0, 1)  # per-step statistics
        h, c = h0.expand(B, H), c0.expand(B, H)
        hs = []
        for t, nb_t in enumerate(nb.unbind(0)):
            a = F.batch_norm(h @ Whq, rm["a"][t], rv["a"][t], gamma_a, beta_a, True, 0.05, 1e-5)
            i, f, g, o = (a + nb_t).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            nc = F.batch_norm(c, rm["c"][t], rv["c"][t], gamma_c, beta_c, True, 0.05, 1e-5)
            h = torch.sigmoid(o) * torch.tanh(nc)
            hs.append(h)
        logits = torch.stack(hs) @ Wout + bout
        loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
        loss.backward()
        return float(loss)
    return step


def torch_lstm_step(H):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(V, H)
    out = torch.nn.Linear(H, V)
    params = list(lstm.parameters()) + list(out.parameters())
    ids = torch.randint(0, V, (T, B))
    targets = torch.randint(0, V, (T, B))

    def step():
        for p in params:
            p.grad = None
        y, _ = lstm(F.one_hot(ids, V).float())
        loss = F.cross_entropy(out(y).reshape(-1, V), targets.reshape(-1))
        loss.backward()
        return float(loss)
    return step


def make_step(impl, H):
    if impl == "rbtw":
        return rbtw_step(H)
    if impl == "rbtw-reference":
        return rbtw_step(H, reference=True)
    if impl == "torch-eager":
        return torch_eager_step(H)
    return torch_lstm_step(H)


def have_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------------------
# children


def child_env(threads):
    env = dict(os.environ)
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[k] = str(threads)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_child(args, threads):
    cmd = [sys.executable, str(Path(__file__).resolve())] + args
    res = subprocess.run(cmd, env=child_env(threads), capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def child_time(impl, H, threads, repeats):
    if impl.startswith("torch"):
        import torch
        torch.set_num_threads(threads)
    step = make_step(impl, H)
    for _ in range(2):
        step()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return {"median": statistics.median(times), "min": min(times), "times": times}


def vm_status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0  # MiB
    return float("nan")


def child_rss(impl, H):
    step = make_step(impl, H)
    step()                                               # warm-up: compile / load caches
    before = vm_status("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")     # reset the peak (VmHWM) to now
        reset = True
    except OSError:
        reset = False
    step()
    return {"rss_before_mib": before, "peak_mib": vm_status("VmHWM"), "peak_reset": reset}


# ------------------------------------------------------------------------------------------
# rbtw train (characters per second)


def train_chars_per_second(H, batches, threads):
    """Run `rbtw train ptb_char` for one capped epoch; chars/s of its training minibatches.

    A one-minibatch run goes first, untimed: it fills Numba's on-disk cache for the argument
    types the data pipeline produces, so the timed epoch measures training, not compilation.
    """
    with tempfile.TemporaryDirectory() as out:
        def command(n):
            return [sys.executable, "-m", "rbtw.cli", "train", "ptb_char", "--preset", "quick", "--hidden",
                    str(H), "--quant", "binary", "--stochastic", "--epochs", "1", "--max-batches", str(n),
                    "--eval-max-batches", "1", "--out", out, "--force"]
        subprocess.run(command(1), env=child_env(threads), capture_output=True, text=True, check=False, cwd=ROOT)
        cmd = command(batches)
        t = time.time()
        res = subprocess.run(cmd, env=child_env(threads), capture_output=True, text=True, check=False, cwd=ROOT)
        wall = time.time() - t
        if res.returncode != 0:
            last = (res.stderr.strip().splitlines() or ["no message"])[-1]
            from rbtw.errors import UserError
            raise UserError(f"`rbtw train ptb_char` failed (exit {res.returncode}): {last}")
        events = [json.loads(line) for line in Path(out, "metrics.jsonl").read_text().splitlines()]
    epoch = next(e for e in events if e.get("event") == "epoch")
    chars = batches * B * T
    shown = " ".join(c if not c.startswith("/") else "<tmp>" for c in cmd[1:])
    return {"command": f"python3 {shown}", "batches": batches, "epoch_seconds": epoch["seconds"],
            "chars_per_second": chars / epoch["seconds"], "wall_seconds": wall}


# ------------------------------------------------------------------------------------------
# report


def machine():
    from rbtw.machine import cpu_model, vector_isa
    return {"cpu": cpu_model(), "isa": vector_isa(), "cores": os.cpu_count(), "python": platform.python_version(),
            "loadavg": Path("/proc/loadavg").read_text().split()[:3],
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def versions():
    import numba
    import numpy
    out = {"numpy": numpy.__version__, "numba": numba.__version__}
    if have_torch():
        import torch
        out["torch"] = torch.__version__
    return out


def markdown(res, argv):
    lines = ["# Training step: rbtw BN-LSTM against PyTorch", "",
             f"Command: `python3 bench/train_step.py {' '.join(argv)}`", "",
             f"Machine: {res['machine']['cpu']}, {res['machine']['cores']} cores; "
             f"{res['machine']['date']}; load average before: {' '.join(res['machine']['loadavg'])}; "
             f"{', '.join(f'{k} {v}' for k, v in res['versions'].items())}.", ""]
    if res.get("earlier"):
        e = res["earlier"]
        lines += [f"Sections not rerun are from `python3 bench/train_step.py {' '.join(e.get('argv') or [])}` "
                  f"({e['machine']['date']}, load average {' '.join(e['machine']['loadavg'])}).", ""]
    lines += [

             f"One step = forward + backward of a char LM: one-hot V={V}, B={B}, T={T}, one BN-LSTM "
             "layer (binary stochastic W_x, W_h), output layer, softmax cross-entropy.  Median of "
             f"{res['repeats']} runs (seconds).", ""]
    impls = [i for i in IMPLS if any(i in r for r in res["time"].values())]
    if not res["time"]:
        lines.append("(no step timings in this run)")
    lines += ["| H | threads | " + " | ".join(impls) + " | vs torch-eager | vs torch-lstm |",
              "|---|---|" + "---|" * len(impls) + "---|---|"]
    for key, r in res["time"].items():
        H, th = key.split("/")
        cells = [f"{r[i]['median']:.3f}" if i in r else "–" for i in impls]
        sp = f"{r['torch-eager']['median'] / r['rbtw']['median']:.2f}× faster" if "torch-eager" in r else "–"
        fl = f"{r['rbtw']['median'] / r['torch-lstm']['median']:.2f}× its time" if "torch-lstm" in r else "–"
        lines.append(f"| {H} | {th} | " + " | ".join(cells) + f" | {sp} | {fl} |")
    if res.get("rss"):
        lines += ["", "Peak RSS of one training step (MiB; 1 thread; VmHWM after a reset, and the RSS "
                  "held before the step):", "", "| H | impl | peak | before step |", "|---|---|---|---|"]
        for key, r in res["rss"].items():
            H, impl = key.split("/")
            lines.append(f"| {H} | {impl} | {r['peak_mib']:.0f} | {r['rss_before_mib']:.0f} |")
    if res.get("train"):
        lines += ["", "`rbtw train ptb_char` (binary stochastic, B 64, T 100), one epoch capped to N "
                  "minibatches after an untimed one-minibatch run (Numba cache); chars/s = N·B·T / the epoch's "
                  "\"seconds\" in metrics.jsonl (includes one validation minibatch and the Adam updates):", "", "| H | threads | batches | epoch s | chars/s | command |",
                  "|---|---|---|---|---|---|"]
        for key, r in res["train"].items():
            H, th = key.split("/")
            lines.append(f"| {H} | {th} | {r['batches']} | {r['epoch_seconds']:.1f} | "
                         f"{r['chars_per_second']:.0f} | `{r['command']}` |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="H 256 only, 5 repeats, short train run")
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 1000])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--impl", nargs="+", default=list(IMPLS), choices=IMPLS)
    ap.add_argument("--no-train", action="store_true", help="skip the `rbtw train` runs")
    ap.add_argument("--no-rss", action="store_true")
    ap.add_argument("--no-time", action="store_true", help="skip the step timings")
    ap.add_argument("--merge", action="store_true",
                    help="keep the sections of an existing train_step.json that this run skips")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--child", choices=("time", "rss"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "time":
        print(json.dumps(child_time(args.impl[0], args.hidden[0], args.threads[0], args.repeats)))
        return
    if args.child == "rss":
        print(json.dumps(child_rss(args.impl[0], args.hidden[0])))
        return

    if not args.no_train:   # before minutes of timing: the train runs need PTB in the cache
        from rbtw.config import TrainConfig
        from rbtw.tasks import load_task_data
        load_task_data(TrainConfig(task="ptb_char"))
    if args.quick:
        args.hidden, args.repeats = [256], 5
    impls = [i for i in args.impl if have_torch() or not i.startswith("torch")]
    if len(impls) < len(args.impl):
        print("PyTorch is not installed: the torch rows are skipped", file=sys.stderr)
    res = {"machine": machine(), "versions": versions(), "repeats": args.repeats, "time": {}, "rss": {},
           "train": {}}
    for H in args.hidden if not args.no_time else []:
        for th in args.threads:
            row = res["time"][f"{H}/{th}"] = {}
            for impl in impls:
                if impl == "rbtw-reference" and th != args.threads[0]:
                    continue
                row[impl] = run_child(["--child", "time", "--impl", impl, "--hidden", str(H), "--threads", str(th),
                                       "--repeats", str(args.repeats)], th)
                print(f"H {H} threads {th} {impl}: {row[impl]['median']:.3f} s", file=sys.stderr)
    if not args.no_rss:
        for H in args.hidden:
            for impl in impls:
                res["rss"][f"{H}/{impl}"] = r = run_child(["--child", "rss", "--impl", impl, "--hidden", str(H)], 1)
                print(f"H {H} {impl}: peak RSS {r['peak_mib']:.0f} MiB", file=sys.stderr)
    if not args.no_train:
        for H in args.hidden:
            batches = (10 if args.quick else 30) if H <= 256 else (4 if args.quick else 10)
            for th in args.threads:
                res["train"][f"{H}/{th}"] = r = train_chars_per_second(H, batches, th)
                print(f"train H {H} threads {th}: {r['chars_per_second']:.0f} chars/s", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    argv = sys.argv[1:]
    previous = args.out / "train_step.json"
    if args.merge and previous.exists():
        old = json.loads(previous.read_text())
        for section, skipped in (("time", args.no_time), ("rss", args.no_rss), ("train", args.no_train)):
            if skipped:
                res[section] = old.get(section, {})
        res["earlier"] = {"machine": old.get("machine"), "argv": old.get("argv")}
    res["argv"] = argv
    (args.out / "train_step.json").write_text(json.dumps(res, indent=1) + "\n")
    (args.out / "train_step.md").write_text(markdown(res, argv))
    print(markdown(res, argv))


if __name__ == "__main__":
    from rbtw.errors import run_script
    run_script(main)
