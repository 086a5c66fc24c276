"""Getting raw files into the data directory: HTTP(S) download or import of a local copy.

Download: each file is streamed into ``<name>.part`` (progress reported to a callback; the CLI
draws a bar with it on a terminal), checked (:func:`rbtw.data.store.match_variant`) and only then renamed to its final
name; the manifest is written last.  A transfer that is cut off (fewer bytes than
Content-Length, or a network error) raises a UserError and leaves the ``.part`` file; a rerun
*resumes* it with an HTTP ``Range: bytes=N-`` request, or restarts from zero when the server
answers 200 instead of 206.  A copy that fails its check is deleted, so a bad file never
looks complete.

The base URL can be replaced by a mirror (``--mirror`` or ``$RBTW_MIRROR``); a mirror serves
``<mirror>/<source>/<canonical file name>`` (e.g. ``<mirror>/ptb/ptb.train.txt``).

Import: a local file or directory is copied into the cache under a temporary name, checked
like a download, then renamed.  It may also be an unpacked form (raw IDX files, the unzipped
``text8``), or, for text8, a smaller fragment that is recorded as such.
"""

import contextlib
import http.client
import os
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from rbtw.version import __version__
from rbtw.errors import UserError
from rbtw.data.registry import DATASETS, FRAGMENT, SOURCES
from rbtw.data.store import (MANIFEST, file_sha256, match_variant, packing_of, read_manifest,
                             source_dir, write_manifest)

ENV_MIRROR = "RBTW_MIRROR"
TIMEOUT = 60  # seconds without data before a transfer is given up
_CHUNK = 1 << 16


def source_of(dataset):
    """The source behind a data set name, or a UserError for unknown / embedded names."""
    if dataset not in DATASETS:
        raise UserError(f"unknown data set {dataset!r} (choose from: {', '.join(DATASETS)})")
    source = DATASETS[dataset].source
    if source is None:
        raise UserError(f"data set {dataset!r} is embedded in the repository: nothing to fetch")
    return SOURCES[source]


def file_url(source, raw, mirror=None):
    """The URL of a raw file: canonical, or ``<mirror>/<source>/<name>``."""
    mirror = mirror or os.environ.get(ENV_MIRROR)
    if mirror:
        return f"{mirror.rstrip('/')}/{source.name}/{raw.name}"
    return raw.url


def download(dataset, data_dir=None, mirror=None, progress=None, echo=None):
    """Fetch, check and store the raw files of ``dataset``; return the source directory.

    ``progress(label, done, total)`` is called as bytes arrive (total None when the server does
    not say); ``echo(line)`` with one line per file stored.
    """
    source = source_of(dataset)
    sdir = source_dir(data_dir, source.name)
    with _removed_if_left_empty(sdir):
        old = _forget(sdir)
        entries = {}
        for raw in source.files:
            entries[raw.name] = _download_file(source, raw, sdir, mirror, progress)
            _say(echo, raw.name, entries[raw.name])
        write_manifest(sdir, source.name, entries)
    _drop_replaced(sdir, old, entries)
    return sdir


def _download_file(source, raw, sdir, mirror, progress):
    dest = sdir / raw.name
    if dest.is_file():
        try:
            entry = match_variant(raw, dest, packing_of(raw.name), importing=False)
            return _stored(entry, dest, "cache")
        except UserError:
            dest.unlink()  # not a good copy: fetch it again
    url = file_url(source, raw, mirror)
    part = sdir / (raw.name + ".part")
    resumed = part.exists()
    try:
        entry = _fetch_checked(raw, url, part, progress)
    except UserError:
        if not resumed:
            raise
        entry = _fetch_checked(raw, url, part, progress)  # the old part was bad: start afresh
    os.replace(part, dest)
    return _stored(entry, dest, url)


def _fetch_checked(raw, url, part, progress):
    """Fetch into ``part`` and check it; a copy that fails its check is deleted."""
    fetch(url, part, label=raw.name, progress=progress)
    try:
        return match_variant(raw, part, packing_of(raw.name), importing=False)
    except UserError:
        part.unlink(missing_ok=True)
        raise


def _stored(entry, path, origin):
    """The manifest entry of a checked file stored at ``path``: what it matched, and the size
    and sha256 of its bytes as stored, which every load checks (rbtw.data.store.check_stored)."""
    return dict(entry, stored=path.name, bytes=path.stat().st_size, file_sha256=file_sha256(path),
                origin=str(origin))


