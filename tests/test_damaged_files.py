"""Every binary file rbtw reads back, damaged anywhere.

The class of bad input here is "the file on disk is not what was written": a changed byte at any
position (any bits of it), several changed bytes, or a file cut at any length.  For each kind of
file the reader must either return exactly what was written or refuse the file -- one-line
UserError (checkpoints, exports, imported data), DamagedArchive (the archive layer) or "prepare
again" (the corpus cache) -- and never raise anything else or return something different.

Files: the archive of named arrays (rbtw.archive) under checkpoints and the prepared-corpus
cache; checkpoints (rbtw.checkpoint); packed exports (rbtw.export_format); the corpus cache's
two files; a zipped text8 fragment as ``rbtw data import`` reads it.  Each property is run
exhaustively over every position for single-bit changes and every truncation, and by hypothesis
(derandomised) for any mask and several changes at once.
"""

import json
from pathlib import Path
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rbtw.archive import DamagedArchive, read_arrays, write_arrays
from rbtw.checkpoint import load_checkpoint, load_meta, save_checkpoint
from rbtw.data.corpus import DATASETS, Corpus, _load_prepared, _save_prepared, load_corpus
from rbtw.data.fetch import import_path
from rbtw.errors import UserError
from rbtw.export_format import FORMAT, VERSION, Export, _stored_as, expected_arrays, read_export, write_export

DAMAGE = settings(max_examples=150, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])


def changed(blob, changes):
    """``blob`` with each (position, mask) of ``changes`` XOR-ed in; positions wrap."""
    out = bytearray(blob)
    for pos, mask in changes:
        out[pos % len(out)] ^= mask
    return bytes(out)


def really_changed(blob, changes):
    """As changed(), for hypothesis: examples whose changes cancel out are not examples."""
    out = changed(blob, changes)
    assume(out != blob)
    return out


def single_bit_changes(blob):
    """(position, changed blob) for every position: its lowest bit flipped at even positions,
    its highest at odd ones (hypothesis below draws any mask)."""
    for pos in range(len(blob)):
        yield pos, changed(blob, [(pos, 0x01 if pos % 2 == 0 else 0x80)])


def payload_bytes(blob):
    """Positions of the zip members' contents (the .npy bytes under each member's CRC-32):
    a change there must always be refused.  The headers around them also hold fields that no
    reader uses (times, attributes, the local copies of sizes), where a change is harmless."""
    import io
    z = zipfile.ZipFile(io.BytesIO(blob))
    out = set()
    for info in z.infolist():
        start = info.header_offset + 30 + int.from_bytes(blob[info.header_offset + 26:info.header_offset + 28], "little") \
            + int.from_bytes(blob[info.header_offset + 28:info.header_offset + 30], "little")
        out.update(range(start, start + info.compress_size))
    return out


def cuts(blob):
    for n in range(len(blob)):
        yield blob[:n]


changes = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(1, 255)), min_size=1, max_size=3)


def same_arrays(a, b):
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and np.array_equal(a[k], b[k], equal_nan=True)
        for k in a)


def one_line(e):
    text = str(e)
    return text and "\n" not in text


# ---------------------------------------------------------------------------------------------
# the archive layer


ARRAYS = {
    "meta": np.frombuffer(b'{"format": "x", "n": 3}', dtype=np.uint8),
    "param/W": np.arange(6, dtype=np.float32).reshape(2, 3),
    "param/F": np.asfortranarray(np.linspace(-1, 1, 6).reshape(3, 2)),
    "opt/t": np.array(7, dtype=np.int64),
    "empty": np.zeros(0, dtype=np.uint16),
    "mask": np.array([True, False, True]),
}


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    path = tmp_path_factory.mktemp("archive") / "a.npz"
    write_arrays(path, ARRAYS)
    return path.read_bytes()


def read_back(tmp_path, blob, reader, name="x.npz"):
    path = tmp_path / name
    path.write_bytes(blob)
    return reader(path)


def exactly_or_refused(tmp_path, blob, reader, expected, same, refusal):
    """``reader`` on ``blob`` returns ``expected`` (by ``same``) or raises ``refusal``."""
    try:
        got = read_back(tmp_path, blob, reader)
    except refusal as e:
        assert one_line(e), repr(str(e))
        return False
    assert same(got, expected)
    return True


