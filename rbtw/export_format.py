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
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rbtw.errors import UserError, is_finite, is_whole
from rbtw.fileio import atomic_open
from rbtw.kinds import GATES, MODEL_KINDS
from rbtw.kernels.packing import KINDS as PACKED_KINDS
from rbtw.kernels.packing import PackedMatrix, words_per_row
from rbtw.quant import MODES as QUANT

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
    """True if the file starts with the export magic (a pipe or a device is never read)."""
    if not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def read_export(path):
    """Load and verify an export; any damage gives a one-line UserError."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise UserError(f"{path} is not an rbtw packed export (not a regular file)")
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
    try:
        manifest = json.loads(text.decode("utf-8"))
    except ValueError:                          # not UTF-8 (UnicodeDecodeError) or not JSON
        raise UserError(f"{path} is not a consistent rbtw export: its manifest is not UTF-8 JSON") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{path} is not a consistent rbtw export: its manifest is not an object")
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise UserError(f"{path} has export format {manifest.get('format')} version {manifest.get('version')}; "
                        f"this rbtw reads {FORMAT} version {VERSION}")
    problem = layout_problem(manifest)
    if problem:
        raise UserError(f"{path} is not a consistent rbtw export: {problem}")
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
    problem = model_problem(manifest, arrays)
    if problem:
        raise UserError(f"{path} is not a consistent rbtw export: {problem}")
    return Export(manifest, arrays)


# ---------------------------------------------------------------------------------------------
# what a manifest must hold (checked on reading, so that an engine never meets an inconsistent
# file: the manifest's checksum proves it unchanged, not that its writer was right)


def layout_problem(manifest):
    """What is wrong with the manifest's record of its arrays (None: nothing)."""
    arrays, data_bytes = manifest.get("arrays"), manifest.get("data_bytes")
    if not isinstance(arrays, dict) or not is_whole(data_bytes) or not isinstance(manifest.get("data_sha256"), str):
        return "it has no valid array layout (arrays, data_bytes, data_sha256)"
    for name, info in arrays.items():
        if not isinstance(info, dict) or not isinstance(info.get("sha256"), str) \
                or not isinstance(info.get("dtype"), str):
            return f"array {name!r} has no valid record"
        try:
            dtype = np.dtype(info.get("dtype"))
        except (TypeError, ValueError):
            return f"array {name!r} has an unknown dtype {info.get('dtype')!r}"
        shape, offset, nbytes = info.get("shape"), info.get("offset"), info.get("nbytes")
        if dtype.hasobject or not isinstance(shape, list) or not all(is_whole(n) for n in shape):
            return f"array {name!r} has an invalid dtype or shape"
        if not (is_whole(offset) and is_whole(nbytes)) or offset + nbytes > data_bytes:
            return f"array {name!r} lies outside the data section"
        if nbytes != int(np.prod(shape, dtype=object)) * dtype.itemsize:
            return f"array {name!r}: {nbytes} bytes cannot hold {dtype} {shape}"
    return None


def model_problem(manifest, arrays):
    """What is wrong with the model the manifest describes, or with its arrays against it
    (None: nothing).  The arrays must be exactly those the model needs, of their shapes."""
    spec = manifest.get("model")
    problem = _spec_problem(spec)
    if problem:
        return problem
    for field, kind in (("task", str), ("config", dict), ("matrices", dict), ("symbols", str)):
        if not isinstance(manifest.get(field), kind):
            return f"its {field} is missing or not a {kind.__name__}"
    vocab, K = manifest.get("vocab"), manifest.get("bn_steps")
    if vocab is not None and not (isinstance(vocab, list) and all(isinstance(v, str) for v in vocab)):
        return "its vocab is not a list of strings"
    if K is not None and not (is_whole(K, 1) and K < spec["t_max"]):
        return f"its bn_steps is {K!r}, not null or a whole number from 1 to t_max - 1"
    problem = _choice_problem(manifest.get("bn_choice")) or _calibration_problem(manifest.get("calibration"))
    if problem:
        return problem
    matrices, want = manifest["matrices"], expected_arrays(spec, K)
    if set(matrices) != {n for n in want if n.endswith(("W_x", "W_h"))}:
        return "its matrices are not the model's W_x and W_h of every layer"
    for name, (dtype, shape) in want.items():
        if name in matrices:
            problem = _matrix_problem(name, matrices[name], spec, shape)
            if problem:
                return problem
            dtype, shape = _stored_as(matrices[name], shape)
        if name not in arrays:
            return f"it lacks the array {name!r}"
        if arrays[name].dtype != dtype or arrays[name].shape != shape:
            return f"array {name!r} is {arrays[name].dtype} {arrays[name].shape}, the model needs {np.dtype(dtype)} {shape}"
    extra = sorted(set(arrays) - set(want))
    return f"it holds an array the model does not use: {extra[0]!r}" if extra else None


