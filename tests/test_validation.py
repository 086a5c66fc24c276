"""One validation for every surface, as a property.

Hypothesis draws a task and a few TrainConfig fields with values a careless user might give:
wrong types (a bool or a string where a number goes, 32.7 for a whole number), numbers outside
their domain (0, -1, NaN, inf, 2**70), unknown choices, and valid values that do not apply to
the task, cell, quantization or optimiser (dropout on a char model, step_clip on full
precision, lr_end with SGD).  Each surface must refuse exactly when the others do, always with
one line of ``UserError`` (the CLI: exit 2 and one ``error:`` line), never another exception:

    laid over a preset:   rbtw train TASK --show-config ...   rbtw.fit(preset="quick", ...)
                          make_config(preset="quick", ...)    build_config(TASK, "quick", fields)
                          check_fields(fields, base=<the preset's config>)
    laid over defaults:   TrainConfig(task=TASK, ...).validate()   rbtw.fit(task=TASK, ...)
                          make_config(task=TASK, ...)             check_fields(fields, base={"task": TASK})

(The two groups start from different settings — the presets supply what a task needs, e.g.
the word LM's embedding — so each is compared within itself.)  ``rbtw.fit`` is stopped before
training: the trainer is replaced by one that raises at once, so accepted means "would train".
"""

import math
import numbers
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import rbtw
from rbtw import api, calibrate, export
from rbtw.cli import main
from rbtw.config import TrainConfig, build_config, check_fields, option_name
from rbtw.errors import UserError, finite_number, is_bool, whole_number

ALICE = Path(__file__).resolve().parents[1] / "data" / "carroll-alice.txt"
TASKS = ["default", "ptb_char", "mnist", "ptb_word", "text"]

WRONG = [True, "big", None, [1], 32.7, math.nan, math.inf, -math.inf, 2 ** 70, -1, 0]
INT = [1, 2, 8, 100, 0, -1, 2 ** 31, 2 ** 70, 32.0, 32.7, True, "8", None]
FLOAT = [0.0, 0.1, 0.5, 0.99, 1, 2.0, 20, -0.1, 1.5, math.nan, math.inf, "0.1", False, None]
VALUES = {
    "cell": ["lstm", "gru", "rnn", 1],
    "quant": ["none", "fp", "binary", "ternary", "quaternary", None],
    "optimizer": ["adam", "sgd", "rmsprop"],
    "lr_warmdown": ["none", "cosine", "linear", "exp"],
    "eval_weights": ["deterministic", "sampled", "expected", "random"],
    "eval_stats": ["population", "batch", "none"],
    "dtype": ["float32", "float64", "float16"],
    "stochastic": [True, False, 1, "yes", None],
    "bn": [True, False, 0, None],
    "step_clip": [True, False, None, "no"],
    **{name: INT for name in ("hidden", "layers", "emb", "seq_len", "batch", "pixels_per_step", "epochs",
                              "adam_reset", "lr_warmdown_epochs", "max_batches", "checkpoint_every",
                              "eval_batch", "eval_max_batches", "seed", "log_every")},
    "pixels_per_step": [1, 4, 7, 8, 49, 784, 5, 1000, 0, 2.0],
    **{name: FLOAT for name in ("dropout", "h0_noise", "lr", "lr_end", "clip_norm", "plateau_factor",
                                "lr_warmdown_frac", "lr_warmdown_to")},
}
BOOL_FLAGS = {"stochastic": ("--stochastic", "--deterministic"), "bn": ("--bn", "--no-bn"),
              "step_clip": ("--step-clip", "--no-step-clip")}
OFF_THE_COMMAND_LINE = {"plateau_factor", "log_every"}


def fields_strategy():
    names = st.sampled_from(sorted(VALUES))
    return st.dictionaries(names, st.just(None), max_size=4).flatmap(
        lambda d: st.fixed_dictionaries({k: st.sampled_from(VALUES[k] + WRONG[:3]) for k in d}))


INT_OR_FLOAT = [k for k, v in VALUES.items() if v in (INT, FLOAT)] + ["pixels_per_step"]