def test_archive_round_trip_keeps_names_dtypes_shapes_and_order(tmp_path):
    write_arrays(tmp_path / "a.npz", ARRAYS)
    got = read_arrays(tmp_path / "a.npz")
    assert same_arrays(got, ARRAYS)
    assert got["param/F"].flags.f_contiguous and got["param/W"].flags.writeable
    assert list(read_arrays(tmp_path / "a.npz", ["opt/t", "meta"])) == ["opt/t", "meta"]


@DAMAGE
@given(arrays=st.dictionaries(
    st.text("abcxyz/._0", min_size=1, max_size=8).filter(lambda s: not s.endswith("/")),
    hnp.arrays(st.sampled_from([np.float32, np.float64, np.int8, np.int32, np.uint16, np.int64, np.bool_]),
               hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)),
    max_size=4))
def test_any_arrays_read_back_as_written(tmp_path, arrays):
    write_arrays(tmp_path / "a.npz", arrays)
    assert same_arrays(read_arrays(tmp_path / "a.npz"), arrays)


def test_every_single_bit_change_and_every_cut_of_an_archive_is_refused_or_harmless(tmp_path, archive):
    payload = payload_bytes(archive)
    assert len(payload) > len(archive) // 3
    for pos, blob in single_bit_changes(archive):
        harmless = exactly_or_refused(tmp_path, blob, read_arrays, ARRAYS, same_arrays, DamagedArchive)
        assert not (harmless and pos in payload), pos
    for blob in cuts(archive):
        with pytest.raises(DamagedArchive):
            read_back(tmp_path, blob, read_arrays)


@DAMAGE
@given(damage=changes)
def test_any_changed_bytes_of_an_archive_are_refused_or_harmless(tmp_path, archive, damage):
    exactly_or_refused(tmp_path, really_changed(archive, damage), read_arrays, ARRAYS, same_arrays, DamagedArchive)


def npy_member(header_shape, data):
    """The bytes of a .npy file whose header says ``header_shape`` but whose data is ``data``."""
    import io
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": data.dtype.str, "fortran_order": False,
                                             "shape": header_shape})
    return f.getvalue() + data.tobytes()


@pytest.mark.parametrize("members, message", [
    ({"x.npy": npy_member((2,), np.arange(3, dtype=np.float32))}, "data bytes"),   # a shape too small
    ({"x.npy": npy_member((4,), np.arange(3, dtype=np.float32))}, "data bytes"),   # a shape too large
    ({"x.npy": npy_member((1,), np.arange(1, dtype=np.float32)), "notes.txt": b"hi"}, "not arrays"),
    ({"x.npy": b"\x93NUMPY\x09\x00" + b"\0" * 20}, "version"),
    ({"x.npy": npy_member((1,), np.zeros(1, dtype=np.float32))[:10]}, "ValueError"),
])
def test_archives_that_zip_accepts_but_numpy_should_not_are_refused(tmp_path, members, message):
    """Consistent zip files (CRCs right) whose members are not whole arrays."""
    path = tmp_path / "odd.npz"
    with zipfile.ZipFile(path, "w") as z:
        for name, blob in members.items():
            z.writestr(name, blob)
    with pytest.raises(DamagedArchive, match=message):
        read_arrays(path)


def test_an_object_array_or_a_missing_name_is_refused(tmp_path):
    path = tmp_path / "obj.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", npy_member((1,), np.zeros(1, dtype=np.float64)).replace(b"<f8", b"|O "))
    with pytest.raises(DamagedArchive):
        read_arrays(path)
    write_arrays(tmp_path / "a.npz", {"a": np.zeros(2)})
    with pytest.raises(DamagedArchive, match="no entry 'b'"):
        read_arrays(tmp_path / "a.npz", ["a", "b"])
    with pytest.raises(FileNotFoundError):
        read_arrays(tmp_path / "none.npz")


# ---------------------------------------------------------------------------------------------
# checkpoints


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.npz"
    meta = {"config": {"task": "default", "hidden": 3}, "spec": {"hidden": 3}, "epoch": 1, "batch_index": 0, "step": 20}
    params = {"rnn0.W_x": np.ones((4, 12), np.float32), "rnn0.b": np.zeros(12, np.float32)}
    save_checkpoint(path, meta, params, {"rnn0.mean_x": np.full((2, 12), 0.5, np.float32)},
                    {"t": np.array(20), "m/rnn0.b": np.zeros(12, np.float32)}, {"h": np.zeros(3)})
    return path.read_bytes(), load_checkpoint(path)