def _choice_problem(c):
    """What is wrong with the record of how the BN tables were chosen (rbtw.export), if any."""
    if c is None or (isinstance(c, dict) and c.get("how") == "exact"):
        return None
    if not isinstance(c, dict) or c.get("how") not in ("measured", "given", "unmeasured"):
        return "its bn_choice is not a record of how its BN tables were chosen"
    if c.get("cost") is None:
        return None if isinstance(c.get("reason"), str) else "its bn_choice has neither a cost nor a reason"
    if c.get("metric") not in ("bpc", "perplexity", "accuracy") or not is_whole(c.get("predictions")) \
            or not all(is_finite(c.get(k)) for k in ("value", "per_step", "cost", "tolerance")):
        return "its bn_choice's measurement is incomplete"
    return None


def _calibration_problem(report):
    """What is wrong with the record of a calibration (rbtw.calibrate), if any."""
    if report is None:
        return None
    ok = (isinstance(report, dict) and isinstance(report.get("metric"), str)
          and is_finite(report.get("uncalibrated")) and is_finite(report.get("calibrated"))
          and (report.get("threshold") is None or is_finite(report.get("threshold")))
          and isinstance(report.get("statistics"), bool) and is_whole(report.get("batches"))
          and isinstance(report.get("tried"), list)
          and all(isinstance(t, dict) and (t.get("threshold") is None or is_finite(t.get("threshold")))
                  for t in report["tried"]))
    return None if ok else "its calibration record is incomplete"


def _spec_problem(spec):
    if not isinstance(spec, dict):
        return "its model is not an object"
    if spec.get("kind") not in MODEL_KINDS or spec.get("cell") not in GATES or spec.get("quant") not in QUANT:
        return "its model's kind, cell or quant is unknown"
    for name in ("n_in", "n_out", "hidden", "layers", "t_max"):
        if not is_whole(spec.get(name), 1):
            return f"its model's {name} is not a whole number >= 1"
    if not is_whole(spec.get("emb", 0), 1 if spec["kind"] == "word" else 0) or not isinstance(spec.get("bn"), bool):
        return "its model's emb or bn is invalid"
    return None


def expected_arrays(spec, bn_steps):
    """{name: (dtype, shape)} of every array an export of ``spec`` holds; a weight matrix's entry
    is its logical (rows, cols) until _stored_as says how its kind stores it."""
    H, G, V = spec["hidden"], GATES[spec["cell"]] * spec["hidden"], spec["n_out"]
    rows = 1 if not spec["bn"] else spec["t_max"] if bn_steps is None else bn_steps + 1
    out = {}
    for k in range(spec["layers"]):
        X = H if k else spec["emb"] if spec["kind"] == "word" else spec["n_in"]
        p = f"rnn{k}."
        out.update({p + "W_x": ("f4", (G, X)), p + "W_h": ("f4", (G, H)),
                    p + "scale_h": ("f4", (rows, G)), p + "scale_x": ("f4", (rows, G)), p + "h0": ("f4", (H,))})
        if spec["cell"] == "lstm":
            out.update({p + "shift": ("f4", (rows, G)), p + "scale_c": ("f4", (rows, H)),
                        p + "shift_c": ("f4", (rows, H)), p + "c0": ("f4", (H,))})
        else:
            out.update({p + "shift_a": ("f4", (rows, G)), p + "shift_b": ("f4", (rows, G))})
    out.update({"out.W": ("f4", (H, V)), "out.b": ("f4", (V,))})
    if spec["kind"] == "word":
        out["emb.E"] = ("f4", (spec["n_in"], spec["emb"]))
    return out


def _matrix_problem(name, info, spec, shape):
    kind = "dense" if spec["quant"] == "none" else spec["quant"]
    if not isinstance(info, dict) or info.get("kind") != kind or [info.get("rows"), info.get("cols")] != list(shape):
        return f"matrix {name!r} is not the model's {kind} {shape[0]} x {shape[1]}"
    alpha = info.get("alpha")
    if not is_finite(alpha) or alpha <= 0:
        return f"matrix {name!r} has α {alpha!r}, not a positive number"
    return None


def _stored_as(info, shape):
    """(dtype, shape) of a weight matrix as the file holds it: float32 (G, K) dense, or uint64
    bit planes (P, G, words of K) packed."""
    if info["kind"] == "dense":
        return "f4", shape
    return "u8", (PACKED_KINDS[info["kind"]], shape[0], words_per_row(shape[1]))


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
