"""An export whose manifest is intact but wrong, as a property.

An export's checksums prove that its bytes are those its writer wrote, not that the writer was
right: a manifest from another tool, an older rbtw that did not bump the format version, or a
hand edit re-sealed with fresh checksums reaches the reader intact.  Any value anywhere in the
manifest of a real export (its model, matrices, array layout, vocabulary, configuration), any
new key, or any key dropped, re-sealed: reading it either stops with one line (UserError) or
gives an Export that ``rbtw info`` describes, that the packed engine runs and whose
configuration loads -- never another exception, never a kernel reading past an array.

Derandomised: the same examples on every run.
"""

import copy
import hashlib
import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rbtw import export_format, infer
from rbtw.config import TrainConfig
from rbtw.errors import UserError
from rbtw.checkpoint import load_checkpoint
from rbtw.export import export_checkpoint
from rbtw.summary import describe_export
from rbtw.tasks import load_task_data
from rbtw.train import Run

SCALARS = (st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.sampled_from([10 ** 400, -10 ** 400])
           | st.floats() | st.text(max_size=6)
           | st.sampled_from([0, 1, 2, 3, 4, 8, 16, 24, 64, 96, "lstm", "gru", "binary", "ternary", "dense",
                              "none", "char", "word", "<f4", "<u8", "|O"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
CASES = {"ternary lstm": dict(quant="ternary", stochastic=True),
         "binary gru, no BN": dict(quant="binary", cell="gru", bn=False),
         "full precision": dict(quant="none")}


def paths(d, here=()):
    yield here
    items = d.items() if isinstance(d, dict) else enumerate(d) if isinstance(d, list) else ()
    for key, value in items:
        yield from paths(value, here + (key,))


def sealed(manifest, data):
    """An export file's bytes: ``manifest`` (with its array layout) over the data section."""
    text = json.dumps(manifest).encode("utf-8")
    head = struct.pack("<8sI32s", export_format.MAGIC, len(text), hashlib.sha256(text).digest()) + text
    head += b"\0" * (export_format._padded(len(head)) - len(head))
    return head + data


def split(blob):
    """(manifest with its array layout, data section) of an export file's bytes."""
    (length,) = struct.unpack_from("<I", blob, 8)
    start = export_format._padded(44 + length)
    return json.loads(blob[44:44 + length]), blob[start:]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    data = load_task_data(TrainConfig(task="default"))
    out = {}
    for name, kw in CASES.items():
        tmp = tmp_path_factory.mktemp("m")
        config = TrainConfig(task="default", hidden=8, seq_len=12, batch=4, epochs=1, max_batches=2,
                             eval_max_batches=1, log_every=1000, **kw)
        Run(config, tmp, data=data, log=lambda line: None).run()
        export_format.write_export(tmp / "m.rbtw", export_checkpoint(load_checkpoint(tmp / "checkpoint.npz"), bn_steps=2))
        out[name] = split((tmp / "m.rbtw").read_bytes())
    return out


def use(path):
    """What the commands do with an export: read it, describe it, load its configuration and
    run the packed engine over a few symbols."""
    ex = export_format.read_export(path)
    assert describe_export(ex, path.stat().st_size)
    TrainConfig.from_dict(ex.manifest["config"])
    engine = infer.PackedEngine(ex)
    ids = (np.arange(12) % ex.spec["n_in"]).reshape(6, 2)        # (T, B)
    engine.forward(ids)
    engine.forward(ids[:, :1], t0=ex.spec["t_max"] - 2)           # one row, past the last table row


def one_line_or_works(path):
    try:
        use(path)
    except UserError as e:
        text = str(e)
        assert text and "\n" not in text, repr(text)


def test_the_real_exports_are_consistent(exports, tmp_path):
    for name, (manifest, data) in exports.items():
        (tmp_path / "m.rbtw").write_bytes(sealed(manifest, data))
        use(tmp_path / "m.rbtw")


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_value_anywhere_in_a_manifest_is_refused_in_one_line_or_works(exports, tmp_path, data):
    name = data.draw(st.sampled_from(sorted(exports)))
    manifest, blob = exports[name]
    m = copy.deepcopy(manifest)
    where = data.draw(st.sampled_from([p for p in paths(m) if p and p[0] not in ("format", "version")]))
    parent = m
    for key in where[:-1]:
        parent = parent[key]
    action = data.draw(st.sampled_from(["replace", "drop", "add"]))
    if action == "drop" and isinstance(parent, dict):
        del parent[where[-1]]
    elif action == "add" and isinstance(parent, dict):
        parent[data.draw(st.text(max_size=6))] = data.draw(VALUES)
    else:
        parent[where[-1]] = data.draw(VALUES)
    (tmp_path / "m.rbtw").write_bytes(sealed(m, blob))
    one_line_or_works(tmp_path / "m.rbtw")


@pytest.mark.parametrize("change, message", [
    (lambda m: m["model"].update(hidden=m["model"]["hidden"] * 2), "matrix 'rnn0.W_x'"),
    (lambda m: m.update(bn_steps=None), "array 'rnn0.scale_h'"),     # one row per step: t_max rows, not K + 1
    (lambda m: m["model"].update(layers=2), "matrices"),
    (lambda m: m["matrices"]["rnn0.W_x"].update(cols=5), "matrix 'rnn0.W_x'"),
    (lambda m: m["arrays"]["out.b"].update(nbytes=4), "cannot hold"),
    (lambda m: m["arrays"]["out.b"].update(offset=10 ** 9), "outside the data section"),
    (lambda m: m.update(bn_steps=0), "bn_steps"),
    (lambda m: m["arrays"]["out.b"].update(dtype="|O"), "dtype"),
])
def test_named_inconsistencies_are_named(exports, tmp_path, change, message):
    manifest, blob = exports["ternary lstm"]
    m = copy.deepcopy(manifest)
    change(m)
    (tmp_path / "m.rbtw").write_bytes(sealed(m, blob))
    with pytest.raises(UserError, match=message):
        export_format.read_export(tmp_path / "m.rbtw")
