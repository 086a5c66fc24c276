"""Bit-packed binary/ternary weights and accumulate-only products (issue 4).

    from rbtw.kernels import PackedMatrix, pack, unpack, matvec, matmul
    pm = pack(q, "ternary")          # q int (G, K) in {-1, 0, +1}
    y = matvec(pm, x)                # == q @ x       (additions/subtractions only)
    Y = matmul(pm, X)                # == X @ q.T

Layout: ``packing``; kernels and their equations: ``lut``; SIMD vocabulary: ``simd``;
NumPy references: ``reference``.
"""

from .ops import matmul, matvec
from .packing import PackedMatrix, pack, unpack
from .reference import reference_matmul, reference_matvec

__all__ = ["PackedMatrix", "pack", "unpack", "matvec", "matmul",
           "reference_matvec", "reference_matmul"]
