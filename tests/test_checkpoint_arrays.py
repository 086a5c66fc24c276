"""A checkpoint whose arrays are intact but do not fit its model.

The archive's checksums prove a checkpoint unchanged since it was written (test_damaged_files),
not that its writer was right: another program, an older rbtw or a hand edit can save arrays of
the wrong name, shape or type with every CRC in order.  The class of bad input here is any
array of any section (parameters, population statistics, optimiser state, the word LM's
carried state) changed in shape or type, removed, or joined by one of a new name.  Resuming,
opening the model (read_checkpoint: what eval, sample, export, calibrate and the API use) and
building its export must each give a one-line UserError or work: never a traceback, and never a
crash of the process (a population statistic one row short once made the jitted layers write
out of bounds: "munmap_chunk(): invalid pointer").
"""

import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rbtw import train
from rbtw.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from rbtw.config import TrainConfig
from rbtw.errors import UserError
from rbtw.export import build_export
from rbtw.tasks import TaskData

SECTIONS = ("params", "stats", "optimizer", "extra")
CHANGES = {
    "one row short": lambda a: a[:-1] if a.ndim else a.reshape(1),
    "a scalar": lambda a: np.array(3.0, a.dtype),
    "flattened into a row": lambda a: a.reshape(1, -1),
    "int8": lambda a: a.astype(np.int8),
    "float16": lambda a: a.astype(np.float16),
    "float64": lambda a: a.astype(np.float64),
    "complex64": lambda a: a.astype(np.complex64),
}


def word_task():
    rng = np.random.default_rng(5)
    vocab = [f"w{k}" for k in range(30)]
    stream = rng.integers(0, 30, size=4000).astype(np.int32)
    return TaskData("word", stream[:3000], stream[3000:3500], stream[3500:], vocab=vocab)


@pytest.fixture(scope="module")
def word_run(tmp_path_factory):
    """A ternary BN-LSTM word LM stopped mid-epoch, so its checkpoint carries a state."""
    out = tmp_path_factory.mktemp("word") / "run"
    config = TrainConfig(task="ptb_word", emb=8, hidden=16, seq_len=10, batch=8, quant="ternary", stochastic=True,
                         epochs=2, max_batches=7, lr=1e-2, log_every=1000)

    def stop_mid_epoch(run, loss):
        if run.step == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.Run(config, out, data=word_task(), log=lambda line: None).run(progress=stop_mid_epoch)
    ckpt = load_checkpoint(out / "checkpoint.npz")
    assert ckpt.extra and ckpt.stats and len(ckpt.optimizer) > 1
    return out


def resaved(word_run, tmp_path, change):
    """A copy of the run whose checkpoint's sections went through ``change(parts)``."""
    ckpt = load_checkpoint(word_run / "checkpoint.npz")
    parts = {s: dict(getattr(ckpt, s)) for s in SECTIONS}
    change(parts)
    run = tmp_path / "run"
    shutil.copytree(word_run, run)
    meta = {k: v for k, v in ckpt.meta.items() if k not in ("format", "version")}
    save_checkpoint(run / "checkpoint.npz", meta, *(parts[s] for s in SECTIONS))
    return run


def readers(run):
    def resume():
        train.Run(None, run, data=word_task(), resume=True, log=lambda line: None).run()

    def export():
        ckpt, _ = read_checkpoint(run / "checkpoint.npz")
        build_export(ckpt.meta, ckpt.params, ckpt.stats)

    return {"resume": resume, "export": export}


def one_line_or_works(run):
    """{reader: "ok" | "refused"}; anything but a one-line UserError fails the test."""
    out = {}
    for name, read in readers(run).items():
        try:
            read()
            out[name] = "ok"
        except UserError as e:
            assert len(str(e).splitlines()) == 1, (name, str(e))
            out[name] = "refused"
    return out


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_array_changed_removed_or_added_is_one_line_or_works(tmp_path_factory, word_run, data):
    ckpt = load_checkpoint(word_run / "checkpoint.npz")
    section = data.draw(st.sampled_from(SECTIONS))
    name = data.draw(st.sampled_from(sorted(getattr(ckpt, section))))
    how = data.draw(st.sampled_from([*CHANGES, "removed", "added"]))

    def change(parts):
        if how == "removed":
            del parts[section][name]
        elif how == "added":
            parts[section][name + "x"] = parts[section][name]
        else:
            parts[section][name] = CHANGES[how](np.asarray(parts[section][name]))

    one_line_or_works(resaved(word_run, tmp_path_factory.mktemp("arrays"), change))


@pytest.mark.parametrize("section, name, how, message", [
    ("stats", "rnn0.mean_a", "one row short", "population statistic rnn0.mean_a has shape"),  # was: a crash
    ("stats", "rnn0.var_b", "float16", "unlike the parameters"),                   # was: NotImplementedError
    ("params", "rnn0.W_h", "complex64", "float32 or float64"),                     # was: a Numba TypingError
    ("optimizer", "m/rnn0.W_x", "one row short", "optimiser state"),               # was: a broadcasting error
    ("extra", "carry/0/1", "flattened into a row", "carried state"),
])
def test_named_misfits_are_refused_by_every_reader(tmp_path, word_run, section, name, how, message):
    def change(parts):
        parts[section][name] = CHANGES[how](np.asarray(parts[section][name]))

    run = resaved(word_run, tmp_path, change)
    for reader, read in readers(run).items():
        if section in ("optimizer", "extra") and reader == "export":
            read()      # an export needs neither: it is built from the parameters and statistics
            continue
        with pytest.raises(UserError, match=message):
            read()


def test_an_unknown_carried_entry_is_refused_on_resume(tmp_path, word_run):
    run = resaved(word_run, tmp_path, lambda parts: parts["extra"].update({"carry/x": np.zeros(3, np.float32)}))
    with pytest.raises(UserError, match="carried state does not fit"):
        readers(run)["resume"]()


def test_the_unchanged_checkpoint_resumes_and_exports(tmp_path, word_run):
    run = resaved(word_run, tmp_path, lambda parts: None)
    assert one_line_or_works(run) == {"resume": "ok", "export": "ok"}