def _number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def cli_words(fields):
    """The command-line words for ``fields``, or None when the CLI cannot say them (a field
    without an option, None, a non-bool for a flag, a list)."""
    words = []
    for name, value in fields.items():
        if name in OFF_THE_COMMAND_LINE or value is None or isinstance(value, list):
            return None
        if isinstance(value, str) and _number(value) and name not in VALUES.keys() - set(INT_OR_FLOAT):
            return None                 # "8" is a number once typed: the CLI cannot say "a string"
        if name in BOOL_FLAGS:
            if not isinstance(value, bool):
                return None
            words.append(BOOL_FLAGS[name][0 if value else 1])
        else:
            words += [option_name(name), str(value)]
    return words


def text_fields(task, tmp):
    return {"text_file": str(tmp / "text.txt")} if task == "text" else {}


@contextmanager
def no_training():
    class Stop(Exception):
        pass

    def refuse_to_train(*args, **kwargs):
        raise Stop

    with mock.patch("rbtw.train.Run", refuse_to_train):
        yield Stop


def verdict(call):
    """None when ``call()`` accepts, else the UserError's message (one line)."""
    try:
        call()
    except UserError as e:
        message = str(e)
        assert message and "\n" not in message, message
        return message
    return None


def fit_verdict(tmp, **kwargs):
    with no_training() as Stop:
        try:
            rbtw.fit(out=tmp / "run", log=lambda line: None, **kwargs)
        except Stop:
            return None
        except UserError as e:
            assert "\n" not in str(e)
            return str(e)
    raise AssertionError("fit trained")


def cli_verdict(task, words, tmp):
    extra = ["--file", str(tmp / "text.txt")] if task == "text" else []
    result = CliRunner().invoke(main, ["train", task, "--show-config", *extra, *words])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{words}: {type(result.exception).__name__}: {result.exception}")
    if result.exit_code == 0:
        return None
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("validation")
    (tmp / "text.txt").write_text(ALICE.read_text(encoding="utf-8")[:20000], encoding="utf-8")
    return tmp


