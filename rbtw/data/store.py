"""The local data directory: verified raw files and the manifest that vouches for them.

Layout (``<dir>`` from :func:`resolve_data_dir`)::

    <dir>/<source>/<raw file>            verified copies (content as downloaded or imported)
    <dir>/<source>/<raw file>.part       an unfinished download (never read as data)
    <dir>/<source>/manifest.json         written last, atomically: what was verified, how
    <dir>/<source>/prepared/<set>.npz    id arrays train/valid/test (see rbtw.data.corpus)
    <dir>/<source>/prepared/<set>.vocab.json

A source counts as present only when its manifest exists and every file it lists is still
what was stored: the recorded size, and the recorded sha256 of the stored bytes
(``file_sha256``; a manifest written before that was recorded: the sha256 of the content).
Every load checks this (:func:`present_files`), and so does ``rbtw data list``: a file changed
after it was imported or downloaded -- one byte, at any place, even with the size kept -- is
refused in one line that names it and says how to get it again, whatever the registry says its
copy is (verified, size-checked or fragment: the manifest vouches for what was stored, the
status for how far that is known to be the canonical corpus).  Hashing the stored files once
per load costs 0.2-0.4 s per 100 MB.

Checks against the registry (:func:`match_variant`) hash the *unpacked* content: ``.gz`` is
gunzipped and the named member of a ``.zip`` read, so recompressed copies of the same data are
accepted.
"""

import contextlib
import gzip
import hashlib
import json
import os
import zipfile
import zlib
from pathlib import Path

from rbtw.errors import UserError, is_whole
from rbtw.fileio import atomic_open
from rbtw.data.registry import DATASETS, FRAGMENT, SIZE_CHECKED, SOURCES, VERIFIED

ENV_DATA = "RBTW_DATA"
DEFAULT_DATA_DIR = "~/.cache/rbtw"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
_CHUNK = 1 << 20
_STRENGTH = {FRAGMENT: 0, SIZE_CHECKED: 1, VERIFIED: 2}


def resolve_data_dir(data_dir=None):
    """The cache directory: ``data_dir`` if given, else ``$RBTW_DATA``, else ``~/.cache/rbtw``."""
    chosen = data_dir or os.environ.get(ENV_DATA) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser()


def source_dir(data_dir, source):
    """Directory holding one source's raw files."""
    return resolve_data_dir(data_dir) / source


def packing_of(filename):
    """How content is wrapped in a file, from its name: ``gzip``, ``zip`` or ``raw``."""
    name = str(filename)
    if name.endswith(".gz"):
        return "gzip"
    if name.endswith(".zip"):
        return "zip"
    return "raw"


