"""OpenBLAS's spin timeout, set before NumPy loads (imported first by the package root).

OpenBLAS's worker threads spin for 2^OPENBLAS_THREAD_TIMEOUT cycles after each call (default
2^28, ~0.1 s) and take the core that a packed kernel's second thread needs (evidence:
bench/results/kernels_evidence.md §threads).  OpenBLAS reads the variable once, when NumPy
loads it, so it is set here only if NumPy is not loaded yet and the user has not set it;
rbtw.kernels.ops keeps packed products on one thread otherwise.

BLAS_TIMEOUT_AT_LOAD   the value NumPy's OpenBLAS started with, as far as rbtw knows: None
                       when NumPy was loaded before rbtw (then it is unknown)
"""

import os
import sys

if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
BLAS_TIMEOUT_AT_LOAD = None if "numpy" in sys.modules else os.environ["OPENBLAS_THREAD_TIMEOUT"]