def same_checkpoint(a, b):
    return a.meta == b.meta and all(same_arrays(getattr(a, s), getattr(b, s))
                                    for s in ("params", "stats", "optimizer", "extra"))


def test_every_single_bit_change_and_cut_of_a_checkpoint_is_refused_or_harmless(tmp_path, checkpoint):
    blob, expected = checkpoint
    payload = payload_bytes(blob)
    for pos, bad in single_bit_changes(blob):
        harmless = exactly_or_refused(tmp_path, bad, load_checkpoint, expected, same_checkpoint, UserError)
        assert not (harmless and pos in payload), pos
        exactly_or_refused(tmp_path, bad, load_meta, expected.meta, lambda a, b: a == b, UserError)
    for bad in cuts(blob):
        with pytest.raises(UserError, match="not a readable rbtw checkpoint"):
            read_back(tmp_path, bad, load_checkpoint)


@DAMAGE
@given(damage=changes)
def test_any_changed_bytes_of_a_checkpoint_are_refused_or_harmless(tmp_path, checkpoint, damage):
    blob, expected = checkpoint
    exactly_or_refused(tmp_path, really_changed(blob, damage), load_checkpoint, expected, same_checkpoint, UserError)


def test_a_checkpoint_whose_meta_is_not_an_object_is_refused(tmp_path):
    write_arrays(tmp_path / "c.npz", {"meta": np.frombuffer(b"[1, 2]", dtype=np.uint8)})
    with pytest.raises(UserError, match="not an rbtw checkpoint"):
        load_checkpoint(tmp_path / "c.npz")
    write_arrays(tmp_path / "d.npz", {"param/x": np.zeros(2)})
    with pytest.raises(UserError, match="not an rbtw checkpoint"):
        load_checkpoint(tmp_path / "d.npz")
    with pytest.raises(UserError, match="no entry 'meta'"):
        load_meta(tmp_path / "d.npz")


# ---------------------------------------------------------------------------------------------
# packed exports


def tiny_export():
    """A consistent export of a one-layer ternary GRU over 3 symbols (its arrays made up)."""
    spec = {"kind": "char", "n_in": 3, "n_out": 3, "cell": "gru", "hidden": 2, "layers": 1, "emb": 0,
            "quant": "ternary", "bn": False, "t_max": 4}
    rng = np.random.default_rng(0)
    matrices, arrays = {}, {}
    for name, (dtype, shape) in expected_arrays(spec, None).items():
        if name.endswith(("W_x", "W_h")):
            matrices[name] = {"kind": "ternary", "rows": shape[0], "cols": shape[1], "alpha": 0.5}
            dtype, shape = _stored_as(matrices[name], shape)
        arrays[name] = rng.integers(0, 255, size=shape).astype(dtype)
    manifest = {"format": FORMAT, "version": VERSION, "model": spec, "task": "default", "config": {},
                "vocab": ["a", "b", "c"], "symbols": "bytes", "matrices": matrices, "bn_steps": None}
    return Export(manifest, arrays)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "m.rbtw"
    write_export(path, tiny_export())
    return path.read_bytes(), read_export(path)


def same_export(a, b):
    return a.manifest == b.manifest and same_arrays(a.arrays, b.arrays)


def test_every_single_bit_change_and_cut_of_an_export_is_refused(tmp_path, export):
    blob, expected = export
    for pos, bad in single_bit_changes(blob):           # an export's every byte is checked
        assert not exactly_or_refused(tmp_path, bad, read_export, expected, same_export, UserError), pos
    for bad in cuts(blob):
        with pytest.raises(UserError):
            read_back(tmp_path, bad, read_export)


@DAMAGE
@given(damage=changes)
def test_any_changed_bytes_of_an_export_are_refused(tmp_path, export, damage):
    blob, expected = export
    assert not exactly_or_refused(tmp_path, really_changed(blob, damage), read_export, expected, same_export, UserError)


# ---------------------------------------------------------------------------------------------
# the prepared-corpus cache


SOURCES = {"ptb.char.train.txt": "0" * 64}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    prep = tmp_path_factory.mktemp("prep")
    corpus = Corpus("ptb_char", "char", ["_", "a", "b", "c"], np.array([1, 2, 3, 0], np.int32),
                    np.array([3, 3], np.int32), np.array([0], np.int32), info={"sources": SOURCES})
    _save_prepared(prep, corpus)
    return prep, corpus


