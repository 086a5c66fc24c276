"""Which kernel path runs: AVX-512, AVX2 or portable, from the CPU features Numba compiles for.

    avx512    16 lanes, 32-entry tables, one ``vpermi2ps`` per 16 look-ups   (needs avx512f)
    avx2      8 lanes, 8-entry tables, one ``vpermps`` per 8 look-ups        (needs avx2)
    portable  plain loops over byte-indexed tables (8 binary / 5 ternary columns); any CPU

A path can run when both the compile target and the host have its instruction set.  The
target is what Numba compiles for: the host, or NUMBA_CPU_NAME / NUMBA_CPU_FEATURES when set
(Numba's own rule: a named CPU without NUMBA_CPU_FEATURES keeps the host's features, except
``generic``, which has none).  A named CPU's implied features are known here only for the
x86-64 levels, so another name without NUMBA_CPU_FEATURES counts as "portable only": never
an instruction the target may lack.

The fastest runnable path is selected; RBTW_KERNELS=avx512|avx2|portable overrides (a choice
this machine cannot run is a UserError).  The choice is made on first use and kept.
"""

from __future__ import annotations

import os

from llvmlite import binding as llvm
from numba.core import config

from rbtw.errors import UserError

PATHS = ("avx512", "avx2", "portable")        # fastest first
NEEDS = {"avx512": "avx512f", "avx2": "avx2", "portable": None}
LEVELS = {"x86-64-v3": {"avx", "avx2", "fma", "bmi2"},
          "x86-64-v4": {"avx", "avx2", "fma", "bmi2", "avx512f"}}
ENV = "RBTW_KERNELS"

_selected: tuple[str, str] | None = None


def host_features() -> set[str]:
    """Features of the CPU this process runs on (LLVM's view)."""
    return {k for k, on in llvm.get_host_cpu_features().items() if on}


def _parse(features: str) -> tuple[set[str], set[str]]:
    """'+avx2,-avx512f,...' -> ({'avx2'}, {'avx512f'})."""
    on, off = set(), set()
    for f in filter(None, (s.strip() for s in features.split(","))):
        (off if f[0] == "-" else on).add(f.lstrip("+-"))
    return on, off


def target_features() -> set[str]:
    """Features Numba compiles for (see the module docstring)."""
    from numba.core.codegen import get_host_cpu_features
    name = config.CPU_NAME
    if config.CPU_FEATURES is not None:
        explicit = config.CPU_FEATURES
    else:
        explicit = get_host_cpu_features()      # honours NUMBA_ENABLE_AVX
    on, off = _parse(explicit)
    if name is None or name == "host" or name == llvm.get_host_cpu_name():
        base = set() if config.CPU_FEATURES is not None else host_features()
        if not config.ENABLE_AVX:
            base = {f for f in base if not f.startswith("avx")}
        return (base | on) - off
    if name in LEVELS:
        return (LEVELS[name] | on) - off
    return on - off if config.CPU_FEATURES is not None else set()


def runnable() -> list[str]:
    """Paths that this target and this host can both run, fastest first."""
    have = target_features() & host_features()
    return [p for p in PATHS if NEEDS[p] is None or NEEDS[p] in have]


def select() -> tuple[str, str]:
    """(path, reason) for this process; RBTW_KERNELS overrides the fastest runnable path."""
    global _selected
    if _selected is None:
        ok = runnable()
        want = os.environ.get(ENV, "").strip().lower()
        if not want:
            need = NEEDS[ok[0]]
            why = f"fastest path this CPU runs ({need} present)" if need else \
                "no AVX2/AVX-512 in the compile target"
            _selected = (ok[0], why)
        elif want not in PATHS:
            raise UserError(f"{ENV}={want!r}: choose one of {', '.join(PATHS)}")
        elif want not in ok:
            raise UserError(f"{ENV}={want}: this CPU or Numba target lacks {NEEDS[want]} "
                            f"(runnable here: {', '.join(ok)})")
        else:
            _selected = (want, f"set by {ENV}")
    return _selected


def path() -> str:
    """The selected path's name."""
    return select()[0]


def describe() -> list[str]:
    """Lines for ``rbtw info --system``."""
    import numba
    name = config.CPU_NAME or llvm.get_host_cpu_name()
    simd = sorted(f for f in target_features() if f.startswith(("avx", "sse4", "neon", "fma", "bmi")))
    chosen, why = select()
    return [f"CPU (Numba target): {name}; host {llvm.get_host_cpu_name()}",
            f"vector features: {' '.join(simd) or 'none'}",
            f"kernel paths runnable: {', '.join(runnable())}",
            f"kernel path: {chosen} ({why})",
            f"Numba {numba.__version__}, {numba.get_num_threads()} threads"]
