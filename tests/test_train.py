"""The trainer: learning on real text in every mode, exact resume, NaN stop, checkpoints."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from rbtw.config import TrainConfig
from rbtw.evaluate import evaluate
from rbtw.tasks import TaskData
from rbtw import train
from rbtw.checkpoint import load_checkpoint
from rbtw.errors import UserError

ALICE = Path(__file__).resolve().parents[1] / "data" / "carroll-alice.txt"
MODES = [("none", False), ("binary", False), ("ternary", False), ("binary", True), ("ternary", True)]


@pytest.fixture(scope="module")
def alice():
    """A few kB of real text (the embedded corpus), as a small char-level task."""
    text = ALICE.read_text(encoding="utf-8")[5000:17000]
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    ids = np.array([index[c] for c in text], dtype=np.int32)
    return TaskData("char", ids[:10000], ids[10000:11000], ids[11000:], vocab=vocab)


def tiny_config(**kw):
    base = dict(task="default", hidden=32, seq_len=50, batch=32, epochs=8, lr=1e-2, log_every=1000)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bn", [True, False])
@pytest.mark.parametrize("quant,stochastic", MODES)
def test_tiny_char_model_learns_in_every_mode(alice, tmp_path, cell, bn, quant, stochastic):
    config = tiny_config(cell=cell, bn=bn, quant=quant, stochastic=stochastic, lr=1e-2 if bn else 5e-3)
    result = train.Run(config, tmp_path, data=alice, log=lambda line: None).run()
    log_v = math.log(len(alice.vocab))
    # 48 minibatches of 1,600 characters: with BN every mode gets well past the unigram level
    # (≈ 0.7 log V); without BN it at least reaches it.
    assert result["loss"] < (0.65 if bn else 0.8) * log_v, result


def run_to_end(config, out, data, interrupt_at=None):
    """Train; optionally raise KeyboardInterrupt after minibatch ``interrupt_at`` (a step count)."""
    def progress(run, loss):
        if interrupt_at is not None and run.step == interrupt_at:
            raise KeyboardInterrupt

    return train.Run(config, out, data=data, log=lambda line: None).run(progress=progress)


def word_task():
    rng = np.random.default_rng(5)
    vocab = [f"w{k}" for k in range(30)]
    stream = rng.integers(0, 30, size=4000).astype(np.int32)
    return TaskData("word", stream[:3000], stream[3000:3500], stream[3500:], vocab=vocab)


@pytest.mark.parametrize("kind", ["char", "word"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(alice, tmp_path, kind):
    if kind == "char":
        data = alice
        config = tiny_config(quant="ternary", stochastic=True, epochs=2, max_batches=5)
    else:
        data = word_task()
        config = tiny_config(task="ptb_word", emb=8, hidden=16, seq_len=10, batch=8, dropout=0.3,
                             quant="binary", stochastic=True, epochs=2, max_batches=7,
                             optimizer="sgd", lr=1.0, clip_norm=0.25)
    run_to_end(config, tmp_path / "whole", data)
    with pytest.raises(KeyboardInterrupt):
        run_to_end(config, tmp_path / "parts", data, interrupt_at=config.max_batches + 3)  # mid epoch 2
    ckpt = load_checkpoint(tmp_path / "parts" / "checkpoint.npz")
    assert (ckpt.meta["epoch"], ckpt.meta["batch_index"]) == (1, 3)
    resumed = train.Run(None, tmp_path / "parts", data=data, resume=True, log=lambda line: None)
    resumed.run()
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.npz")
    b = load_checkpoint(tmp_path / "parts" / "checkpoint.npz")
    assert a.params.keys() == b.params.keys()
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name], err_msg=name)
    for name in a.stats:
        np.testing.assert_array_equal(a.stats[name], b.stats[name], err_msg=name)
    events = [json.loads(line)["event"] for line in (tmp_path / "parts" / "metrics.jsonl").read_text().splitlines()]
    assert "interrupted" in events and events[-1] == "test"


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(alice, tmp_path):
    config = tiny_config(epochs=3, max_batches=4)

    def poison(run, loss):
        if run.epoch == 1 and run.batch_index == 2:
            run.params["out.W"][0, 0] = np.nan

    run = train.Run(config, tmp_path, data=alice, log=lambda line: None)
    with pytest.raises(train.NonFiniteLoss, match="last good checkpoint"):
        run.run(progress=poison)
    ckpt = load_checkpoint(tmp_path / "checkpoint.npz")
    assert ckpt.meta["epoch"] == 1 and ckpt.meta["batch_index"] == 0
    assert all(np.all(np.isfinite(v)) for v in ckpt.params.values())


def test_damaged_checkpoints_give_clear_errors(alice, tmp_path):
    train.Run(tiny_config(epochs=1, max_batches=2), tmp_path, data=alice, log=lambda line: None).run()
    path = tmp_path / "checkpoint.npz"
    good = path.read_bytes()
    for damaged in (good[: len(good) // 2], b"not a checkpoint at all", b""):
        bad = tmp_path / "bad.npz"
        bad.write_bytes(damaged)
        with pytest.raises(UserError, match="not a readable rbtw checkpoint"):
            load_checkpoint(bad)
    with pytest.raises(UserError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.npz")


def test_resume_rejects_a_checkpoint_for_another_vocabulary(alice, tmp_path):
    train.Run(tiny_config(epochs=1, max_batches=2), tmp_path, data=alice, log=lambda line: None).run()
    other = TaskData("char", alice.train, alice.valid, alice.test, vocab=list(reversed(alice.vocab)))
    with pytest.raises(UserError, match="vocabulary"):
        train.Run(None, tmp_path, data=other, resume=True)


def test_metrics_log_and_evaluation_conventions(alice, tmp_path):
    config = tiny_config(quant="binary", stochastic=True, epochs=2, max_batches=3, log_every=2)
    run = train.Run(config, tmp_path, data=alice, log=lambda line: None)
    run.run()
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events if e["event"] != "train"] == ["epoch", "epoch", "test"]
    assert all("valid_bpc" in e for e in events if e["event"] == "epoch")
    assert json.loads((tmp_path / "config.json").read_text())["quant"] == "binary"
    pop = evaluate(run.params, run.stats, run.spec, alice, "valid", config)
    again = evaluate(run.params, run.stats, run.spec, alice, "valid", config)
    assert pop == again  # deterministic weights + population statistics: reproducible
    official = evaluate(run.params, run.stats, run.spec, alice, "valid", config, weights="sampled",
                              batch_stats=True)
    assert official["bpc"] != pop["bpc"] and math.isfinite(official["bpc"])


# ---------------------------------------------------------------------------------------------
# best.npz: the validation-selected model


BEST_RUN = dict(task="default", hidden=12, seq_len=20, batch=8, epochs=3, max_batches=4, eval_max_batches=2,
                log_every=100, lr=0.3)       # a rate high enough that validation may get worse after epoch 1


def _epoch_events(run_dir):
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [e for e in events if e["event"] == "epoch"]


def test_best_npz_holds_the_epoch_end_of_the_lowest_validation_loss(tmp_path):
    # a high rate makes validation worse after an early epoch; which rate does depends on the
    # machine's floating point (BLAS, vector width), so a few are tried and one of them must
    for lr in (0.3, 0.6, 0.8, 1.0):
        config = TrainConfig(**dict(BEST_RUN, lr=lr))
        run_dir = tmp_path / f"lr{lr}"
        train.Run(config, run_dir, log=lambda line: None).run()
        epochs = _epoch_events(run_dir)
        losses = [e["valid_loss"] for e in epochs]
        k = int(np.argmin(losses))
        if k < len(losses) - 1:
            break                                           # this run got worse after its best
    else:
        pytest.fail("no rate made validation worse after an earlier epoch")
    best, last = load_checkpoint(run_dir / "best.npz"), load_checkpoint(run_dir / "checkpoint.npz")
    assert best.meta["step"] == epochs[k]["step"] < last.meta["step"]
    assert best.meta["best"] == losses[k] == last.meta["best"]
    # it is that model: its validation loss is the one logged at that epoch's end
    from rbtw.models import ModelSpec
    again = evaluate(best.params, best.stats, ModelSpec.from_dict(best.meta["spec"]),
                     train.load_task_data(config), "valid", config)
    assert again["loss"] == losses[k]


def test_a_fresh_run_forgets_an_earlier_runs_best_and_study_files(tmp_path):
    config = TrainConfig(**BEST_RUN)
    train.Run(config, tmp_path, log=lambda line: None).run()
    for name in ("schedule-end.npz", "conventions.json"):
        (tmp_path / name).write_bytes(b"left by an earlier run")
    train.Run(TrainConfig(**dict(BEST_RUN, epochs=1, lr=0.01)), tmp_path, log=lambda line: None).run()
    assert not (tmp_path / "schedule-end.npz").exists() and not (tmp_path / "conventions.json").exists()
    best = load_checkpoint(tmp_path / "best.npz").meta
    assert (best["step"], best["config"]["lr"]) == (4, 0.01)            # the new run's own
