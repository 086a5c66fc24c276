"""Bit packing of binary / ternary integer weight matrices.

Dimension legend
    G   rows of Q (outputs, e.g. 4H gate rows)
    K   columns of Q (inputs)
    W   = ceil(K / 64), 64-bit words per packed row
    P   bit-planes: 1 (binary) or 2 (ternary)
    C   columns per kernel code: 5 (binary) or 3 (ternary)
    NC  = ceil(K / C), codes per row;  NW = ceil(NC / 6), 32-bit kernel words per row
    RB  = ceil(G / 16), blocks of 16 rows used by the kernels

Canonical layout (``PackedMatrix.planes``, uint64, shape (P, G, W))
    Bit j of word w of row r is column c = 64*w + j (least significant bit first), so the
    little-endian uint8 view of a row gives byte b = columns 8b..8b+7, and bit j of that byte
    is column 8b+j.  Bits of columns c >= K (row padding) are zero.

    binary   plane 0 "plus":  bit = 1  <=>  q = +1   (bit 0 means q = -1)
    ternary  plane 0 "plus":  bit = 1  <=>  q = +1
             plane 1 "minus": bit = 1  <=>  q = -1   (both bits 0 means q = 0;
                                                       both bits 1 is invalid)

    So   binary:  q = 2*plus - 1          ternary:  q = plus - minus
    and the packed size is G*W*8 bytes per plane: 1 bit (binary) or 2 bits (ternary) per
    weight, plus the row padding to 64 bits.

Kernel layout (derived from the planes by ``kernel_layout``; uint32, shape (RB, NW, 16))
    The kernels look weights up in 32-entry tables, so they read the weights of C columns
    as one 5-bit code:

    binary   C = 5:  code = sum_i plus_i * 2^i               (0..31)
    ternary  C = 3:  code = sum_i d_i * 3^i,  d = 0 for q = 0, 1 for +1, 2 for -1   (0..26)

    where i runs over columns C*j + i of code j (columns >= K count as q = -1 (binary,
    with x = 0 there) or 0 (ternary)).  Word w of a row holds codes 6w..6w+5 at bits
    5n..5n+4 (n = 0..5; bits 30, 31 zero), so 30 binary or 18 ternary columns a word:
    1.07 or 1.78 bits per weight.  Entry [rb, w, i] is word w of row 16*rb + i (rows >= G
    zero): one 64-byte load gives the same columns of 16 consecutive rows, one vector lane
    per output row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

KINDS = {"binary": 1, "ternary": 2}
ALPHABET = {"binary": (-1, 1), "ternary": (-1, 0, 1)}
ROW_BLOCK = 16   # output rows per SIMD lane group in the kernels
CODES_PER_WORD = 6
CODE_COLUMNS = {"binary": 5, "ternary": 3}


@dataclass(eq=False)
class PackedMatrix:
    """Integer weight matrix Q (G, K) with entries ±1 (binary) or -1/0/+1 (ternary), bit-packed.

    ``planes`` is uint64 (P, G, W); see the module docstring for the bit layout.  The kernel
    layout is derived on first use and cached (``kernel_layout``).
    """

    kind: str            # "binary" or "ternary"
    rows: int            # G
    cols: int            # K
    planes: np.ndarray   # uint64 (P, G, W)
    _layout: np.ndarray | None = field(default=None, init=False, repr=False)
    _flat: np.ndarray | None = field(default=None, init=False, repr=False)
    _paths: dict = field(default_factory=dict, init=False, repr=False)
    _dense_t: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be 'binary' or 'ternary', not {self.kind!r}")
        self.rows, self.cols = int(self.rows), int(self.cols)
        if self.rows < 0 or self.cols < 0:
            raise ValueError("rows and cols must be non-negative")
        shape = (KINDS[self.kind], self.rows, words_per_row(self.cols))
        planes = np.asarray(self.planes)
        if planes.dtype != np.uint64 or planes.shape != shape:
            raise ValueError(f"planes must be uint64 of shape {shape}, "
                             f"got {planes.dtype} {planes.shape}")
        self.planes = np.ascontiguousarray(planes)

    @property
    def n_planes(self) -> int:
        return KINDS[self.kind]

    @property
    def nbytes(self) -> int:
        """Bytes of packed weights (all planes, row padding included)."""
        return int(self.planes.nbytes)

    def validate(self) -> None:
        """Raise ValueError if padding bits are set or a ternary weight has both bits set."""
        if np.any(self.planes & ~_row_mask(self.cols)):
            raise ValueError("padding bits (columns >= cols) must be zero")
        if self.kind == "ternary" and np.any(self.planes[0] & self.planes[1]):
            raise ValueError("ternary weight with both plus and minus bits set")

    def kernel_layout(self) -> np.ndarray:
        """uint32 (RB, NW, 16): code word w of 16 consecutive rows side by side (cached)."""
        if self._layout is None:
            self._layout = _to_kernel_layout(unpack(self), self.kind)
        return self._layout

    def kernel_words(self) -> np.ndarray:
        """The kernel layout flattened to 1-D (a view, cached), as the kernels take it."""
        if self._flat is None:
            self._flat = self.kernel_layout().reshape(-1)
        return self._flat


    def path_layout(self, path: str) -> tuple[np.ndarray, int]:
        """(1-D kernel words, words or bytes per row) of the ``path`` kernels (cached).

        avx512: ``kernel_words`` (5-bit codes, 16-row blocks); avx2: ``avx2_layout``;
        portable: ``portable_layout``'s bytes viewed as uint32 (bytes per row returned).
        """
        if path not in self._paths:
            if path == "avx512":
                self._paths[path] = (self.kernel_words(), self.kernel_layout().shape[1])
            elif path == "avx2":
                lay = avx2_layout(unpack(self), self.kind)
                self._paths[path] = (lay.reshape(-1), lay.shape[1])
            elif path == "portable":
                lay = portable_layout(self)                   # RB·NB·8 bytes: whole words
                self._paths[path] = (lay.reshape(-1).view(np.uint32), lay.shape[1])
            else:
                raise ValueError(f"unknown kernel path {path!r}")
        return self._paths[path]


def words_per_row(cols: int) -> int:
    return (cols + 63) // 64


def _row_mask(cols: int) -> np.ndarray:
    """uint64 (W,): ones at the real columns, zeros at the padding."""
    bits = np.zeros(64 * words_per_row(cols), dtype=bool)
    bits[:cols] = True
    return np.packbits(bits, bitorder="little").view("<u8").astype(np.uint64)


def _pack_bits(bits: np.ndarray) -> np.ndarray:
    """bool (G, K) -> uint64 (G, W), LSB first, zero padding."""
    g, k = bits.shape
    padded = np.zeros((g, 64 * words_per_row(k)), dtype=bool)
    padded[:, :k] = bits
    return np.packbits(padded, axis=1, bitorder="little").view("<u8").astype(np.uint64)


def _unpack_bits(words: np.ndarray, cols: int) -> np.ndarray:
    """uint64 (..., W) -> uint8 0/1 (..., cols)."""
    as_bytes = np.ascontiguousarray(words, dtype="<u8").view(np.uint8)
    return np.unpackbits(as_bytes, axis=-1, bitorder="little")[..., :cols]


def pack(q, kind: str) -> PackedMatrix:
    """Pack an integer matrix q (G, K) with values in the alphabet of ``kind``.

    Raises ValueError for another kind, a non-2-D array or any value outside the alphabet
    ({-1, +1} binary, {-1, 0, +1} ternary).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be 'binary' or 'ternary', not {kind!r}")
    q = np.asarray(q)
    if q.ndim != 2:
        raise ValueError(f"q must be 2-D (rows, cols), got shape {q.shape}")
    if q.dtype.kind not in "iuf":
        raise ValueError(f"q must hold integers, got dtype {q.dtype}")
    if not np.isin(q, ALPHABET[kind]).all():
        bad = q[~np.isin(q, ALPHABET[kind])].ravel()[0]
        raise ValueError(f"{kind} weights must be in {ALPHABET[kind]}, found {bad!r}")
    if kind == "binary":
        planes = _pack_bits(q > 0)[None]
    else:
        planes = np.stack([_pack_bits(q > 0), _pack_bits(q < 0)])
    return PackedMatrix(kind, q.shape[0], q.shape[1], planes)


