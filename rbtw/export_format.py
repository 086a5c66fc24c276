"""The packed export file: what the packed engine (rbtw.infer) and the emulator (rbtw.accel) read.

An export holds a manifest (a dict) and named arrays: bit-packed weight matrices, per-step BN
tables, the initial state and the full-precision output layer (rbtw.export builds them from a
checkpoint).  Nothing here imports training code.

File layout (little-endian):

    8 bytes    magic b"RBTWPACK"
    4 bytes    u32 length L of the manifest
    32 bytes   sha256 of the manifest
    L bytes    manifest, UTF-8 JSON
    ...        zero padding to a multiple of 64, then each array's bytes at its offset
               (64-byte aligned, relative to the start of the data section)

The manifest holds the format name and version, the model spec, the vocabulary, the sha256 of
the whole data section, and for each array its dtype, shape, offset, size and sha256; for each
weight matrix its kind, shape and α.  Loading checks the magic, the manifest's hash, the version,
the file size, that the padding after the manifest is zero, every array's hash and the data
section's hash: no byte goes unchecked.
"""

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rbtw.errors import UserError
from rbtw.fileio import atomic_open
from rbtw.kernels.packing import PackedMatrix

MAGIC = b"RBTWPACK"
FORMAT = "rbtw-packed"
VERSION = 1
ALIGN = 64
_HEADER = struct.Struct("<8sI32s")


@dataclass
class Export:
    """An export in memory: the manifest (a dict) and named arrays."""

    manifest: dict
    arrays: dict

    @property
    def spec(self):
        return self.manifest["model"]

    def matrix(self, name):
        """A weight matrix as a PackedMatrix (binary/ternary) or a float32 (G, K) array (dense)."""
        info = self.manifest["matrices"][name]
        if info["kind"] == "dense":
            return self.arrays[name]
        return PackedMatrix(info["kind"], info["rows"], info["cols"], self.arrays[name])

    def alpha(self, name):
        return self.manifest["matrices"][name]["alpha"]


# ---------------------------------------------------------------------------------------------
# file format


def _padded(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


def write_export(path, export):
    """Write ``export`` to ``path`` atomically; returns the file size in bytes."""
    layout, offset = {}, 0
    for name, arr in export.arrays.items():
        arr = np.ascontiguousarray(arr)
        layout[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape), "offset": offset,
                        "nbytes": arr.nbytes, "sha256": hashlib.sha256(arr.tobytes()).hexdigest()}
        offset = _padded(offset + arr.nbytes)
    data = bytearray(offset)
    for name, arr in export.arrays.items():
        start = layout[name]["offset"]
        data[start:start + layout[name]["nbytes"]] = np.ascontiguousarray(arr).tobytes()
    manifest = dict(export.manifest, arrays=layout, data_bytes=offset,
                    data_sha256=hashlib.sha256(data).hexdigest())
    text = json.dumps(manifest).encode("utf-8")
    head = _HEADER.pack(MAGIC, len(text), hashlib.sha256(text).digest()) + text
    head += b"\0" * (_padded(len(head)) - len(head))
    with atomic_open(path, "wb") as f:
        f.write(head)
        f.write(data)
    return len(head) + offset


def is_export(path):
    """True if the file starts with the export magic."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def read_export(path):
    """Load and verify an export; any damage gives a one-line UserError."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such export file") from None
    if len(blob) < _HEADER.size or blob[:len(MAGIC)] != MAGIC:
        raise UserError(f"{path} is not an rbtw packed export")
    _, length, digest = _HEADER.unpack_from(blob)
    text = blob[_HEADER.size:_HEADER.size + length]
    if len(text) != length or hashlib.sha256(text).digest() != digest:
        raise UserError(f"{path} is damaged: its manifest does not match its checksum")
    manifest = json.loads(text.decode("utf-8"))
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise UserError(f"{path} has export format {manifest.get('format')} version {manifest.get('version')}; "
                        f"this rbtw reads {FORMAT} version {VERSION}")
    start = _padded(_HEADER.size + length)
    if any(blob[_HEADER.size + length:start]):
        raise UserError(f"{path} is damaged: the padding after its manifest is not zero")
    if len(blob) != start + manifest["data_bytes"]:
        raise UserError(f"{path} is truncated or has trailing bytes: {len(blob):,} bytes, "
                        f"expected {start + manifest['data_bytes']:,}")
    arrays = {}
    data_ok = hashlib.sha256(memoryview(blob)[start:]).hexdigest() == manifest.pop("data_sha256")
    for name, info in manifest.pop("arrays").items():
        raw = blob[start + info["offset"]:start + info["offset"] + info["nbytes"]]
        if hashlib.sha256(raw).hexdigest() != info["sha256"]:
            raise UserError(f"{path} is damaged: array {name} does not match its checksum")
        arrays[name] = np.frombuffer(raw, dtype=np.dtype(info["dtype"])).reshape(info["shape"]).copy()
    if not data_ok:  # every array matched: the damage is in the padding between them
        raise UserError(f"{path} is damaged: its data section does not match its checksum")
    manifest.pop("data_bytes")
    return Export(manifest, arrays)


def size_breakdown(export):
    """Bytes by part: packed weight matrices, BN tables, output layer (and embedding), initial
    state (h0, c0)."""
    out = {"weights": 0, "bn_tables": 0, "output": 0, "state": 0}
    for name, arr in export.arrays.items():
        if name in export.manifest["matrices"]:
            out["weights"] += arr.nbytes
        elif name.startswith("rnn") and ("scale" in name or "shift" in name):
            out["bn_tables"] += arr.nbytes
        elif name.startswith("rnn"):
            out["state"] += arr.nbytes
        else:
            out["output"] += arr.nbytes
    return out


def table_rows(export):
    """Rows of the BN tables (T_max per step, K + 1 with shared tables, 1 without BN)."""
    return export.arrays["rnn0.scale_h"].shape[0]


def whole_model_bytes(export, weight_bits):
    """Bytes of the whole model with its recurrent weights at ``weight_bits`` bits each (rows
    unpadded) and every other part as this export holds it: tables, output layer, h0/c0."""
    parts = size_breakdown(export)
    n = sum(m["rows"] * m["cols"] for m in export.manifest["matrices"].values())
    return n * weight_bits / 8 + parts["bn_tables"] + parts["output"] + parts["state"]