@settings(max_examples=250, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(task=st.sampled_from(TASKS), fields=fields_strategy())
def test_every_surface_gives_the_same_verdict(tmp, task, fields):
    extra = text_fields(task, tmp)
    preset_base = verdict(lambda: build_config(task, "quick", extra))
    assert preset_base is None, preset_base
    over_preset = {
        "build_config": verdict(lambda: build_config(task, "quick", extra, fields)),
        "make_config": verdict(lambda: api.make_config(None, "quick", task=task, **extra, **fields)),
        "check_fields": verdict(lambda: check_fields(fields, base=build_config(task, "quick", extra))),
        "fit": fit_verdict(tmp, preset="quick", task=task, **extra, **fields),
    }
    words = cli_words(fields)
    if words is not None:
        over_preset["cli"] = cli_verdict(task, words, tmp)
    over_defaults = {
        "TrainConfig": verdict(lambda: TrainConfig(task=task, **extra, **fields).validate()),
        "make_config": verdict(lambda: api.make_config(task=task, **extra, **fields)),
        "check_fields": verdict(lambda: check_fields(fields, base=dict(task=task, **extra))),
        "fit": fit_verdict(tmp, task=task, **extra, **fields),
    }
    for group in (over_preset, over_defaults):
        refused = {name for name, v in group.items() if v is not None}
        assert refused in (set(), set(group)), (task, fields, group)
        event(f"{'refused' if refused else 'accepted'}{' (CLI too)' if 'cli' in group else ''}")
        for message in group.values():        # a refusal names the field at fault
            assert message is None or any(name in message or name.replace("_", "-") in message
                                          for name in TrainConfig.field_names()), message


@pytest.mark.parametrize("call, fragment", [
    (lambda: TrainConfig(bogus=1), "bogus"),
    (lambda: TrainConfig("default"), "by name"),
    (lambda: rbtw.fit(TrainConfig(hidden=True), out="x"), "hidden"),
    (lambda: api.make_config(TrainConfig(), hidden=True), "hidden"),
    (lambda: api.make_config(hidden=32.7), "hidden"),
    (lambda: api.make_config(hidden="big"), "hidden"),
    (lambda: api.make_config(dropout=0.5), "dropout"),
    (lambda: api.make_config(emb=16), "emb"),
    (lambda: api.make_config(pixels_per_step=4), "pixels_per_step"),
    (lambda: api.make_config(step_clip=True), "step_clip"),
    (lambda: api.make_config(stochastic=True), "stochastic"),
    (lambda: api.make_config(optimizer="sgd", lr_end=0.001), "lr_end"),
    (lambda: api.make_config(eval_weights="sampled"), "eval_weights"),
    (lambda: api.make_config(quant="binary", eval_weights="sampled"), "eval_weights"),  # deterministic training
    (lambda: api.make_config(lr=math.nan), "lr"),
    (lambda: api.make_config(lr=10 ** 400), "lr"),                # too large for a float
    (lambda: api.make_config(task="text", text_split=[10 ** 400, 1, 1]), "text_split"),
    (lambda: api.make_config(seed=-1), "seed"),
    (lambda: api.make_config(task=["x"], preset="quick"), "task"),
    (lambda: check_fields({"hidden": 0}), "hidden"),
    (lambda: check_fields({3: 1}), "3"),
])
def test_the_reported_examples_are_one_line_user_errors(call, fragment):
    with pytest.raises(UserError, match=fragment) as e:
        call()
    assert "\n" not in str(e.value)


def test_values_are_canonical_after_checking():
    config = TrainConfig(quant="fp", max_batches=0, hidden=np.int64(32), lr=1, text_split=None)
    assert (config.quant, config.max_batches, config.hidden, config.lr) == ("none", None, 32, 1.0)
    assert type(config.hidden) is int and type(config.lr) is float        # JSON-ready
    assert check_fields({"quant": "fp", "adam_reset": 0}) == {"quant": "none", "adam_reset": None}


def test_a_presets_setting_that_the_users_choice_makes_inert_falls_back_to_its_default():
    config = build_config("mnist", "quick", optimizer="sgd")       # the preset's lr_end is Adam's
    assert config.optimizer == "sgd" and config.lr_end is None
    with pytest.raises(UserError, match="lr_end"):
        build_config("mnist", "quick", optimizer="sgd", lr_end=1e-3)


@pytest.mark.parametrize("words, fragment", [
    (["--quant", "fp", "--step-clip"], "step_clip=True (--step-clip) does not apply"),
    (["--quant", "fp", "--eval-weights", "sampled"], "eval_weights (--eval-weights)"),
    (["--dropout", "0.3"], "--dropout"),
    (["--lr", "nan"], "lr (--lr) must be a finite number"),
    (["--hidden", "32.7"], "--hidden"),
])
def test_train_refuses_before_touching_the_disk(tmp_path, words, fragment):
    result = CliRunner().invoke(main, ["train", "default", *words, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and fragment in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "run").exists()


def test_show_config_prints_the_preset_with_the_options_given():
    result = CliRunner().invoke(main, ["train", "ptb_char", "--preset", "paper", "--hidden", "256", "--show-config"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("# rbtw train ptb_char: preset paper, with --hidden 256")
    table = dict(line.split(None, 1) for line in lines[1:])
    assert len(table) == len(TrainConfig.field_names())
    assert (table["hidden"], table["epochs"], table["seq_len"]) == ("256", "50", "100")


@pytest.mark.parametrize("words, typed", [
    (["--quant", "binary", "--stochastic", "--no-bn", "--step-clip"],
     "with --quant binary, --stochastic, --no-bn, --step-clip"),
    (["--quant", "ternary", "--deterministic", "--bn", "--no-step-clip", "--hidden", "8"],
     "with --quant ternary, --deterministic, --bn, --no-step-clip, --hidden 8"),
])
def test_show_config_names_boolean_flags_as_typed(words, typed):
    """The header names each option as the user would type it: --stochastic, --no-bn, never
    "--stochastic/--deterministic True"."""
    result = CliRunner().invoke(main, ["train", "default", *words, "--show-config"])
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[0]
    assert header.endswith(typed), header
    assert "True" not in header and "False" not in header and "/--" not in header
    table = dict(line.split(None, 1) for line in result.stdout.splitlines()[1:])
    assert table["bn"] == ("False" if "--no-bn" in words else "True")     # the body: fields and values


def test_show_config_of_a_resumed_run(tmp_path):
    out = tmp_path / "run"
    tiny = ["--hidden", "8", "--epochs", "1", "--max-batches", "1", "--eval-max-batches", "1", "--seq-len", "10",
            "--batch", "4"]
    assert CliRunner().invoke(main, ["train", "default", *tiny, "--out", str(out)]).exit_code == 0
    result = CliRunner().invoke(main, ["train", "default", "--resume", "--out", str(out), "--epochs", "3",
                                       "--show-config"])
    assert result.exit_code == 0, result.output
    table = dict(line.split(None, 1) for line in result.stdout.splitlines()[1:])
    assert (table["epochs"], table["hidden"]) == ("3", "8")
    changed = CliRunner().invoke(main, ["train", "default", "--resume", "--out", str(out), "--hidden", "9",
                                        "--show-config"])
    assert changed.exit_code == 2 and "hidden 9" in changed.stderr


# ---------------------------------------------------------------------------------------------
# a batch the data cannot fill


def test_a_batch_larger_than_the_training_split_is_refused(tmp_path):
    result = CliRunner().invoke(main, ["train", "default", "--batch", "100000000", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "batch (--batch) 100,000,000 is more than the training split" in result.stderr
    assert not (tmp_path / "run" / "checkpoint.npz").exists()
    with pytest.raises(UserError, match="eval_batch"):
        rbtw.fit(task="default", eval_batch=10 ** 8, out=tmp_path / "api", log=lambda line: None)


# ---------------------------------------------------------------------------------------------
# the number checks that options outside TrainConfig share (rbtw.errors)

_numbers_a_user_might_give = st.one_of(
    st.integers(-2 ** 70, 2 ** 70), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
    st.booleans().map(lambda b: np.bool_(b)),
    st.integers(-2 ** 63, 2 ** 63 - 1).map(lambda i: np.int64(i)),
    st.floats(width=32).map(lambda x: np.float32(x)),
    st.sampled_from([10 ** 400, -10 ** 400]), st.text(max_size=3), st.none())


@given(value=_numbers_a_user_might_give, lo=st.integers(-3, 3), hi=st.one_of(st.none(), st.integers(3, 10 ** 6)))
def test_whole_number_accepts_exactly_the_whole_numbers_in_its_domain(value, lo, hi):
    bounds = (lo,) if hi is None else (lo, hi)            # no hi: the int64 range's top
    ok = (not is_bool(value) and isinstance(value, numbers.Integral) and lo <= value
          and value <= (2 ** 63 - 1 if hi is None else hi))
    if ok:
        assert whole_number(value, "n", *bounds) == value and type(whole_number(value, "n", *bounds)) is int
    else:
        with pytest.raises(UserError, match=r"^n must be (a whole number (≥|from) |at most )") as e:
            whole_number(value, "n", *bounds)
        assert "\n" not in str(e.value)


def _fits_a_finite_float(value):
    try:
        return math.isfinite(float(value))
    except OverflowError:                   # an int beyond float's range (10 ** 400)
        return False


@given(value=_numbers_a_user_might_give, lo=st.one_of(st.none(), st.floats(-2, 2)))
def test_finite_number_accepts_exactly_the_finite_reals_in_its_domain(value, lo):
    ok = (not is_bool(value) and isinstance(value, numbers.Real) and _fits_a_finite_float(value)
          and (lo is None or value >= lo))
    if ok:
        got = finite_number(value, "x", lo)
        assert got == float(value) and type(got) is float
    else:
        with pytest.raises(UserError, match=r"^x must be a finite number") as e:
            finite_number(value, "x", lo)
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("call, fragment", [
    (lambda: api.check_sampling(None, 10, True, 0), r"temperature \(--temperature\) must be a finite number ≥ 0"),
    (lambda: api.check_sampling(None, 10, -0.5, 0), r"temperature \(--temperature\) must be a finite number ≥ 0"),
    (lambda: api.check_sampling(None, 10, math.inf, 0), "temperature"),
    (lambda: api.check_sampling(None, 10, 1.0, -1), r"seed \(--seed\) must be a whole number ≥ 0"),
    (lambda: api.check_sampling(None, 2 ** 31, 1.0, 0), r"length \(--length\) must be at most 2,147,483,647"),
    (lambda: export.check_bn_steps(0), r"bn_steps \(--bn-steps\) must be a whole number ≥ 1"),
    (lambda: export.check_bn_steps(np.bool_(True)), "bn_steps"),
    (lambda: calibrate.check_options(thresholds=[np.bool_(True)]), "θ"),
    (lambda: calibrate.check_options(statistics="yes"), "statistics"),
])
def test_options_outside_the_config_use_the_shared_number_checks(call, fragment):
    with pytest.raises(UserError, match=fragment) as e:
        call()
    assert "\n" not in str(e.value)
