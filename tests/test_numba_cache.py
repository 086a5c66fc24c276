"""rbtw.numba_cache: an edit to a module that cached jitted code calls takes effect in the next process.

The case: rbtw.nn.lstm_fused.tanh_plain (cached, tc = tanh(c)) calls the tanh of another module,
rbtw.nn.fused_common.tanh_ (float64: math.tanh).  Each run below is a fresh process on its own
copy of the package with its own NUMBA_CACHE_DIR: the first run compiles and caches tanh_plain,
then fused_common.py is edited to return −tanh, and the second run must load or recompile.

With the fix, the second run computes −tanh.  With the locator removed (Numba's own behaviour,
which stamps tanh_plain's cache with lstm_fused.py alone), the second run loads the stale code
and still prints +tanh although the source now says −tanh: the defect the fix removes.
"""

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rbtw"

PROBE = """
import sys
if sys.argv[1] == "off":
    from numba.core.caching import CacheImpl
    from rbtw import numba_cache
    CacheImpl._locator_classes.remove(numba_cache.DependencyStampLocator)
import numpy as np
from rbtw.nn import lstm_fused
tc = np.empty((1, 1))
lstm_fused.tanh_plain(np.array([[0.5]]), tc)
print(repr(float(tc[0, 0])))
"""

OLD = "    return lambda x: math.tanh(x)\n"          # the float64 branch of fused_common's tanh_
NEW = "    return lambda x: -math.tanh(x)\n"


def _run(root: Path, switch: str) -> float:
    env = dict(os.environ, PYTHONPATH=str(root), NUMBA_CACHE_DIR=str(root / "numba-cache"))
    env.pop("NUMBA_CACHE_LOCATOR_CLASSES", None)
    out = subprocess.run([sys.executable, "-c", PROBE, switch], cwd=root, env=env, capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip())


def _copy(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    shutil.copytree(PACKAGE, root / "rbtw", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _edit_callee(root: Path) -> None:
    path = root / "rbtw" / "nn" / "fused_common.py"
    text = path.read_text(encoding="utf-8")
    assert text.count(OLD) == 1, "the probe's edit no longer matches fused_common.tanh_"
    path.write_text(text.replace(OLD, NEW), encoding="utf-8")


@pytest.mark.parametrize("switch, after", [("on", -math.tanh(0.5)), ("off", math.tanh(0.5))])
def test_an_edit_to_a_callee_module_reaches_cached_callers(tmp_path, switch, after):
    root = _copy(tmp_path, switch)
    assert _run(root, switch) == math.tanh(0.5)           # compiled and cached
    assert any((root / "numba-cache").rglob("lstm_fused.tanh_plain-*.nbi"))
    _edit_callee(root)
    assert _run(root, switch) == after                   # on: the edit; off: stale cached code


def test_sources_cover_the_callee_modules():
    from rbtw import numba_cache
    names = {str(p.relative_to(numba_cache.PACKAGE)) for p in numba_cache.jitted_sources()}
    assert {"nn/fused_common.py", "nn/lstm_fused.py", "kernels/portable.py", "kernels/avx512.py",
            "kernels/avx2_simd.py", "accel/datapath.py", "accel/fixed.py"} <= names
    assert "train.py" not in names and "nn/lstm.py" not in names    # plain Python: no effect