def unpack(pm: PackedMatrix) -> np.ndarray:
    """int8 (G, K): the integer matrix that ``pm`` holds."""
    bits = _unpack_bits(pm.planes, pm.cols).astype(np.int8)   # (P, G, K)
    if pm.kind == "binary":
        return 2 * bits[0] - 1
    return bits[0] - bits[1]


def _to_kernel_layout(q: np.ndarray, kind: str) -> np.ndarray:
    """int8 (G, K) -> uint32 (RB, NW, 16), see the module docstring."""
    g, k = q.shape
    c = CODE_COLUMNS[kind]
    nc = -(-k // c)
    nw = -(-nc // CODES_PER_WORD)
    rb = -(-g // ROW_BLOCK)
    if kind == "binary":                         # digit = plus bit, base 2
        digits, base = (q > 0).astype(np.uint32), 2
    else:                                        # digit 0, 1, 2 for q = 0, +1, -1
        digits, base = np.where(q < 0, 2, q).astype(np.uint32), 3
    padded = np.zeros((rb * ROW_BLOCK, nw * CODES_PER_WORD * c), dtype=np.uint32)
    padded[:g, :k] = digits
    codes = padded.reshape(rb * ROW_BLOCK, nw * CODES_PER_WORD, c) @ \
        (base ** np.arange(c, dtype=np.uint32))                           # (RB*16, NW*6)
    words = codes.reshape(rb * ROW_BLOCK, nw, CODES_PER_WORD) << \
        (5 * np.arange(CODES_PER_WORD, dtype=np.uint32))
    words = np.bitwise_or.reduce(words, axis=2)                           # (RB*16, NW)
    return np.ascontiguousarray(words.reshape(rb, ROW_BLOCK, nw).transpose(0, 2, 1))


def avx2_layout(q: np.ndarray, kind: str) -> np.ndarray:
    """int8 (G, K) -> uint32 (RB8, NW, 8), RB8 = ceil(G/8): word w of 8 consecutive rows.

    3-bit codes of 3 columns, code = sum_i plus_i 2^i (plus_i = 1 where q = +1).
    binary:  NW = ceil(K/30), word w holds the codes of columns 30w..30w+29 at bits 3n (n < 10)
    ternary: NW = ceil(K/15), word w holds the plus codes of columns 15w..15w+14 at bits 3n and
             their minus codes (minus_i = 1 where q = -1) at bits 15 + 3n (n < 5).
    Columns >= K and rows >= G are zero bits.
    """
    g, k = q.shape
    per = 10 if kind == "binary" else 5                   # codes (of one plane) per word
    nw = max(1, -(-k // (3 * per)))
    rb = -(-g // 8)
    shifts = 3 * np.arange(per, dtype=np.uint32)

    def codes(bits):                                      # bool (G, K) -> uint32 (RB*8, NW)
        padded = np.zeros((rb * 8, nw * per * 3), dtype=np.uint32)
        padded[:g, :k] = bits
        c = padded.reshape(rb * 8, nw, per, 3) @ np.array([1, 2, 4], np.uint32)
        return np.bitwise_or.reduce(c << shifts, axis=2)

    words = codes(q > 0)
    if kind == "ternary":
        words |= codes(q < 0) << np.uint32(15)
    return np.ascontiguousarray(words.reshape(rb, 8, nw).transpose(0, 2, 1))


TERNARY_BASE3_COLS = 5     # ternary columns per base-3 byte code of the portable path (3^5 = 243)


def portable_layout(pm: PackedMatrix) -> np.ndarray:
    """uint8 (RB8, NB, 8): byte code b of row 8rb+i at [rb, b, i].

    binary   NB = max(1, ceil(K/8)):  the plus bits of columns 8b..8b+7, LSB first
    ternary  NB = max(1, ceil(K/5)):  code = sum_i (q_{5b+i} + 1)·3^i  (0..242; columns past K
             count as q = 0), one byte for 5 weights where the bit planes need 10 bits
    """
    rb = -(-pm.rows // 8)
    if pm.kind == "ternary":
        nb = max(1, -(-pm.cols // TERNARY_BASE3_COLS))
        digits = np.ones((rb * 8, nb * TERNARY_BASE3_COLS), np.uint8)        # q + 1, padding q = 0
        digits[:pm.rows, :pm.cols] = unpack(pm) + 1
        codes = digits.reshape(rb * 8, nb, TERNARY_BASE3_COLS) @ (3 ** np.arange(5)).astype(np.uint16)
        by = codes.astype(np.uint8)                                          # (RB*8, NB)
    else:
        nb = max(1, -(-pm.cols // 8))
        planes = np.zeros((rb * 8, 8 * words_per_row(max(pm.cols, 1))), np.uint8)
        if pm.cols:
            planes[:pm.rows] = pm.planes[0].view(np.uint8).reshape(pm.rows, -1)[:, :planes.shape[1]]
        by = planes[:, :nb]
    return np.ascontiguousarray(by.reshape(rb, 8, nb).transpose(0, 2, 1))
