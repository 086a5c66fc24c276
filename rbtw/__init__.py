"""rbtw: Learning Recurrent Binary/Ternary Weights (Ardakani et al., ICLR 2019) in NumPy and Numba.

The Python API (rbtw.api):

    load(path, engine=None)          a checkpoint (.npz) or an export (.rbtw) -> Model
    Model.sample(prime, length, temperature, seed) -> str;  Model.evaluate(text or ids) -> dict
    fit(config or fields, out=...)    -> TrainResult (run directory, test metric, epoch records)
    TrainConfig                      every setting of a run (rbtw.config.TrainConfig)
    UserError                        what the API raises for anything the caller can fix

``import rbtw`` loads only the standard library; NumPy, Numba and the engines load on first
use.  (The API's trainer is ``fit`` because ``rbtw.train`` is the training module.)
"""

import os as _os
import sys as _sys

# OpenBLAS's worker threads spin for 2^OPENBLAS_THREAD_TIMEOUT cycles after each call (default
# 2^28, ~0.1 s) and take the core that a packed kernel's second thread needs: measured on the
# 2-core AVX2 host, a 2-thread packed product (binary 4000×1000, batch 64) took 11-15 ms beside
# 8 ms on one thread, and 5.7 ms with 2^4 (bench/results/kernels.md).  OpenBLAS reads the
# variable once, when NumPy loads it, so it is set here only if NumPy is not loaded yet and
# the user has not set it; rbtw.kernels.ops keeps packed products on one thread otherwise.
if "numpy" not in _sys.modules:
    _os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
BLAS_TIMEOUT_AT_LOAD = None if "numpy" in _sys.modules else _os.environ["OPENBLAS_THREAD_TIMEOUT"]

from rbtw.api import Model, TrainResult, fit, load
from rbtw.errors import UserError
from rbtw.version import __version__

__all__ = ["Model", "TrainConfig", "TrainResult", "UserError", "fit", "load"]


def __getattr__(name):
    """``rbtw.TrainConfig`` imports the configuration module on first use."""
    if name == "TrainConfig":
        from rbtw.config import TrainConfig
        return TrainConfig
    raise AttributeError(f"module 'rbtw' has no attribute {name!r}")