@contextlib.contextmanager
def open_content(path, packing="raw", member=None):
    """Yield a binary stream of the content of ``path`` (gunzipped / unzipped as needed)."""
    try:
        if packing == "gzip":
            with gzip.open(path, "rb") as f:
                yield f
        elif packing == "zip":
            with _zip_member_stream(path, member) as f:
                yield f
        else:
            with open(path, "rb") as f:
                yield f
    except (zipfile.BadZipFile, gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise UserError(f"{path}: corrupt {packing} file ({e})") from None


@contextlib.contextmanager
def _zip_member_stream(path, member):
    """The stream of one member of the zip file ``path``.  What zipfile raises while it reads
    the member list and opens the member (BadZipFile, but for damaged fields also OSError from a
    seek, RuntimeError for an "encrypted" flag, NotImplementedError for an unknown method) is
    a one-line error; CRC and decompression errors while reading are the caller's."""
    try:
        z = zipfile.ZipFile(path)
    except Exception as e:  # any failure to parse the member list is damage
        raise UserError(f"{path}: corrupt zip file ({type(e).__name__}: {e})") from None
    with z:
        name = _zip_member(z, path, member)
        try:
            f = z.open(name)
        except Exception as e:  # as above, for the member's local header
            raise UserError(f"{path}: corrupt zip file ({type(e).__name__}: {e})") from None
        with f:
            yield f


def _zip_member(z, path, member):
    names = [n for n in z.namelist() if not n.endswith("/")]
    if member in names:
        return member
    if len(names) == 1:
        return names[0]
    raise UserError(f"{path}: zip file has no member {member!r} (it has {len(names)} files)")


def read_content(path, packing="raw", member=None):
    """All content bytes of a raw file."""
    with open_content(path, packing, member) as f:
        return f.read()


def read_checked(path, entry, member=None):
    """All content bytes of the stored file ``path`` (packed as its name says), if they are the
    content its manifest ``entry`` vouches for (sha256), else a one-line UserError: a file
    changed after its check is never read as if it had not."""
    data = read_content(path, packing_of(path.name), member)
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise UserError(f"{path}: its content changed while it was read (sha256 differs from "
                        "the one recorded when it was stored); run the command again")
    return data


def digest(path, packing="raw", member=None):
    """Size, sha256 and md5 of the content of ``path``: one pass, constant memory."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(), 0
    with open_content(path, packing, member) as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            sha.update(block)
            md5.update(block)
            size += len(block)
    return {"size": size, "sha256": sha.hexdigest(), "md5": md5.hexdigest()}


def file_sha256(path):
    """sha256 of the bytes of ``path`` as stored (packed or not): one pass, constant memory."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            sha.update(block)
    return sha.hexdigest()


def content_sha256(path, packing="raw", member=None):
    """sha256 of the (unpacked) content of ``path``."""
    sha = hashlib.sha256()
    with open_content(path, packing, member) as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            sha.update(block)
    return sha.hexdigest()


def normalise_newlines(data):
    """Text bytes without a leading UTF-8 byte-order mark, CRLF turned into LF, and no
    whitespace at the very end (Karpathy's CRLF War and Peace -> its known LF text)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data.replace(b"\r\n", b"\n").rstrip(b" \t\r\n")


def match_variant(raw, path, packing, *, importing):
    """Check a copy of ``raw`` at ``path``; return the manifest entry, or raise UserError.

    Variants with a known size are tried first; a size match with a wrong sha256 is a
    checksum mismatch.  Size-less variants (fragments) come last and only on import.
    """
    d = digest(path, packing, raw.member)
    sized = [v for v in raw.variants if v.size == d["size"] and (importing or not v.import_only)]
    for v in sized:
        if v.sha256 is not None and v.sha256 == d["sha256"]:
            return _entry(v, v.status, d)
    for v in sized:
        if v.sha256 is None and _content_checks(v, path, packing, raw):
            return _entry(v, VERIFIED if v.text_sha256 else v.status, d)
    if sized and all(v.sha256 is None for v in sized):
        raise UserError(f"{raw.name}: the content is not the expected text (sha256 {d['sha256'][:16]}...): "
                        "the copy is corrupt or not the canonical file")
    if sized:
        want = sized[0].sha256
        raise UserError(f"{raw.name}: checksum mismatch (sha256 {d['sha256'][:16]}..., expected "
                        f"{want[:16]}...): the copy is corrupt or not the canonical file")
    for v in raw.variants:
        allowed = importing or not v.import_only
        if v.size is None and allowed and _fits_alphabet(v, path, packing, raw):
            return _entry(v, v.status, d)
    raise UserError(f"{raw.name}: unexpected size {d['size']:,} bytes (expected "
                    f"{_expected_sizes(raw, importing)})")


def _content_checks(v, path, packing, raw):
    """Checks of a variant without a file checksum: its normalised text's sha256 when known,
    else that the content is UTF-8 text without NUL bytes (random bytes of the right size fail).
    """
    data = read_content(path, packing, raw.member)
    if v.text_sha256 is not None:
        return hashlib.sha256(normalise_newlines(data)).hexdigest() == v.text_sha256
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _fits_alphabet(v, path, packing, raw):
    data = read_content(path, packing, raw.member)
    return bool(data) and v.alphabet is not None and not data.translate(None, v.alphabet)


def _expected_sizes(raw, importing):
    sizes = sorted({v.size for v in raw.variants if v.size is not None})
    text = " or ".join(f"{s:,}" for s in sizes)
    if importing and any(v.size is None for v in raw.variants):
        text += ", or a fragment of a-z and space only"
    return text


def _entry(variant, status, d):
    return {"status": status, "variant": variant.label, "content_bytes": d["size"],
            "sha256": d["sha256"], "md5": d["md5"]}


def weakest(statuses):
    """The least trustworthy status among files: fragment < size-checked < verified."""
    return min(statuses, key=lambda s: _STRENGTH[s])


def read_manifest(sdir):
    """The manifest of a source directory, or None when there is none."""
    path = Path(sdir) / MANIFEST
    if not path.exists():
        return None
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: corrupt manifest ({e}); run `rbtw data download` again") from None
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT or "files" not in m:
        raise UserError(f"{path}: unknown manifest format; run `rbtw data download` again")
    problem = _manifest_problem(m)
    if problem:
        raise UserError(f"{path}: corrupt manifest ({problem}); run `rbtw data download` again")
    return m


def _manifest_problem(m):
    """What is wrong with a manifest that parses (None: nothing).  Its files are read, hashed
    and, when an import replaces them, deleted by their "stored" names: each must be a plain
    file name inside the source directory."""
    if not _known_status(m.get("status")) or not isinstance(m["files"], dict):
        return "its status or file list is invalid"
    for name, e in m["files"].items():
        if not isinstance(e, dict):
            return f"the entry of {name!r} is not an object"
        stored = e.get("stored")
        if not isinstance(stored, str) or stored in ("", ".", "..") or "/" in stored or "\\" in stored \
                or "\0" in stored:
            return f"{name!r} is stored under {stored!r}, not a file name in this directory"
        if not all(is_whole(e.get(k)) for k in ("bytes", "content_bytes")):
            return f"the sizes of {name!r} are not whole numbers"
        if not _is_sha256(e.get("sha256")):
            return f"the sha256 of {name!r} is not a sha256"
        if "file_sha256" in e and not _is_sha256(e["file_sha256"]):
            return f"the file_sha256 of {name!r} is not a sha256"
        if not _known_status(e.get("status")) or not isinstance(e.get("variant"), str):
            return f"the status or variant of {name!r} is invalid"
    return None


def _known_status(value):
    return isinstance(value, str) and value in _STRENGTH


def _is_sha256(value):
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def write_manifest(sdir, source, entries):
    """Record verified files (atomically, after they are all in place)."""
    m = {"format": MANIFEST_FORMAT, "source": source,
         "status": weakest([e["status"] for e in entries.values()]), "files": entries}
    with atomic_open(Path(sdir) / MANIFEST, "w") as f:
        json.dump(m, f, indent=1, sort_keys=True)
    return m


def how_to_get(dataset, source):
    """The one-line hint telling a user how to obtain a missing data set."""
    url = SOURCES[source].files[0].url
    return (f"run `rbtw data download {dataset}` (fetches {url.rsplit('/', 1)[0]}/...) "
            f"or `rbtw data import {dataset} PATH`")


def source_state(data_dir, source, dataset=None):
    """``(state, manifest)``: state is missing, incomplete, changed (the manifest lists other
    files than the registry) or the manifest's status.

    The files of a manifest are checked (:func:`check_stored`): one that is missing, or whose
    size or bytes differ from what was stored, raises a one-line UserError naming it and saying
    how to get ``dataset`` (default: the first data set of ``source``) again.
    """
    sdir = source_dir(data_dir, source)
    m = read_manifest(sdir)
    if m is None:
        busy = sdir.is_dir() and any(p.name != "prepared" for p in sdir.iterdir())
        return ("incomplete" if busy else "missing"), None
    if set(m["files"]) != {raw.name for raw in SOURCES[source].files}:
        return "changed", m
    check_stored(sdir, source, m, dataset)
    return m["status"], m


def check_stored(sdir, source, m, dataset=None):
    """Raise a one-line UserError unless every file of the manifest ``m`` is what was stored:
    its size first (no reading), then the sha256 of its bytes (``file_sha256``), or for a
    manifest that does not record that, the sha256 of its content."""
    if dataset is None:
        dataset = next(name for name, spec in DATASETS.items() if spec.source == source)
    fix = f"{how_to_get(dataset, source)} again"
    for entry in m["files"].values():
        p = sdir / entry["stored"]
        if not p.is_file():
            raise UserError(f"{p}: missing, though {MANIFEST} lists it: {fix}")
        size = p.stat().st_size
        if size != entry["bytes"]:
            raise UserError(f"{p}: {size:,} bytes, {entry['bytes']:,} when it was stored: the file "
                            f"changed since it was checked; {fix}")
    members = {raw.name: raw.member for raw in SOURCES[source].files}
    for name, entry in m["files"].items():
        p = sdir / entry["stored"]
        try:
            if "file_sha256" in entry:
                got, want = file_sha256(p), entry["file_sha256"]
            else:
                got, want = content_sha256(p, packing_of(p.name), members[name]), entry["sha256"]
        except OSError as e:
            raise UserError(f"{p}: cannot read it ({e.strerror or e}); {fix}") from None
        except UserError as e:          # a packed file that no longer unpacks
            raise UserError(f"{e}: the file changed since it was checked; {fix}") from None
        if got != want:
            raise UserError(f"{p}: checksum mismatch (sha256 {got[:16]}..., {want[:16]}... when it "
                            f"was stored): the file changed since it was checked; {fix}")


def present_files(data_dir, dataset, source):
    """Map raw file name -> (path, manifest entry) of a present source whose files are exactly
    what was stored, or raise UserError."""
    state, m = source_state(data_dir, source, dataset)
    sdir = source_dir(data_dir, source)
    if state in ("missing", "incomplete"):
        raise UserError(f"data set {dataset!r} is not in {sdir} ({state}): "
                        f"{how_to_get(dataset, source)}")
    if state == "changed":
        raise UserError(f"data set {dataset!r} in {sdir} changed since it was checked: "
                        f"{how_to_get(dataset, source)}")
    return {name: (sdir / e["stored"], e) for name, e in m["files"].items()}