def same_corpus(a, b):
    return (a.name, a.level, a.vocab, a.info) == (b.name, b.level, b.vocab, b.info) and all(
        np.array_equal(getattr(a, s), getattr(b, s)) for s in ("train", "valid", "test"))


def load_cached(prep):
    return _load_prepared(prep, DATASETS["ptb_char"], SOURCES)


@pytest.mark.parametrize("part", ["ptb_char.npz", "ptb_char.vocab.json"])
def test_every_single_bit_change_of_the_corpus_cache_is_prepared_again_or_harmless(tmp_path, prepared, part):
    prep, corpus = prepared
    assert same_corpus(load_cached(prep), corpus)
    good = {p.name: p.read_bytes() for p in prep.iterdir()}
    for name, blob in good.items():
        (tmp_path / name).write_bytes(blob)
    for _, bad in single_bit_changes(good[part]):
        (tmp_path / part).write_bytes(bad)
        got = load_cached(tmp_path)
        assert got is None or same_corpus(got, corpus)


def test_a_cached_vocabulary_changed_in_place_is_prepared_again(tmp_path, prepared):
    """vocab.json is plain JSON: a changed symbol still parses, and only its fingerprint shows it."""
    prep, _ = prepared
    for p in prep.iterdir():
        (tmp_path / p.name).write_bytes(p.read_bytes())
    meta = json.loads((tmp_path / "ptb_char.vocab.json").read_text())
    meta["vocab"][1] = "z"
    (tmp_path / "ptb_char.vocab.json").write_text(json.dumps(meta))
    assert load_cached(tmp_path) is None


# ---------------------------------------------------------------------------------------------
# a run's cache of measured conventions (conventions.json: plain JSON, each entry sealed)


CONVENTION_ENTRIES = {
    "checkpoint.npz@7840": {"population": 1.7123, "official": 1.5831, "expected": 1.6949, "calibrated": 1.6012,
                            "calibration": {"threshold": 0.5, "uncalibrated": 1.7031, "calibrated": 1.6122},
                            "calibration_rule": 2},
    "best.npz@6272": {"population": 1.6654, "official": 1.5902, "expected": 1.6501, "calibrated": 1.5987},
}


def test_every_single_bit_change_of_a_conventions_cache_is_measured_again_or_harmless(tmp_path):
    """Each entry read back is the one written under its key (a field name changed out of its
    seal's reach may add a field, never change one) or is left out, to be measured again."""
    from rbtw.rundir import RunDir
    from rbtw.sweep.summary import SEAL, _cache, _store
    for key, entry in CONVENTION_ENTRIES.items():
        _store(tmp_path, key, entry)
    path = RunDir(tmp_path).conventions_path
    assert {k: {f: v for f, v in e.items() if f != SEAL} for k, e in _cache(tmp_path).items()} == CONVENTION_ENTRIES
    good = path.read_bytes()
    left_out = 0
    for _, bad in single_bit_changes(good):
        path.write_bytes(bad)
        got = _cache(tmp_path)
        for key, entry in got.items():
            assert key in CONVENTION_ENTRIES, key
            assert {f: v for f, v in entry.items() if f in CONVENTION_ENTRIES[key]} == CONVENTION_ENTRIES[key]
        left_out += len(CONVENTION_ENTRIES) - len(got)
    assert left_out > len(good) / 2          # most changes hit a figure or a key: measured again


@DAMAGE
@given(changes=st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(1, 255)), min_size=1, max_size=3))
def test_any_few_changed_bytes_of_a_conventions_cache_are_measured_again_or_harmless(tmp_path, changes):
    """As above for up to three bytes changed anyhow: e.g. the seal's name and a figure
    changed together (which an entry without a seal would have let through)."""
    from rbtw.rundir import RunDir
    from rbtw.sweep.summary import _cache, _store
    for key, entry in CONVENTION_ENTRIES.items():
        _store(tmp_path, key, entry)
    path = RunDir(tmp_path).conventions_path
    path.write_bytes(really_changed(path.read_bytes(), changes))
    for key, entry in _cache(tmp_path).items():
        assert key in CONVENTION_ENTRIES, key
        assert {f: v for f, v in entry.items() if f in CONVENTION_ENTRIES[key]} == CONVENTION_ENTRIES[key]


def test_a_figure_changed_with_the_seals_name_is_measured_again(tmp_path):
    from rbtw.rundir import RunDir
    from rbtw.sweep.summary import _cache, _store
    for key, entry in CONVENTION_ENTRIES.items():
        _store(tmp_path, key, entry)
    path = RunDir(tmp_path).conventions_path
    text = path.read_text()
    path.write_text(text.replace('"sha256"', '"sha257"', 1).replace("1.7123", "1.2123", 1))
    assert "checkpoint.npz@7840" not in _cache(tmp_path)


