"""What ``rbtw data list`` shows: each data set, where it is, whether present and checked."""

from rbtw.data.corpus import check_prepared, default_text_path
from rbtw.data.registry import DATASETS, SOURCES
from rbtw.data.store import match_variant, packing_of, source_dir, source_state, weakest
from rbtw.errors import UserError


def dataset_rows(data_dir=None, recheck=False):
    """One dict per data set: name, status, where, note.  ``recheck`` re-hashes stored files."""
    rows, checked = [], {}
    for name, spec in DATASETS.items():
        if spec.source is None:
            path = default_text_path()
            status = "embedded" if path.is_file() else "missing"
            rows.append(dict(name=name, status=status, where=str(path), note=spec.description))
            continue
        if spec.source not in checked:
            checked[spec.source] = _state(data_dir, spec.source, recheck)
        status, note = checked[spec.source]
        rows.append(dict(name=name, status=status, where=str(source_dir(data_dir, spec.source)),
                         note=f"{spec.description}; {note}" if note else spec.description))
    return rows


def _state(data_dir, source, recheck):
    """(status, note) of a source; a fragment or size-checked status carries its reason."""
    try:
        state, manifest = source_state(data_dir, source)
        damaged = []
        if recheck and manifest is not None and state not in ("changed",):
            state = _recheck(data_dir, source, manifest)
            damaged = check_prepared(data_dir, source, manifest)
    except UserError as e:
        return "damaged", str(e)
    note = SOURCES[source].note if state in ("size-checked", "fragment", "missing") else ""
    if state == "fragment":
        size = sum(e["content_bytes"] for e in manifest["files"].values())
        note = f"fragment of {size:,} bytes, not the full corpus; splits 90/5/5 %"
    if damaged:
        note = (f"{note}; " if note else "") + \
            f"damaged prepared data of {', '.join(damaged)} removed (prepared again on next use)"
    return state, note


def _recheck(data_dir, source, manifest):
    """Status from hashing the stored files again; raises UserError when one is bad."""
    sdir = source_dir(data_dir, source)
    statuses = []
    for raw in SOURCES[source].files:
        e = manifest["files"][raw.name]
        path = sdir / e["stored"]
        fresh = match_variant(raw, path, packing_of(path.name), importing=True)
        if fresh["sha256"] != e["sha256"]:
            raise UserError(f"{path}: content changed since it was checked")
        statuses.append(fresh["status"])
    return weakest(statuses)
