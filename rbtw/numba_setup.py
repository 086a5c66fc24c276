"""Start Numba without its SciPy-BLAS and cffi probes, for the CLI commands that run kernels.

The first time a process compiles or loads a cached Numba function, Numba imports
numba.np.arraymath, which imports scipy.linalg to find a BLAS for np.dot in jitted code, and
numba.core.typing.cffi_utils, which imports cffi: a sizeable part of a warm `rbtw sample`'s
start (bench/results/kernels_evidence.md §numba-start).  rbtw's jitted code uses neither (no
np.dot, @ or cffi inside @njit), so ``skip_probes`` imports those two Numba modules while
scipy.linalg.cython_blas and cffi are hidden, then unhides them.  SciPy and cffi stay importable
for everything else in the process; only there, jitted np.dot-like code would use Numba's own
loops and jitted code could not call cffi functions.  Library users are never affected: only
the CLI calls this.
"""

from __future__ import annotations

import sys

HIDDEN = ("scipy.linalg.cython_blas", "cffi")


def skip_probes() -> None:
    """Import numba.np.arraymath and cffi_utils with HIDDEN unimportable (no-op once loaded)."""
    if "numba.np.arraymath" in sys.modules:
        return
    saved = {name: sys.modules.get(name, ...) for name in HIDDEN}
    try:
        for name in HIDDEN:
            sys.modules[name] = None            # import of a None entry raises ImportError
        import numba.core.typing.cffi_utils  # noqa: F401
        import numba.np.arraymath  # noqa: F401
    finally:
        for name, module in saved.items():
            if module is ...:
                del sys.modules[name]
            else:
                sys.modules[name] = module