# ---------------------------------------------------------------------------------------------
# data import through a zip


TEXT8 = b"anarchism originated as a term of abuse first used against early working class radicals " * 8


@pytest.fixture(scope="module")
def text8_zip(tmp_path_factory):
    path = tmp_path_factory.mktemp("text8") / "text8.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("text8", TEXT8)
    return path.read_bytes()


def imported_symbols(tmp_path, blob):
    src = tmp_path / "src" / "text8.zip"
    src.parent.mkdir(exist_ok=True)
    src.write_bytes(blob)
    cache = tmp_path / "cache"
    import_path("text8", src, data_dir=cache)
    c = load_corpus("text8", cache)
    return c.decode(np.concatenate([c.train, c.valid, c.test]))


@DAMAGE
@given(damage=changes)
def test_any_changed_bytes_of_an_imported_zip_are_refused_or_harmless(tmp_path_factory, text8_zip, damage):
    tmp = tmp_path_factory.mktemp("imp")
    try:
        text = imported_symbols(tmp, really_changed(text8_zip, damage))
    except UserError as e:
        assert one_line(e), repr(str(e))
    else:
        assert text == TEXT8.decode()


def test_an_encrypted_or_unknown_method_zip_member_is_one_line(tmp_path, text8_zip):
    """The flag and method fields of both zip headers, changed: zipfile raises RuntimeError /
    NotImplementedError for these, not BadZipFile."""
    blob = text8_zip
    local, central = 0, blob.rindex(b"PK\x01\x02")
    for damage in ([(local + 6, 0x01), (central + 8, 0x01)],            # "encrypted"
                   [(local + 8, 0x61), (central + 10, 0x61)]):          # method 8 -> 105
        with pytest.raises(UserError, match="text8.zip"):
            imported_symbols(tmp_path, changed(blob, damage))


# ---------------------------------------------------------------------------------------------
# the data store's manifest: intact JSON, wrong values


MANIFEST_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10 ** 12), st.floats(), st.text(max_size=6),
    st.sampled_from(["verified", "fragment", "size-checked", "..", ".", "", "../outside.txt",
                     "/tmp/rbtw-outside-sentinel", "text8.fragment.zip", "0" * 64]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def places(d, here=()):
    yield here
    if isinstance(d, dict):
        for key, value in d.items():
            yield from places(value, here + (key,))


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_value_in_a_data_manifest_is_one_line_or_works_and_deletes_nothing_outside(
        tmp_path_factory, text8_zip, data):
    """Reading, listing and importing again over a manifest with any value anywhere: one line
    or success; a file outside the source directory (named by a damaged "stored") survives; the
    import repairs the source."""
    from rbtw.data.listing import dataset_rows
    tmp = tmp_path_factory.mktemp("store")
    outside = tmp / "outside.txt"
    outside.write_text("precious")
    sentinel = Path("/tmp/rbtw-outside-sentinel")
    sentinel.write_text("precious")
    (tmp / "src").mkdir()
    (tmp / "src" / "text8.zip").write_bytes(text8_zip)
    cache = tmp / "cache"
    import_path("text8", tmp / "src" / "text8.zip", data_dir=cache)
    path = cache / "text8" / "manifest.json"
    m = json.loads(path.read_text())
    where = data.draw(st.sampled_from([p for p in places(m) if p]))
    parent = m
    for key in where[:-1]:
        parent = parent[key]
    if data.draw(st.booleans()):
        parent[where[-1]] = data.draw(MANIFEST_VALUES)
    else:
        del parent[where[-1]]
    path.write_text(json.dumps(m))
    for step in (lambda: load_corpus("text8", cache), lambda: dataset_rows(cache, recheck=True)):
        try:
            step()
        except UserError as e:
            assert one_line(e), repr(str(e))
    import_path("text8", tmp / "src" / "text8.zip", data_dir=cache)
    assert outside.read_text() == "precious" and sentinel.read_text() == "precious"
    c = load_corpus("text8", cache)
    assert c.decode(np.concatenate([c.train, c.valid, c.test])) == TEXT8.decode()


@pytest.mark.parametrize("stored", ["ABSOLUTE", "../../outside.txt"])
def test_an_import_never_deletes_a_file_a_damaged_manifest_points_outside_its_directory(tmp_path, text8_zip, stored):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "text8.zip").write_bytes(text8_zip)
    cache = tmp_path / "cache"
    import_path("text8", tmp_path / "src" / "text8.zip", data_dir=cache)
    path = cache / "text8" / "manifest.json"
    m = json.loads(path.read_text())
    m["files"]["text8.zip"]["stored"] = str(outside) if stored == "ABSOLUTE" else stored
    path.write_text(json.dumps(m))
    with pytest.raises(UserError, match="not a file name in this directory"):
        load_corpus("text8", cache)
    import_path("text8", tmp_path / "src" / "text8.zip", data_dir=cache)     # repairs the source
    assert outside.read_text() == "precious"
    assert load_corpus("text8", cache).train.size


