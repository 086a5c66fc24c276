"""rbtw.numba_setup: the CLI's Numba start without SciPy-BLAS / cffi probes."""

import subprocess
import sys

PROBE = """
import sys
from rbtw.numba_setup import skip_probes
skip_probes()
import numba.np.arraymath as am
from numba.core.typing import cffi_utils
print(am._HAVE_BLAS, cffi_utils.SUPPORTED, "scipy.linalg" in sys.modules)
import numpy as np
from rbtw.kernels import matvec, pack
q = np.array([[1, -1, 1], [-1, -1, 1]], np.int8)
print(matvec(pack(q, "binary"), np.array([1, 2, 3], np.float32)).tolist())
import scipy.linalg.cython_blas                 # unhidden again: importable as ever
print(sys.modules["scipy.linalg.cython_blas"] is not None)
skip_probes()                                   # a second call changes nothing
"""


def test_skip_probes_leaves_numba_working_and_scipy_importable():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[0] == "False False False"        # Numba set up without SciPy's BLAS or cffi
    assert out[1] == "[2.0, 0.0]"               # kernels compile / load and compute
    assert out[2] == "True"