def fetch(url, part, label="", progress=None):
    """Bring ``part`` up to the full resource at ``url``, resuming it if it already exists."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"rbtw/{__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            return  # nothing left to send: the part is whole, its check decides
        raise UserError(f"download of {url} failed: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise UserError(f"cannot download {url}: {getattr(e, 'reason', e)}") from None
    with resp:
        start = have if resp.status == 206 and _range_start(resp) == have else 0
        length = resp.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        _stream(resp, part, start, total, url, label, progress)


def _range_start(resp):
    m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
    return int(m.group(1)) if m else None


def _stream(resp, part, start, total, url, label, progress):
    """Copy the response body into ``part`` from byte ``start``; raise if it ends early."""
    got = start
    tell = progress or (lambda label, done, total: None)
    with open(part, "r+b" if start else "wb") as f:
        f.seek(start)
        f.truncate()
        tell(label, got, total)
        try:
            for block in iter(lambda: resp.read(_CHUNK), b""):
                f.write(block)
                got += len(block)
                tell(label, got, total)
        except (http.client.HTTPException, OSError) as e:
            raise _cut_off(url, got, total, e) from None
    if total is not None and got != total:
        raise _cut_off(url, got, total, "connection closed")


def _cut_off(url, got, total, why):
    of = f" of {total:,}" if total is not None else ""
    return UserError(f"download of {url} was cut off after {got:,}{of} bytes ({why}); "
                     "the partial file is kept as .part: run the command again to resume")


def import_path(dataset, path, data_dir=None, echo=None):
    """Copy a local copy of ``dataset``'s raw files into the cache, checked like a download."""
    source = source_of(dataset)
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if path.is_file() and len(source.files) > 1:
        raise UserError(f"{dataset}: give the directory holding {_names(source)}")
    local = {raw.name: _find_local(raw, path) for raw in source.files}  # before any mkdir
    sdir = source_dir(data_dir, source.name)
    staged = {}
    with _removed_if_left_empty(sdir):
        sdir.mkdir(parents=True, exist_ok=True)
        try:
            for raw in source.files:   # copy and check every file before touching the cache
                staged[raw.name] = _stage_file(raw, local[raw.name], sdir)
            old = _forget(sdir)
            entries = {}
            for raw in source.files:
                tmp, entry, copied_from = staged.pop(raw.name)
                dest = sdir / _stored_name(raw, packing_of(copied_from.name), entry)
                os.replace(tmp, dest)
                entries[raw.name] = _stored(entry, dest, copied_from.resolve())
                _say(echo, raw.name, entries[raw.name])
            write_manifest(sdir, source.name, entries)
        finally:
            for tmp, _, _ in staged.values():
                tmp.unlink(missing_ok=True)
    _drop_replaced(sdir, old, entries)
    return sdir


def _names(source):
    return ", ".join(r.name for r in source.files)


def _find_local(raw, path):
    """The local file for ``raw``: ``path`` itself, or its canonical / unpacked name inside it."""
    if path.is_file():
        return path
    names = list(dict.fromkeys((raw.name, raw.content_name, raw.content_name + ".gz")))
    for name in names:
        if (path / name).is_file():
            return path / name
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    raise UserError(f"{path}: no {listed} in this directory")


def _stage_file(raw, local, sdir):
    """Copy under a temporary name and check the copy: (temporary path, entry, local path).

    A copy that fails its check is removed; the cache's files and manifest are not touched.
    """
    packing = packing_of(local.name)
    tmp = sdir / f".{raw.name}.import.tmp"
    try:
        shutil.copyfile(local, tmp)
        entry = match_variant(raw, tmp, packing, importing=True)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, entry, local


def _stored_name(raw, packing, entry):
    """Cache name: canonical when packed the canonical way, else the content name (+ .gz/.zip)."""
    if packing == packing_of(raw.name) and entry["status"] != FRAGMENT:
        return raw.name
    suffix = {"gzip": ".gz", "zip": ".zip", "raw": ""}[packing]
    middle = ".fragment" if entry["status"] == FRAGMENT else ""
    return raw.content_name + middle + suffix


@contextlib.contextmanager
def _removed_if_left_empty(sdir):
    """The directories this call creates -- a data set's directory, and the data directory and
    its parents when they did not exist either -- are removed again, deepest first, if the call
    fails before anything is stored in them (an unreachable mirror, a wrong local file), so a
    failed command leaves no trace; a partial download (``.part``) stays, to be resumed."""
    created = []
    d = Path(os.path.abspath(sdir))
    while not d.exists() and not d.is_symlink() and d.parent != d:
        created.append(d)
        d = d.parent
    try:
        yield
    except BaseException:
        for d in created:
            try:
                d.rmdir()             # only when empty
            except OSError:
                break
        raise


def _forget(sdir):
    """Remove the manifest first, so an interrupted run leaves the source 'incomplete'.

    Returns the old manifest (None if absent or unreadable) to tidy up after success.
    """
    sdir.mkdir(parents=True, exist_ok=True)
    try:
        old = read_manifest(sdir)
    except UserError:
        old = None
    (sdir / MANIFEST).unlink(missing_ok=True)
    return old


def _drop_replaced(sdir, old, entries):
    """Delete stored files of a previous import that the new manifest no longer lists."""
    keep = {e["stored"] for e in entries.values()}
    for e in (old or {}).get("files", {}).values():
        if e.get("stored") not in keep:
            (sdir / e["stored"]).unlink(missing_ok=True)


def _say(echo, name, entry):
    if echo is not None:
        echo(f"{name}: {entry['status']} ({entry['variant']}, {entry['content_bytes']:,} bytes, "
             f"sha256 {entry['sha256'][:16]}...)")
