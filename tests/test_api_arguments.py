"""Every argument of the Python API has a domain: anything a caller can fix is one line of
rbtw.UserError, never another exception, and ``rbtw sample`` agrees with ``Model.sample``."""

import math
import numbers
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rbtw
from rbtw.cli import main
from rbtw.errors import UserError

TINY = dict(task="default", hidden=8, seq_len=10, batch=4, epochs=1, max_batches=2, eval_max_batches=1,
            log_every=1000)
CARELESS = [None, True, False, -1, 0, 1, 2.5, math.nan, math.inf, -math.inf, 2 ** 70, "x", "1", b"ab", [1, 2],
            np.int64(3), np.float32(0.5), object()]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("args") / "run"
    return rbtw.load(rbtw.fit(quant="ternary", out=out, log=lambda line: None, **TINY).checkpoint)


def fine_or_user_error(call):
    """True when ``call()`` returns, False when it raises a one-line UserError (anything else fails)."""
    try:
        call()
    except UserError as e:
        assert str(e) and "\n" not in str(e), str(e)
        return False
    return True


def _whole(v, lo):
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)) and v >= lo


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(length=st.sampled_from(CARELESS + [5]), temperature=st.sampled_from(CARELESS + [0.7]),
       seed=st.sampled_from(CARELESS + [7]), prime=st.sampled_from([None, "Alice", "", b"Al", 3, "☃"]))
def test_sample_arguments_have_domains(model, length, temperature, seed, prime):
    ok = fine_or_user_error(lambda: model.sample(prime, length=length, temperature=temperature, seed=seed))
    valid = (_whole(length, 0) and length < 2 ** 31 and _whole(seed, 0) and seed < 2 ** 63
             and isinstance(temperature, numbers.Real) and not isinstance(temperature, (bool, np.bool_))
             and math.isfinite(temperature) and temperature >= 0
             and (prime is None or (isinstance(prime, str) and "☃" not in prime)))
    assert ok == valid


@pytest.mark.parametrize("temperature", ["nan", "inf", "-1"])
def test_cli_sample_refuses_what_the_api_refuses(model, temperature):
    result = CliRunner().invoke(main, ["sample", str(model.path), "--temperature", temperature])
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, \
        result.stderr


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.sampled_from([None, "Alice was", b"Alice was", [1.5, 2.5], [1, 2, 3], np.array([1, 2]), [True, False],
                             [[1, 2], [3, 4]], ["a", "b"], 3, [1], [-1, 2], [0, 10 ** 6], object()]),
       split=st.sampled_from(["test", "valid", "train", None, 1]),
       max_batches=st.sampled_from([None, 1, 0, -1, 1.5, True, "2"]))
def test_evaluate_arguments_have_domains(model, data, split, max_batches):
    ok = fine_or_user_error(lambda: model.evaluate(data, split=split, max_batches=max_batches))
    ids_ok = (data is None or isinstance(data, str) or (isinstance(data, (list, np.ndarray))
              and np.asarray(data).dtype.kind in "iu" and np.asarray(data).size >= 2
              and np.asarray(data).min() >= 0 and np.asarray(data).max() < len(model.vocab)))
    assert ok == (ids_ok and split in ("test", "valid") and (max_batches is None or _whole(max_batches, 0)))


def test_opening_errors_are_user_errors(model, tmp_path):
    for path in (None, 123, "", b"x.npz", tmp_path):
        with pytest.raises(UserError):
            rbtw.load(path)
    for kwargs in (dict(weights=3), dict(stats="median"), dict(engine="gpu"), dict(engine=["dense"]),
                   dict(weights="sampled")):                                   # not a stochastic model
        with pytest.raises(UserError):
            rbtw.load(model.path, **kwargs)
    with pytest.raises(UserError, match="is a directory"):
        model.export(tmp_path)
    with pytest.raises(UserError, match="bn_steps"):
        model.export(tmp_path / "m.rbtw", bn_steps=0)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="is a file"):
        rbtw.fit(out=blocker, **TINY)
    with pytest.raises(UserError, match="Not a directory"):
        rbtw.fit(out=blocker / "run", **TINY)
    for kwargs in (dict(log=3), dict(progress="bar"), dict(data_dir=5)):
        with pytest.raises(UserError, match=next(iter(kwargs))):
            rbtw.fit(out=tmp_path / "run", **TINY, **kwargs)
        assert not (tmp_path / "run").exists()
    with pytest.raises(UserError, match="progress"):
        model.evaluate("Alice was", progress=1)
    assert blocker.read_text() == "x"


def test_cli_eval_text_on_a_ptb_char_model_says_spaces_are_underscores(tmp_path):
    from rbtw import train as train_module
    from rbtw.config import TrainConfig
    from rbtw.tasks import TaskData
    vocab = sorted(set("the_cat_sat_on_a_mat\n"))
    text = ("the_cat_sat_on_a_mat\n" * 200)
    ids = np.array([vocab.index(c) for c in text], dtype=np.int32)
    data = TaskData("char", ids[:3000], ids[3000:3600], ids[3600:], vocab=vocab)
    config = TrainConfig(task="ptb_char", hidden=8, seq_len=10, batch=4, epochs=1, max_batches=1,
                         eval_max_batches=1, log_every=1000)
    train_module.Run(config, tmp_path / "run", data=data, log=lambda line: None).run()
    spaced = tmp_path / "spaced.txt"
    spaced.write_text("the cat sat on a mat\n" * 5)
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "run" / "checkpoint.npz"), "--text", str(spaced)])
    assert result.exit_code == 2 and "writes spaces as '_'" in result.stderr and result.stderr.count("\n") == 1
    assert Path(spaced).read_text().startswith("the cat")
