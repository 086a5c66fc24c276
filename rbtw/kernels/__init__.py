"""Bit-packed binary/ternary weights and accumulate-only products.

    from rbtw.kernels import PackedMatrix, pack, unpack, matvec, matmul
    pm = pack(q, "ternary")          # q int (G, K) in {-1, 0, +1}
    y = matvec(pm, x)                # == q @ x       (additions/subtractions only)
    Y = matmul(pm, X)                # == X @ q.T
    Y = product(pm, X)               # == X @ q.T, packed or dense, whichever is faster here

Layouts: ``packing``; kernel paths and their selection: ``isa``; kernels and their
equations: ``avx512`` (its SIMD vocabulary ``avx512_simd``), ``avx2`` (``avx2_simd``),
``portable``; NumPy references: ``reference``.
"""

from rbtw import numba_cache  # noqa: F401  (first: the kernels' Numba cache sees edits to callees)

from .ops import matmul, matvec, product
from .packing import PackedMatrix, pack, unpack
from .reference import reference_matmul, reference_matvec

__all__ = ["PackedMatrix", "pack", "unpack", "matvec", "matmul", "product",
           "reference_matvec", "reference_matmul"]
