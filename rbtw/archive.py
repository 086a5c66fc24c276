"""Named arrays in one file (NumPy's .npz: a zip of .npy members), written atomically and read
back verified.

Checkpoints and the prepared-corpus cache are such archives.  ``np.load`` alone does not verify
them: it checks a member's CRC-32 only when it reads that member to its end, so a damaged .npy
header that announces a smaller shape yields a smaller array without complaint, and some damaged
zip fields raise NotImplementedError or RuntimeError (an "encrypted" flag) rather than a
file-format error.  :func:`read_arrays` reads each member whole through ``zipfile`` (which checks
its CRC-32, and the member's name against its local header), then parses the .npy bytes itself and
requires the header's shape and dtype to account for every byte.  The zip's central directory
(its list of members) has no checksum, and a damaged one can silently list fewer members, so the
members' local records must also tile the file from its first byte to the central directory
without a gap (as ``np.savez`` writes them).  Any damage therefore raises :class:`DamagedArchive`
or returns the arrays exactly as written; tests/test_damaged_files.py checks that for every
single-bit change and every truncation.
"""

import io
import os
import math
import struct
import zipfile

import numpy as np

from rbtw.fileio import atomic_open


# a zip local file header: signature, version, flags, method, time, date, CRC-32, compressed
# size, size, name length, extra-field length (the sizes here may be 0xFFFFFFFF: zip64)
_LOCAL = struct.Struct("<4s5H3L2H")


class DamagedArchive(ValueError):
    """The file is not an intact archive of arrays; the message says why, in one line."""


def write_arrays(path, arrays):
    """Write ``{name: array}`` to ``path`` atomically (temporary name, then rename)."""
    with atomic_open(path, "wb") as f:
        np.savez(f, **{name: np.asarray(value) for name, value in arrays.items()})


def read_arrays(path, names=None):
    """``{name: array}`` from the archive at ``path``, every member (or just ``names``, each of
    which must be present) read whole and verified.  Raises FileNotFoundError for a missing file
    and DamagedArchive for anything that is not an intact archive (a pipe or a device is not
    read: it could block or never end)."""
    if os.path.exists(path) and not os.path.isfile(path):
        raise DamagedArchive("not a regular file")
    try:
        with zipfile.ZipFile(path) as z:
            _check_tiling(z)
            members = {m[:-len(".npy")]: m for m in z.namelist() if m.endswith(".npy")}
            if len(members) != len(z.namelist()):
                raise DamagedArchive("it holds members that are not arrays")
            wanted = members if names is None else names
            missing = [n for n in wanted if n not in members]
            if missing:
                raise DamagedArchive(f"it has no entry {missing[0]!r}")
            return {name: _parse_npy(z.read(members[name]), name) for name in wanted}
    except (FileNotFoundError, IsADirectoryError, PermissionError, DamagedArchive):
        raise
    except Exception as e:  # whatever zipfile or the .npy header parser raises on damaged bytes
        raise DamagedArchive(f"{type(e).__name__}: {_first_line(e)}") from None


def _check_tiling(z):
    """Each member's local record (header, name, extra field, data) starts where the one before
    it ends, the first at byte 0 and the last ending where the central directory starts."""
    end = 0
    for info in sorted(z.infolist(), key=lambda i: i.header_offset):
        if info.header_offset != end:
            raise DamagedArchive(f"its member list does not match its contents (at byte {end:,})")
        z.fp.seek(info.header_offset)
        header = z.fp.read(_LOCAL.size)
        if len(header) != _LOCAL.size or header[:4] != b"PK\x03\x04":
            raise DamagedArchive(f"member {info.filename!r} has no local header")
        name_length, extra_length = _LOCAL.unpack(header)[-2:]
        end = info.header_offset + _LOCAL.size + name_length + extra_length + info.compress_size
    if end != z.start_dir:
        raise DamagedArchive(f"its member list does not match its contents (at byte {end:,})")


def _parse_npy(blob, name):
    """The array held by one .npy member's bytes; its header must account for every byte."""
    f = io.BytesIO(blob)
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise DamagedArchive(f"entry {name!r} has .npy version {version}")
    if dtype.hasobject:
        raise DamagedArchive(f"entry {name!r} holds Python objects")
    count = math.prod(shape)
    if f.tell() + count * dtype.itemsize != len(blob):
        raise DamagedArchive(f"entry {name!r} has {len(blob) - f.tell():,} data bytes; "
                             f"its header says {count * dtype.itemsize:,}")
    flat = np.frombuffer(blob, dtype=dtype, count=count, offset=f.tell())
    return flat.reshape(shape, order="F" if fortran else "C").copy(order="K")


def _first_line(e):
    text = str(e).strip().splitlines()
    return text[0] if text else "unreadable"