# ---------------------------------------------------------------------------------------------
# a checkpoint's meta: intact archive, wrong values


META_VALUES = st.sampled_from([None, True, -1, 0, 3, 10 ** 20, 10 ** 400, 1.5, float("nan"), "x", "", [], {}, [1],
                               {"a": 1}])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from click.testing import CliRunner
    from rbtw.cli import main
    run = tmp_path_factory.mktemp("trained") / "run"
    result = CliRunner().invoke(main, ["train", "default", "--hidden", "12", "--epochs", "1", "--max-batches", "2",
                                       "--eval-max-batches", "2", "--seq-len", "20", "--batch", "8",
                                       "--quant", "ternary", "--stochastic", "--out", str(run)])
    assert result.exit_code == 0, result.output
    return run


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_value_in_a_checkpoints_meta_is_one_line_or_works(tmp_path_factory, trained_run, data):
    """info, eval, export and resuming training over a checkpoint whose meta holds any value
    anywhere (re-saved, so every CRC is right): a one-line error or success, no traceback."""
    import shutil
    from click.testing import CliRunner
    from rbtw.cli import main
    ckpt = load_checkpoint(trained_run / "checkpoint.npz")
    meta = {k: v for k, v in ckpt.meta.items() if k not in ("format", "version")}
    where = data.draw(st.sampled_from([p for p in places(meta) if p and p[0] != "vocab"]))
    parent = meta
    for key in where[:-1]:
        parent = parent[key]
    if data.draw(st.integers(0, 4)) == 0:
        del parent[where[-1]]
    else:
        parent[where[-1]] = data.draw(META_VALUES)
    run = tmp_path_factory.mktemp("meta") / "run"
    shutil.copytree(trained_run, run)
    save_checkpoint(run / "checkpoint.npz", meta, ckpt.params, ckpt.stats, ckpt.optimizer, ckpt.extra)
    for command in (["info", run / "checkpoint.npz"], ["eval", run / "checkpoint.npz", "--max-batches", "1"],
                    ["export", run / "checkpoint.npz", run / "m.rbtw", "--force", "--bn-steps", "1"],
                    ["train", "default", "--resume", "--out", run, "--epochs", "2"]):
        result = CliRunner().invoke(main, [str(w) for w in command])
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            (command[0], where, "".join(__import__("traceback").format_exception(result.exception)))
        if result.exit_code:
            assert result.stderr.strip().startswith("error:") and len(result.stderr.strip().splitlines()) == 1
            assert "Invalid value" not in result.stderr and "No such option" not in result.stderr, \
                (command, result.stderr)             # the command itself was right: the meta was judged


@pytest.mark.parametrize("change, message", [
    (lambda m: m["spec"].update(layers=10 ** 20), "recurrent layers"),     # was: a list of 1e20 layers' shapes
    (lambda m: m["spec"].update(bn=10 ** 20), "true or false"),            # was: a Numba typing error
    (lambda m: m.update(config=""), "config"),
    (lambda m: m.pop("epoch"), "epoch"),
])
def test_named_inconsistencies_of_a_checkpoints_meta_are_one_line(tmp_path, trained_run, change, message):
    from click.testing import CliRunner
    from rbtw.cli import main
    ckpt = load_checkpoint(trained_run / "checkpoint.npz")
    meta = {k: v for k, v in ckpt.meta.items() if k not in ("format", "version")}
    change(meta)
    save_checkpoint(tmp_path / "c.npz", meta, ckpt.params, ckpt.stats, ckpt.optimizer, ckpt.extra)
    result = CliRunner().invoke(main, ["info", str(tmp_path / "c.npz")])
    assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
