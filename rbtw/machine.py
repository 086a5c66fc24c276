"""The machine a figure was measured on, as reports name it: CPU model, cores, and the widest
vector instruction set the CPU has ("AMD EPYC, 2 cores, AVX-512").

Hosts of one kind differ (some have AVX-512, some only AVX2), and a run may move between hosts
when it resumes, so every training attempt of a sweep records the machine it ran on
(rbtw.sweep.runner), and study records name the machines that trained them.  Read from
/proc/cpuinfo where there is one (Linux), else from the platform module; nothing here imports
NumPy or Numba.
"""

import os
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo():
    try:
        return CPUINFO.read_text(errors="replace")
    except OSError:
        return ""


def cpu_model():
    """The CPU's model name ("AMD EPYC"), or the platform's processor, or "unknown CPU"."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def vector_isa():
    """"AVX-512", "AVX2", "no AVX2" (an x86 CPU without it) or the architecture (ARM: "aarch64")."""
    flags = set()
    for line in _cpuinfo().splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
    if "avx512f" in flags:
        return "AVX-512"
    if "avx2" in flags:
        return "AVX2"
    arch = platform.machine()
    return "no AVX2" if arch in ("x86_64", "AMD64", "i686") else arch or "unknown instruction set"


def describe():
    """"MODEL, N cores, ISA": the machine as reports name it."""
    return f"{cpu_model()}, {os.cpu_count()} cores, {vector_isa()}"
