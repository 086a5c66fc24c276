"""rbtw.data: real corpora parse to the published sizes; imports are checked; batching is exact.

The real copies come from ``../shared/data`` beside the repository (or ``$RBTW_SHARED_DATA``);
tests that need one are skipped, saying so, when it is absent.
"""

import gzip
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from rbtw.data import (DATASETS, char_batches, default_text_path, import_path, load_corpus, load_default, load_mnist,
                       load_text, mnist_batches, pixel_permutation, resolve_data_dir,
                       word_batches)
from rbtw.data import corpus as corpus_mod
from rbtw.data.listing import dataset_rows
from rbtw.errors import UserError

SHARED = Path(os.environ.get("RBTW_SHARED_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "data"))


def shared(sub):
    """Path of a real copy, or skip the test with the reason."""
    path = SHARED / sub
    if not path.exists():
        pytest.skip(f"real data copy {path} is absent (set RBTW_SHARED_DATA to its folder)")
    return path


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    """A data directory holding every shared copy, imported once per session."""
    d = tmp_path_factory.mktemp("rbtw-data")
    for name, sub in [("ptb_word", "ptb"), ("warpeace", "warpeace"), ("linux", "linux"),
                      ("mnist", "mnist"), ("text8", "text8/text8_fragment.txt")]:
        if (SHARED / sub).exists():
            import_path(name, SHARED / sub, data_dir=d)
    return d


@pytest.fixture(scope="session")
def corpora(cache):
    """Corpora parsed once per session (load_corpus caches to disk too)."""
    memo = {}

    def get(name):
        if name not in memo:
            memo[name] = load_corpus(name, cache)
        return memo[name]

    return get


@pytest.fixture(scope="session")
def mnist(cache):
    shared("mnist")
    return load_mnist(cache)


# --- data directory -------------------------------------------------------------------------

def test_data_dir_option_beats_env_beats_default(monkeypatch, tmp_path):
    monkeypatch.delenv("RBTW_DATA", raising=False)
    assert resolve_data_dir() == Path("~/.cache/rbtw").expanduser()
    monkeypatch.setenv("RBTW_DATA", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "opt") == tmp_path / "opt"


# --- embedded default -----------------------------------------------------------------------

def test_default_corpus_needs_nothing_downloaded(monkeypatch, tmp_path):
    monkeypatch.setenv("RBTW_DATA", str(tmp_path / "empty"))
    c = load_corpus("default")
    assert (c.level, c.status, c.vocab_size) == ("char", "embedded", 73)
    assert (len(c.train), len(c.valid), len(c.test)) == (129_956, 7_220, 7_219)
    assert all(a.dtype == np.int32 for a in (c.train, c.valid, c.test))
    assert c.decode(c.train[:9]) == "[Alice's "
    assert not (tmp_path / "empty").exists()


def test_default_corpus_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(corpus_mod, "default_text_path", lambda: tmp_path / "nope.txt")
    with pytest.raises(UserError, match="embedded default corpus missing"):
        load_default()


def test_encode_decode_round_trip_with_non_ascii(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("héllo wörld, ßtraße " * 40, encoding="utf-8")
    c = load_text(p)
    assert c.decode(np.concatenate([c.train, c.valid, c.test])) == p.read_text(encoding="utf-8")
    assert list(c.encode("héllo")) == list(c.train[:5])            # five characters (six bytes)
    assert list(load_text(p, symbols="bytes").encode("héllo")) == list(load_text(p, symbols="bytes").train[:6])
    with pytest.raises(UserError, match="not in the model's vocabulary"):
        c.encode("xyz")


def test_text_that_is_not_utf8_is_a_clear_error(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(UserError, match=r"not valid UTF-8 .*0xe9 at offset 3"):
        load_text(p)


# --- real corpora ---------------------------------------------------------------------------

def test_ptb_char(corpora):
    shared("ptb")
    c = corpora("ptb_char")
    assert (c.level, c.status, c.vocab_size) == ("char", "verified", 50)
    assert "_" in c.vocab and "\n" in c.vocab and " " not in c.vocab
    assert (len(c.train), len(c.valid), len(c.test)) == (5_017_482, 393_042, 442_423)
    assert c.decode(c.train[:22]) == "aer_banknote_berlitz_c"
    assert c.decode(c.valid).count("\n") == 3370


def test_ptb_word(corpora):
    shared("ptb")
    c = corpora("ptb_word")
    assert (c.level, c.vocab_size) == ("word", 10_000)
    assert "<eos>" in c.vocab and "<unk>" in c.vocab
    assert (len(c.train), len(c.valid), len(c.test)) == (929_589, 73_760, 82_430)
    eos = c.vocab.index("<eos>")
    assert (c.train == eos).sum() == 42_068
    assert c.decode(c.train[:3]) == "aer banknote berlitz"


def test_warpeace(corpora):
    shared("warpeace")
    c = corpora("warpeace")
    assert (c.vocab_size, c.status) == (83, "verified")
    n = 3_196_228
    assert (len(c.train), len(c.valid)) == (round(0.8 * n), round(0.1 * n))
    assert len(c.train) + len(c.valid) + len(c.test) == n
    assert c.decode(c.train[:14]) == '"Well, Prince,'


def test_warpeace_canonical_crlf_form_is_recognised(tmp_path, corpora):
    lf = shared("warpeace/warpeace_input.txt").read_bytes()
    crlf = b"\xef\xbb\xbf" + lf.replace(b"\n", b"\r\n") + b"\n"  # BOM, CRLF: 3,258,246 bytes
    assert len(crlf) == 3_258_246
    import_path("warpeace", _write(tmp_path / "warpeace_input.txt", crlf), data_dir=tmp_path / "a")
    c = load_corpus("warpeace", tmp_path / "a")
    assert c.status == "verified" and c.vocab == corpora("warpeace").vocab
    assert np.array_equal(c.test, corpora("warpeace").test)
    other = crlf.replace(b"Prince", b"Prinze")   # right size, other text: refused
    with pytest.raises(UserError, match="not the expected text"):
        import_path("warpeace", _write(tmp_path / "warpeace_input.txt", other), data_dir=tmp_path / "b")


def test_linux(corpora):
    shared("linux")
    c = corpora("linux")
    assert (c.vocab_size, c.status) == (115, "verified")
    assert len(c.train) + len(c.valid) + len(c.test) == 6_206_996


def test_text8_fragment_is_marked_and_split_90_5_5(corpora, cache):
    shared("text8")
    c = corpora("text8")
    assert (c.vocab_size, c.status) == (27, "fragment")
    n = 3_085_829
    assert (len(c.train), len(c.valid), len(c.test)) == (round(0.9 * n), round(0.05 * n),
                                                         n - round(0.9 * n) - round(0.05 * n))
    row = next(r for r in dataset_rows(cache) if r["name"] == "text8")
    assert row["status"] == "fragment" and "not the full corpus" in row["note"]


def test_prepared_data_keeps_the_vocabulary_and_is_reused(corpora, cache):
    shared("ptb")
    c = corpora("ptb_word")
    meta = json.loads((cache / "ptb" / "prepared" / "ptb_word.vocab.json").read_text())
    assert meta["vocab"] == c.vocab and meta["vocab_sha256"] == c.vocab_sha256
    again = load_corpus("ptb_word", cache)
    assert again.vocab == c.vocab and np.array_equal(again.test, c.test)
    assert again.train.dtype == np.int32


def test_mnist_splits(mnist):
    (x, y), (xv, yv), (xt, yt) = mnist.train, mnist.valid, mnist.test
    assert (x.shape, xv.shape, xt.shape) == ((50_000, 784), (10_000, 784), (10_000, 784))
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert 0.0 <= x.min() and x.max() == 1.0
    assert (y[0], yt[0]) == (5, 7)  # the well-known first labels of the two MNIST files
    assert set(np.unique(yv)) == set(range(10))
    assert np.allclose(x[:50] * 255, np.round(x[:50] * 255), atol=1e-4)  # pixels / 255


def test_mnist_permuted_is_a_fixed_seeded_pixel_order(cache, mnist):
    p0 = load_mnist(cache, permuted=True, seed=0)
    perm = p0.permutation
    assert sorted(perm) == list(range(784))
    assert np.array_equal(perm, pixel_permutation(0))
    assert not np.array_equal(perm, pixel_permutation(1))
    assert np.array_equal(p0.test[0][:50], mnist.test[0][:50, perm])
    assert np.array_equal(p0.train[1], mnist.train[1])
    assert mnist.permutation is None


# --- imports: checks and errors ---------------------------------------------------------------

def test_missing_data_says_how_to_get_it(tmp_path):
    how = r"rbtw data download ptb_char.*rbtw data import ptb_char PATH"
    with pytest.raises(UserError, match=how):
        load_corpus("ptb_char", tmp_path)
    with pytest.raises(UserError, match="rbtw data download mnist"):
        load_mnist(tmp_path)


def test_unknown_names_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="unknown data set 'nope'"):
        load_corpus("nope", tmp_path)
    with pytest.raises(UserError, match="use load_mnist"):
        load_corpus("mnist", tmp_path)
    with pytest.raises(UserError, match="embedded"):
        import_path("default", tmp_path, data_dir=tmp_path)


def _copy_corrupted(src, dst, at):
    data = bytearray(src.read_bytes())
    data[at] ^= 0x01
    dst.write_bytes(bytes(data))
    return dst


def test_import_rejects_a_corrupt_copy_and_leaves_nothing(tmp_path):
    src = shared("warpeace/warpeace_input.txt")
    bad = _copy_corrupted(src, tmp_path / "warpeace_input.txt", at=1000)
    cache = tmp_path / "cache"
    with pytest.raises(UserError, match="checksum mismatch"):
        import_path("warpeace", bad, data_dir=cache)
    assert not (cache / "warpeace").exists()              # not even the directory it would have made
    with pytest.raises(UserError, match="unexpected size 5 bytes"):
        import_path("warpeace", _write(tmp_path / "w.txt", b"short"), data_dir=cache)


def _write(path, data):
    path.write_bytes(data)
    return path


def test_import_rejects_a_corrupt_gzip(tmp_path):
    src = shared("mnist")
    d = tmp_path / "mnist"
    d.mkdir()
    for f in src.iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    data = (d / "train-labels-idx1-ubyte.gz").read_bytes()
    (d / "train-labels-idx1-ubyte.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupt gzip file"):
        import_path("mnist", d, data_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "mnist" / "manifest.json").exists()


def test_mnist_import_accepts_unpacked_idx_files(tmp_path):
    src = shared("mnist")
    d = tmp_path / "raw"
    d.mkdir()
    for f in src.iterdir():
        (d / f.name[:-3]).write_bytes(gzip.decompress(f.read_bytes()))
    import_path("mnist", d, data_dir=tmp_path / "cache")
    m = load_mnist(tmp_path / "cache")
    assert m.test[0].shape == (10_000, 784)


def test_bytes_of_the_right_size_that_are_not_the_text_are_refused(tmp_path):
    """Every registered file is checked by content: a file checksum, the sha256 of its
    normalised text, or (Karpathy's linux file, never published) UTF-8 text without NUL."""
    rng = np.random.default_rng(0)
    for name, size in [("linux", 6_206_996), ("warpeace", 3_258_246), ("warpeace", 3_196_228)]:
        fake = _write(tmp_path / f"{name}_input.txt", rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        with pytest.raises(UserError, match="checksum mismatch|not the expected text"):
            import_path(name, fake, data_dir=tmp_path / "cache")
        row = next(r for r in dataset_rows(tmp_path / "cache") if r["name"] == name)
        assert row["status"] == "missing"
    text = b"int main(void)\n{\n\treturn 0;\n}\n" * 400_000
    plausible = _write(tmp_path / "linux_input.txt", text[:6_206_996])
    import_path("linux", plausible, data_dir=tmp_path / "cache")
    row = next(r for r in dataset_rows(tmp_path / "cache") if r["name"] == "linux")
    assert row["status"] == "size-checked" and "no published checksum" in row["note"]


def test_a_failed_import_leaves_the_good_copy_as_it_was(tmp_path):
    text = b"anarchism originated as a term of abuse " * 100
    import_path("text8", _write(tmp_path / "good.txt", text), data_dir=tmp_path / "cache")
    before = {p: p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file()}
    for bad in (_write(tmp_path / "bad.txt", b"Hello, World"), tmp_path / "nothing-here", tmp_path):
        with pytest.raises(UserError):
            import_path("text8", bad, data_dir=tmp_path / "cache")
        after = {p: p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file()}
        assert after == before
        assert next(r for r in dataset_rows(tmp_path / "cache") if r["name"] == "text8")["status"] == "fragment"


def test_damaged_prepared_data_is_rebuilt_and_noticed_by_recheck(tmp_path):
    text = b"anarchism originated as a term of abuse " * 100
    import_path("text8", _write(tmp_path / "good.txt", text), data_dir=tmp_path)
    good = load_corpus("text8", tmp_path)
    npz = tmp_path / "text8" / "prepared" / "text8.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    row = next(r for r in dataset_rows(tmp_path, recheck=True) if r["name"] == "text8")
    assert "damaged prepared data of text8" in row["note"] and not npz.exists()
    npz.write_bytes(b"PK\x03\x04 truncated")
    again = load_corpus("text8", tmp_path)             # rebuilt from the checked raw file
    np.testing.assert_array_equal(again.train, good.train)


def test_text8_import_refuses_a_file_that_is_not_text8(tmp_path):
    with pytest.raises(UserError, match="a-z and space only"):
        import_path("text8", _write(tmp_path / "x.txt", b"Hello, World"), data_dir=tmp_path)


def test_text8_fragment_inside_a_zip_is_read_through_the_zip(tmp_path):
    text = b"anarchism originated as a term of abuse " * 100
    with zipfile.ZipFile(tmp_path / "text8.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("text8", text)
    import_path("text8", tmp_path / "text8.zip", data_dir=tmp_path / "c")
    assert (tmp_path / "c" / "text8" / "text8.fragment.zip").is_file()
    c = load_corpus("text8", tmp_path / "c")
    assert c.status == "fragment" and len(c.train) + len(c.valid) + len(c.test) == len(text)
    assert c.decode(c.train[:9]) == "anarchism"


def test_a_changed_file_is_noticed(tmp_path):
    src = shared("warpeace/warpeace_input.txt")
    import_path("warpeace", src, data_dir=tmp_path)
    stored = tmp_path / "warpeace" / "warpeace_input.txt"
    stored.write_bytes(stored.read_bytes()[:100])
    with pytest.raises(UserError, match="changed since it was checked"):
        load_corpus("warpeace", tmp_path)


def test_recheck_finds_same_size_tampering(tmp_path):
    src = shared("warpeace/warpeace_input.txt")
    import_path("warpeace", src, data_dir=tmp_path)
    stored = tmp_path / "warpeace" / "warpeace_input.txt"
    _copy_corrupted(src, stored, at=5)
    row = next(r for r in dataset_rows(tmp_path, recheck=True) if r["name"] == "warpeace")
    assert row["status"] == "damaged" and "checksum mismatch" in row["note"]


# --- stored files changed after they were checked -------------------------------------------

def _alice_text8():
    """A text8-style fragment (a-z and single spaces) made from the embedded corpus."""
    return re.sub(rb"[^a-z]+", b" ", default_text_path().read_bytes().lower()).strip()


def _one_line(e):
    return str(e) and "\n" not in str(e)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """One data directory per source, imported and loaded once (so prepared ids exist):
    source -> (data dir, {stored path: bytes as stored}).  Verified: PTB's three real files
    (when the shared copy is present); fragment: the embedded corpus as a zipped text8
    fragment (a packed file); size-checked: plausible C text of Karpathy's linux file's size."""
    root = tmp_path_factory.mktemp("stored")
    srcs = {}
    with zipfile.ZipFile(root / "text8.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("text8", _alice_text8())
    srcs["text8"] = ("text8", root / "text8.zip", "fragment")
    linux = (b"int main(void)\n{\n\treturn 0;\n}\n" * 210_000)[:6_206_996]
    srcs["linux"] = ("linux", _write(root / "linux_input.txt", linux), "size-checked")
    if (SHARED / "ptb").is_dir():
        srcs["ptb"] = ("ptb_word", SHARED / "ptb", "verified")
    out = {}
    for source, (dataset, src, status) in srcs.items():
        d = root / f"data-{source}"
        import_path(dataset, src, data_dir=d)
        names = [n for n, spec in DATASETS.items() if spec.source == source]
        for name in names:
            assert load_corpus(name, d).status == status
        files = {p: p.read_bytes() for p in (d / source).iterdir() if p.is_file() and p.name != "manifest.json"}
        out[source] = (d, names, files)
    return _Stored(out)


class _Stored(dict):
    """The fixture's value; a short repr, since hypothesis prints it with a failing example."""

    def __repr__(self):
        return f"<stored: {', '.join(self)}>"


def _refused_everywhere(d, names, path):
    """Every data set of the source is refused on load in one line naming ``path`` and how to
    get it again, and ``data list`` shows it as damaged, naming the file."""
    for name in names:
        with pytest.raises(UserError) as e:
            load_corpus(name, d)
        assert _one_line(e.value) and str(path) in str(e.value), str(e.value)
        assert f"rbtw data import {name} PATH" in str(e.value)
    rows = {r["name"]: r for r in dataset_rows(d)}
    for name in names:
        assert rows[name]["status"] == "damaged" and str(path) in rows[name]["note"], rows[name]


def _draw_file(data, stored):
    d, names, files = stored[data.draw(st.sampled_from(sorted(stored)))]
    path = data.draw(st.sampled_from(sorted(files)))
    event(path.name)
    return d, names, path, files[path]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(data=st.data())
def test_any_byte_changed_in_a_stored_file_is_refused_on_load_and_not_listed_as_checked(stored, data):
    """One byte of any stored raw file, at any offset, changed to any other value (the size
    kept): verified, size-checked and fragment copies alike are refused, prepared ids or not."""
    d, names, path, good = _draw_file(data, stored)
    at = data.draw(st.integers(0, len(good) - 1))
    mask = data.draw(st.integers(1, 255))
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(bytes([good[at] ^ mask]))
    try:
        _refused_everywhere(d, names, path)
    finally:
        with open(path, "r+b") as f:
            f.seek(at)
            f.write(good[at:at + 1])


@settings(max_examples=20, deadline=None, derandomize=True)
@given(data=st.data())
def test_a_stored_file_cut_or_extended_is_refused_on_load_and_not_listed_as_checked(stored, data):
    d, names, path, good = _draw_file(data, stored)
    size = data.draw(st.integers(0, len(good) - 1) | st.integers(len(good) + 1, len(good) + 64))
    tail = data.draw(st.binary(min_size=size - len(good), max_size=size - len(good))) \
        if size > len(good) else b""
    path.write_bytes(good[:size] + tail)
    try:
        _refused_everywhere(d, names, path)
    finally:
        path.write_bytes(good)


def test_stored_files_restored_load_again(stored):
    """After the property tests above, each restored file is accepted again."""
    for d, names, _ in stored.values():
        for name in names:
            assert load_corpus(name, d).train.size
        assert all(r["status"] not in ("damaged", "changed") for r in dataset_rows(d))


def test_a_manifest_without_file_hashes_still_checks_the_content(tmp_path):
    """Manifests written before ``file_sha256`` was recorded: the content's sha256 is checked."""
    text = _alice_text8()
    import_path("text8", _write(tmp_path / "text8", text), data_dir=tmp_path / "raw")
    with zipfile.ZipFile(tmp_path / "text8.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("text8", text)
    import_path("text8", tmp_path / "text8.zip", data_dir=tmp_path / "zip")
    for d in (tmp_path / "raw", tmp_path / "zip"):
        mpath = d / "text8" / "manifest.json"
        m = json.loads(mpath.read_text())
        (entry,) = m["files"].values()
        del entry["file_sha256"]
        mpath.write_text(json.dumps(m))
        assert load_corpus("text8", d).decode(load_corpus("text8", d).train[:5]) == text[:5].decode()
    stored = tmp_path / "raw" / "text8" / "text8.fragment"
    _copy_corrupted(stored, stored, at=len(text) // 2)                  # 'x' <-> 'y' and so on
    with pytest.raises(UserError, match=r"text8\.fragment: checksum mismatch.*rbtw data import text8"):
        load_corpus("text8", tmp_path / "raw")
    stored = tmp_path / "zip" / "text8" / "text8.fragment.zip"
    blob = stored.read_bytes()
    _copy_corrupted(stored, stored, at=len(blob) // 2)                  # inside the deflated text
    with pytest.raises(UserError, match=r"text8\.fragment\.zip: .*rbtw data import text8"):
        load_corpus("text8", tmp_path / "zip")


def test_prepared_ids_of_other_raw_files_are_not_read(tmp_path):
    """A prepared npz belongs to the raw files and vocabulary it was made from: one of another
    import (same vocabulary, same name) put beside this vocab.json is prepared again."""
    a = b"anarchism originated as a term of abuse " * 100
    b = a[::-1]                                                       # the same symbols
    import_path("text8", _write(tmp_path / "a.txt", a), data_dir=tmp_path / "a")
    import_path("text8", _write(tmp_path / "b.txt", b), data_dir=tmp_path / "b")
    ca, cb = load_corpus("text8", tmp_path / "a"), load_corpus("text8", tmp_path / "b")
    assert ca.vocab == cb.vocab and not np.array_equal(ca.train, cb.train)
    npz = "text8/prepared/text8.npz"
    (tmp_path / "a" / npz).write_bytes((tmp_path / "b" / npz).read_bytes())
    again = load_corpus("text8", tmp_path / "a")
    assert all(np.array_equal(getattr(again, s), getattr(ca, s)) for s in ("train", "valid", "test"))


def test_a_file_changed_after_its_check_is_not_prepared_from(tmp_path, monkeypatch):
    """The bytes a corpus is prepared from are the ones the manifest vouches for, even when the
    file changes between the check on load and the read."""
    text = _alice_text8()
    import_path("text8", _write(tmp_path / "t.txt", text), data_dir=tmp_path)
    files = corpus_mod.present_files(tmp_path, "text8", "text8")
    (path, _), = files.values()
    _copy_corrupted(path, path, at=100)
    monkeypatch.setattr(corpus_mod, "present_files", lambda *a: files)
    with pytest.raises(UserError, match=r"text8\.fragment: its content changed while it was read"):
        load_corpus("text8", tmp_path)


def test_an_mnist_file_changed_after_its_check_is_not_read(tmp_path, monkeypatch):
    from rbtw.data import mnist as mnist_mod
    src = shared("mnist")
    import_path("mnist", src, data_dir=tmp_path)
    files = mnist_mod.present_files(tmp_path, "mnist", "mnist")
    path, _ = files["train-labels-idx1-ubyte.gz"]
    labels = bytearray(gzip.decompress(path.read_bytes()))
    labels[100] = (labels[100] + 1) % 10                   # one label changed, the file still valid
    path.write_bytes(gzip.compress(bytes(labels)))
    monkeypatch.setattr(mnist_mod, "present_files", lambda *a: files)
    with pytest.raises(UserError, match=r"train-labels-idx1-ubyte\.gz: its content changed while it was read"):
        mnist_mod.load_raw(tmp_path)


def test_ptb_imported_as_gzip_files_loads_as_the_plain_import(tmp_path):
    src = shared("ptb")
    packed = tmp_path / "packed"
    packed.mkdir()
    for name in ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"):
        (packed / (name + ".gz")).write_bytes(gzip.compress((src / name).read_bytes()))
    import_path("ptb_word", packed, data_dir=tmp_path / "gz")
    import_path("ptb_word", src, data_dir=tmp_path / "plain")
    for name in ("ptb_word", "ptb_char"):
        got, want = load_corpus(name, tmp_path / "gz"), load_corpus(name, tmp_path / "plain")
        assert got.vocab == want.vocab
        for split in ("train", "valid", "test"):
            np.testing.assert_array_equal(getattr(got, split), getattr(want, split))


# --- failed imports: messages, and nothing left behind ---------------------------------------

@pytest.mark.parametrize("dataset", ["ptb_word", "warpeace", "linux", "text8", "mnist"])
def test_a_directory_without_the_file_names_each_accepted_name_once(tmp_path, dataset):
    (tmp_path / "bad").mkdir()
    with pytest.raises(UserError) as e:
        import_path(dataset, tmp_path / "bad", data_dir=tmp_path / "data2")
    m = re.fullmatch(rf"{re.escape(str(tmp_path / 'bad'))}: no (.+) in this directory", str(e.value))
    assert m, str(e.value)
    names = re.split(r", | or ", m.group(1))
    assert len(names) == len(set(names)), str(e.value)
    if dataset == "warpeace":
        assert m.group(1) == "warpeace_input.txt or warpeace_input.txt.gz"
    if dataset == "text8":
        assert m.group(1) == "text8.zip, text8 or text8.gz"


def test_a_failed_import_into_a_new_data_directory_leaves_nothing(tmp_path):
    """Whatever the failure -- no file, a file that fails its check, one of several files
    missing -- the data directory that did not exist does not exist afterwards."""
    (tmp_path / "bad").mkdir()
    (tmp_path / "ptb").mkdir()
    (tmp_path / "ptb" / "ptb.train.txt").write_text("a b c\n")           # valid and test missing
    fails = [("warpeace", tmp_path / "bad"), ("warpeace", _write(tmp_path / "w.txt", b"short")),
             ("text8", _write(tmp_path / "x.txt", b"Hello, World")), ("ptb_word", tmp_path / "ptb"),
             ("ptb_word", tmp_path / "bad")]
    if (SHARED / "ptb").is_dir():
        part = tmp_path / "ptb-part"
        part.mkdir()
        for name in ("ptb.train.txt", "ptb.valid.txt"):          # the first two pass their check
            (part / name).write_bytes((SHARED / "ptb" / name).read_bytes())
        fails.append(("ptb_word", part))
    for dataset, src in fails:
        with pytest.raises(UserError):
            import_path(dataset, src, data_dir=tmp_path / "data2" / "nested")
        assert not (tmp_path / "data2").exists(), (dataset, src)
    (tmp_path / "data3").mkdir()
    with pytest.raises(UserError):
        import_path("warpeace", tmp_path / "bad", data_dir=tmp_path / "data3")
    assert (tmp_path / "data3").is_dir() and list((tmp_path / "data3").iterdir()) == []


def test_cli_import_of_a_directory_without_the_file_is_one_line_and_leaves_nothing(tmp_path):
    from click.testing import CliRunner
    from rbtw.cli import main
    (tmp_path / "bad").mkdir()
    r = CliRunner().invoke(main, ["data", "import", "warpeace", str(tmp_path / "bad"),
                                  "--data-dir", str(tmp_path / "data2")])
    assert r.exit_code == 2
    assert r.stderr == (f"error: {tmp_path / 'bad'}: no warpeace_input.txt or warpeace_input.txt.gz "
                        "in this directory\n")
    assert not (tmp_path / "data2").exists()


# --- batching --------------------------------------------------------------------------------

def _epoch(ids, T, B, seed, **kw):
    return list(char_batches(ids, T, B, np.random.default_rng(seed), **kw))


def test_char_batches_shapes_and_shift():
    ids = np.arange(1000, dtype=np.int32)  # ids equal positions: x shows where it was cut
    batches = _epoch(ids, 10, 8, seed=0)
    for x, y in batches:
        assert x.dtype == np.int32 and x.shape[0] == 10 and x.shape[1] <= 8
        assert np.array_equal(y, x + 1)
        assert np.array_equal(np.diff(x, axis=0), np.ones((9, x.shape[1])))
    assert all(x.shape == (10, 8) for x, _ in batches[:-1])


def test_char_batches_offsets_are_random_per_epoch_and_seeded():
    ids = np.arange(1000, dtype=np.int32)
    rng = np.random.default_rng(3)
    offsets = [next(char_batches(ids, 10, 4, rng))[0][0, 0] % 10 for _ in range(8)]
    assert len(set(offsets)) > 1
    a, b, c = _epoch(ids, 10, 4, 7), _epoch(ids, 10, 4, 7), _epoch(ids, 10, 4, 8)
    assert all(np.array_equal(p[0], q[0]) for p, q in zip(a, b))
    assert not all(np.array_equal(p[0], q[0]) for p, q in zip(a, c))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(30, 400), T=st.integers(1, 12), B=st.integers(1, 9), seed=st.integers(0, 99))
def test_char_batches_cover_every_target_once(n, T, B, seed):
    ids = np.arange(n, dtype=np.int32)
    ys = np.concatenate([y.T.ravel() for _, y in _epoch(ids, T, B, seed)])
    offset = np.random.default_rng(seed).integers(T)
    k = (n - 1 - offset) // T
    assert np.array_equal(np.sort(ys), np.arange(offset + 1, offset + 1 + k * T))


def test_char_batches_without_rng_and_drop_last():
    ids = np.arange(105, dtype=np.int32)
    x0, _ = next(char_batches(ids, 10, 3))
    assert list(x0[0]) == [0, 10, 20]
    assert [x.shape[1] for x, _ in char_batches(ids, 10, 3)] == [3, 3, 3, 1]
    assert [x.shape[1] for x, _ in char_batches(ids, 10, 3, drop_last=True)] == [3, 3, 3]
    with pytest.raises(UserError, match="too short"):
        next(char_batches(ids[:5], 10, 3))


def test_word_batches_are_contiguous_across_windows():
    n, T, B = 1003, 7, 4
    ids = np.arange(n, dtype=np.int32)
    windows = list(word_batches(ids, T, B))
    L = n // B
    xs = np.concatenate([x for x, _ in windows])  # (L-1, B)
    ys = np.concatenate([y for _, y in windows])
    assert xs.shape == (L - 1, B) and xs.dtype == np.int32
    assert np.array_equal(xs[:, 2], np.arange(2 * L, 3 * L - 1))  # column j continues itself
    assert np.array_equal(ys, xs + 1)
    assert all(x.shape == (T, B) for x, _ in windows[:-1])
    assert windows[-1][0].shape[0] == (L - 1) - T * (len(windows) - 1)


def test_mnist_batches_shuffle_all_rows_once_and_reproducibly():
    xs = np.arange(23 * 784, dtype=np.float32).reshape(23, 784)
    ys = np.arange(23, dtype=np.int64)
    batches = list(mnist_batches(xs, ys, 5, np.random.default_rng(0)))
    seen = np.concatenate([y for _, y in batches])
    assert sorted(seen) == list(range(23)) and not np.array_equal(seen, ys)
    assert all(np.array_equal(x[:, 0], y * 784) for x, y in batches)
    assert batches[0][0].shape == (5, 784) and batches[-1][0].shape == (3, 784)
    again = np.concatenate([y for _, y in mnist_batches(xs, ys, 5, np.random.default_rng(0))])
    assert np.array_equal(seen, again)
    assert np.array_equal(np.concatenate([y for _, y in mnist_batches(xs, ys, 5)]), ys)
