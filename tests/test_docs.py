"""The reading guide's Python experiments run as written (from the repository root)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "reading-guide.md"
BLOCKS = re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)


def test_the_guide_has_experiments():
    assert len(BLOCKS) >= 5


@pytest.mark.slow
@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{k + 1}" for k in range(len(BLOCKS))])
def test_reading_guide_block_runs(code):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip()                          # each experiment prints what it shows
