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

from rbtw.blas_env import BLAS_TIMEOUT_AT_LOAD  # noqa: F401  (first: before anything loads NumPy)
from rbtw.api import Model, TrainResult, fit, load
from rbtw.errors import UserError
from rbtw.version import __version__  # noqa: F401

__all__ = ["Model", "TrainConfig", "TrainResult", "UserError", "fit", "load"]


def __getattr__(name):
    """``rbtw.TrainConfig`` imports the configuration module on first use."""
    if name == "TrainConfig":
        from rbtw.config import TrainConfig
        return TrainConfig
    raise AttributeError(f"module 'rbtw' has no attribute {name!r}")
