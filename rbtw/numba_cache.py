"""Numba's on-disk cache for rbtw's jitted functions, made stale by any edit to the code they run.

Numba stamps the cache of an ``@njit(cache=True)`` function with its own source file only.  Its
compiled code also holds every jitted function it calls, so when a callee lives in another
module (rbtw.accel.datapath calls rbtw.kernels.*; the LSTM and GRU step kernels call
rbtw.nn.fused_common) an edit to the callee's file used to leave the caller's old machine code
running until the cache files were deleted.

The fix is a cache locator (the Numba object that says where a function's cache lives and how
fresh its source is) for every function defined in rbtw's files.  It keeps the cache where
Numba's own locators would (NUMBA_CACHE_DIR, the module's __pycache__, or the user-wide cache)
and stamps it with Numba's stamp of the function's file *and* a digest of every module jitted
code can reach:

    sources = the rbtw modules that import numba or llvmlite at module level, and, transitively,
              the rbtw modules those import at module level
    stamp   = (Numba's stamp of the function's file, sha256 over every file of sources)

So an edit to any of them makes every rbtw cached function recompile once, on its next use
(kernels imported by name at run time, such as ops.kernels(path), are covered because their
modules import numba).  Editing a module outside ``sources`` (e.g. the trainer) invalidates
nothing.

Importing this module installs the locator, first in Numba's list (``install``).  rbtw.kernels,
rbtw.nn and rbtw.accel.datapath import it before their first ``@njit``, so it is active whenever
rbtw's jitted code is, whoever imports it.  (Numba skips the list when NUMBA_CACHE_LOCATOR_CLASSES
is set: add ``rbtw.numba_cache.DependencyStampLocator`` to it first.)
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
from pathlib import Path

from numba.core import caching

PACKAGE = Path(__file__).resolve().parent          # the rbtw directory
JIT_LIBRARIES = ("numba", "llvmlite")


# ---------------------------------------------------------------------------------------------
# which files jitted code can reach


def _module_name(path: Path) -> str:
    """rbtw/kernels/ops.py -> "rbtw.kernels.ops";  rbtw/nn/__init__.py -> "rbtw.nn"."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_file(name: str) -> Path | None:
    """The file of an rbtw module or package, None for anything else."""
    parts = name.split(".")
    if parts[0] != PACKAGE.name:
        return None
    base = PACKAGE.joinpath(*parts[1:])
    module = base.with_name(base.name + ".py")
    if len(parts) > 1 and module.is_file():
        return module
    init = base / "__init__.py"
    return init if init.is_file() else None


def _top_level(statements):
    """Statements run on import: the module body and the blocks of its if/try/with statements."""
    for node in statements:
        yield node
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            blocks = [node.body, getattr(node, "orelse", []), getattr(node, "finalbody", [])]
            blocks += [handler.body for handler in getattr(node, "handlers", [])]
            for block in blocks:
                yield from _top_level(block)


def _imported_modules(node, package: str) -> list[str]:
    """Absolute names of the modules an import statement depends on: ``import a.b`` -> a.b;
    ``from m import x`` -> m.x where that is a module, else m."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:                                   # relative: from package, up level − 1
        anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
        base = f"{anchor}.{base}" if base else anchor
    return [f"{base}.{a.name}" if _module_file(f"{base}.{a.name}") else base for a in node.names]


def _imports(path: Path) -> tuple[bool, set[Path]]:
    """(imports a JIT library, rbtw files it imports), from the module's top-level imports."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    jit, files = False, set()
    for node in _top_level(ast.parse(path.read_bytes(), str(path)).body):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for target in _imported_modules(node, package):
                jit |= target.split(".")[0] in JIT_LIBRARIES
                found = _module_file(target)
                if found is not None and found != path:
                    files.add(found)
    return jit, files


@functools.lru_cache(maxsize=1)
def jitted_sources() -> tuple[Path, ...]:
    """The files of ``sources`` (module docstring), sorted; found once per process."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        text = path.read_bytes()
        if any(lib.encode() in text for lib in JIT_LIBRARIES):   # cheap filter before parsing
            graph[path] = _imports(path)
    todo = [path for path, (jit, _) in graph.items() if jit]
    seen = set()
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(graph[path][1] if path in graph else _imports(path)[1])
    return tuple(sorted(seen))


@functools.lru_cache(maxsize=None)
def _digest(stamps: tuple) -> bytes:
    h = hashlib.sha256()
    for path, _, _ in stamps:
        h.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.digest()


def sources_digest() -> bytes:
    """sha256 over the contents of jitted_sources(), recomputed when a file's stat changes."""
    stamps = []
    for path in jitted_sources():
        st = os.stat(path)
        stamps.append((path, st.st_mtime_ns, st.st_size))
    return _digest(tuple(stamps))


# ---------------------------------------------------------------------------------------------
# the locator


class DependencyStampLocator(caching._CacheLocator):
    """Numba's own cache location for a function in rbtw's files, with a source stamp that also
    covers every module jitted code can reach (module docstring)."""

    def __init__(self, inner):
        self._inner = inner                          # the locator Numba would have used

    def ensure_cache_path(self):
        self._inner.ensure_cache_path()

    def get_cache_path(self):
        return self._inner.get_cache_path()

    def get_disambiguator(self):
        return self._inner.get_disambiguator()

    def get_source_stamp(self):
        return self._inner.get_source_stamp(), sources_digest()

    @classmethod
    def from_function(cls, py_func, py_file):
        try:
            Path(py_file).resolve().relative_to(PACKAGE)
        except ValueError:
            return None                              # not rbtw's: Numba's locators decide
        for other in caching.CacheImpl._locator_classes:
            inner = None if other is cls else other.from_function(py_func, py_file)
            if inner is not None:
                return cls(inner)
        return None


def install() -> None:
    """Put DependencyStampLocator first in Numba's locator list (once)."""
    classes = caching.CacheImpl._locator_classes
    if DependencyStampLocator not in classes:
        classes.insert(0, DependencyStampLocator)


install()
