"""Gate arithmetic in float32 that LLVM vectorises: tanh and σ for the packed engine's steps.

    tanh32(x) = x                                   |x| < 4e-4   (tanh x = x − x³/3 + …)
              = y·P(y²) / Q(y²),  y = clamp(x, ±c)  otherwise,    c = 7.9053111
    sigmoid32(x) = ½ + ½·tanh32(x/2)                 σ(x) = (1 + tanh(x/2)) / 2

P (degree 6 in y², so y·P is odd of degree 13) and Q (degree 3 in y²) are the minimax
coefficients Eigen uses for its float tanh (Eigen/src/Core/MathFunctionsImpl.h,
generic_fast_tanh_float).  No call, no table, no branch the vectoriser cannot turn into a
select: a loop of these over float32 arrays becomes vector multiplies, adds and one division
per vector (8 lanes: LLVM picks 256-bit vectors on AVX2 and, by preference, on AVX-512 CPUs
too), where libm's tanhf is a scalar call per element.
No ``fastmath``: the clamps are ordered comparisons written so that NaN falls through to the
arithmetic (NaN in, NaN out), and reassociation would gain nothing in a loop without
reductions.

Accuracy (float32 in, against NumPy's float64 tanh and σ of the same float32 x), for every
float32 x, ±0, ±inf and subnormals included:

    |tanh32(x) − tanh(x)| ≤ TANH_REL·|tanh(x)|      TANH_REL    = 5e-7   (relative)
    |sigmoid32(x) − σ(x)| ≤ SIGMOID_ABS             SIGMOID_ABS = 2.5e-7 (absolute)

and NaN → NaN.  The bounds were set from an exhaustive run over all 2^32 bit patterns (largest
errors 4.10e-7 relative at x = 5.828 for tanh, 2.27e-7 absolute at x = 11.55 for σ; the
float32 spacing below 1 is 6e-8), and tests/test_gates.py checks them by property tests on the
whole range and a dense sweep where they peak.  So tanh32 is odd exactly, ±0 → ±0, a
subnormal (any |x| < 4e-4) is returned unchanged and ±inf → ±1; σ(±0) = ½, σ(±inf) = 1 or
0 within SIGMOID_ABS.  σ's relative error is large only where σ(x) < 1e-6 (x < −13.8),
where a gate passes less than a millionth of what it scales.
"""

import numpy as np
from numba import njit

from rbtw import numba_cache  # noqa: F401  (before any @njit: the cache sees edits to callees)

JIT = dict(cache=True, error_model="numpy")

TANH_REL = 5e-7         # |tanh32(x) − tanh(x)| ≤ TANH_REL·|tanh(x)|, every float32 x
SIGMOID_ABS = 2.5e-7    # |sigmoid32(x) − σ(x)| ≤ SIGMOID_ABS, every float32 x

_CLAMP = np.float32(7.90531110763549805)
_TINY = np.float32(0.0004)
_HALF = np.float32(0.5)
_P = tuple(np.float32(v) for v in (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11,
                                   5.12229709037114e-08, 1.48572235717979e-05, 6.37261928875436e-04,
                                   4.89352455891786e-03))
_Q = tuple(np.float32(v) for v in (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03,
                                   4.89352518554385e-03))


@njit(inline="always", **JIT)
def tanh32(x):
    """tanh of a float32 (module docstring)."""
    y = _CLAMP if x > _CLAMP else x              # NaN: both comparisons false, y stays NaN
    y = -_CLAMP if y < -_CLAMP else y
    y2 = y * y
    p = y2 * _P[0] + _P[1]
    p = p * y2 + _P[2]
    p = p * y2 + _P[3]
    p = p * y2 + _P[4]
    p = p * y2 + _P[5]
    p = p * y2 + _P[6]
    q = y2 * _Q[0] + _Q[1]
    q = q * y2 + _Q[2]
    q = q * y2 + _Q[3]
    r = (y * p) / q
    return x if abs(x) < _TINY else r


@njit(inline="always", **JIT)
def sigmoid32(x):
    """σ of a float32: ½ + ½·tanh32(x/2) (module docstring)."""
    return _HALF + _HALF * tanh32(_HALF * x)


@njit(**JIT)
def tanh_array(x, out):
    """out = tanh32(x) element-wise; x, out float32 (N,)."""
    for k in range(x.shape[0]):
        out[k] = tanh32(x[k])


@njit(**JIT)
def sigmoid_array(x, out):
    """out = sigmoid32(x) element-wise; x, out float32 (N,)."""
    for k in range(x.shape[0]):
        out[k] = sigmoid32(x[k])
