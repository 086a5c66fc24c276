"""The sweep file under careless input, as a property.

Every committed study file is a valid sweep; change any value in it to any TOML/JSON value,
add any key anywhere, cut the file or the stored sweep.json of a sweep directory at any byte:
reading it either gives a Sweep or stops with one line (a UserError), never another exception.
Parsing lists every run and validates its configuration, so these examples reach every field's
domain check without training anything.
"""

import copy
import json
import math
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rbtw.errors import UserError
from rbtw.sweep.spec import Sweep, load_sweep, parse_spec

ROOT = Path(__file__).resolve().parents[1]
STUDIES = sorted((ROOT / "bench" / "studies").glob("*.toml"))
BASES = {p.name: tomllib.loads(p.read_text()) for p in STUDIES}

# what a TOML or JSON file can hold (JSON's numbers are wider: huge integers, and Python's
# json reads NaN and Infinity)
SCALARS = (st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats()
           | st.text(max_size=8) | st.sampled_from(["ternary", "binary", "none", "cosine", "fp", "0.5"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


def paths(d, here=()):
    """Every place in a nested dict/list: the key paths to it."""
    yield here
    items = d.items() if isinstance(d, dict) else enumerate(d) if isinstance(d, list) else ()
    for key, value in items:
        yield from paths(value, here + (key,))


PLACES = [(name, place) for name, d in BASES.items() for place in paths(d)]


def refused_in_one_line(call):
    try:
        return call()
    except UserError as e:
        text = str(e)
        assert text and "\n" not in text and "\r" not in text, repr(text)
        return None


def test_every_committed_study_file_is_a_valid_sweep():
    assert STUDIES
    for path in STUDIES:
        assert isinstance(load_sweep(path), Sweep), path


@settings(max_examples=400, deadline=None)
@given(place=st.sampled_from(PLACES), value=VALUES, new_key=st.none() | st.text(max_size=8))
def test_any_value_anywhere_in_a_sweep_file_is_a_sweep_or_one_line(place, value, new_key):
    name, where = place
    d = copy.deepcopy(BASES[name])
    if new_key is not None:             # a new key beside the place (where the place is a table)
        target = d
        for key in where:
            target = target[key]
        if not isinstance(target, dict):
            return
        target[new_key] = value
    elif not where:
        d = value
    else:
        target = d
        for key in where[:-1]:
            target = target[key]
        target[where[-1]] = value
    refused_in_one_line(lambda: parse_spec(d, name))


@settings(max_examples=150, deadline=None)
@given(study=st.sampled_from(STUDIES), cut=st.integers(0, 10 ** 6), junk=st.binary(max_size=6))
def test_a_cut_or_damaged_sweep_file_is_a_sweep_or_one_line(tmp_path_factory, study, cut, junk):
    whole = study.read_bytes()
    path = tmp_path_factory.mktemp("spec") / study.name
    path.write_bytes(whole[:cut % (len(whole) + 1)] + junk)
    refused_in_one_line(lambda: load_sweep(path))


@settings(max_examples=150, deadline=None)
@given(study=st.sampled_from(STUDIES), cut=st.integers(0, 10 ** 6), junk=st.binary(max_size=6),
       other=VALUES, whole_value=st.booleans())
def test_a_damaged_stored_sweep_json_is_a_sweep_or_one_line(tmp_path_factory, study, cut, junk, other,
                                                            whole_value):
    # a sweep directory remembers its sweep in sweep.json; `rbtw sweep DIR --summary` and a
    # rerun read it back, so a damaged copy must stop them in one line too
    out = tmp_path_factory.mktemp("out")
    if whole_value:
        text = json.dumps(other).encode()             # valid JSON, but any value at all
    else:
        stored = json.dumps(load_sweep(study).to_dict(), indent=2).encode()
        text = stored[:cut % (len(stored) + 1)] + junk
    (out / "sweep.json").write_bytes(text)
    refused_in_one_line(lambda: load_sweep(out))


@pytest.mark.parametrize("min_gain", [-0.001, math.nan, math.inf, -math.inf])
def test_until_takes_only_a_finite_non_negative_gain(min_gain):
    d = copy.deepcopy(BASES[STUDIES[0].name])
    d["until"]["min_gain"] = min_gain
    with pytest.raises(UserError, match="min_gain must be a finite number ≥ 0"):
        parse_spec(d)
