"""What the package promises about itself: the Python versions it supports, its public names,
and the direction of its imports."""

import ast
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rbtw"
MINIMUM = (3, 11)       # tomllib (rbtw.sweep reads TOML sweep files)


def test_the_promised_minimum_python_is_the_oldest_syntax_and_stdlib_used():
    promise = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert promise == ">=" + ".".join(map(str, MINIMUM))
    assert sys.version_info[:2] >= MINIMUM          # this interpreter is inside the promise
    for path in PACKAGE.rglob("*.py"):              # no syntax newer than the minimum
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=MINIMUM)


def test_star_import_of_the_api_gives_every_name_it_lists():
    namespace = {}
    exec("from rbtw.api import *", namespace)
    import rbtw.api
    assert set(rbtw.api.__all__) <= set(namespace)
    exec("from rbtw import *", namespace)


def _imports(path):
    """Modules a file imports (absolute names), at any depth of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                base = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-node.level])
                out.add(f"{base}.{node.module}")
            else:
                for a in node.names:        # a submodule, or an attribute of the module
                    sub = f"{node.module}.{a.name}"
                    out.add(sub if _is_module(sub) else node.module)
    return out


def _is_module(name):
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_no_module_below_the_package_api_imports_the_package_root_or_the_trainer():
    trainer_callers = {"rbtw/api.py", "rbtw/cli/training.py", "rbtw/sweep/runner.py", "rbtw/train.py"}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        names = _imports(path)
        if rel not in ("rbtw/__init__.py",):
            # `import rbtw` or `from rbtw import X` for a non-module attribute X runs back up to the root
            assert "rbtw" not in names, f"{rel} imports the package root"
        if rel not in trainer_callers:
            assert "rbtw.train" not in names, f"{rel} imports the trainer"


def test_inference_and_the_emulator_never_import_training_code():
    training = {"rbtw.train", "rbtw.models", "rbtw.optim", "rbtw.nn", "rbtw.tasks", "rbtw.config"}
    readers = [PACKAGE / "infer.py", PACKAGE / "export_format.py", *(PACKAGE / "kernels").glob("*.py"),
               *(p for p in (PACKAGE / "accel").glob("*.py") if p.name != "report.py")]
    for path in readers:
        names = _imports(path)
        bad = {n for n in names if any(n == t or n.startswith(t + ".") for t in training)}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_no_module_over_600_lines():
    long = {p.relative_to(ROOT).as_posix(): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600}
    assert not long, long


def test_no_class_over_about_150_lines():
    long = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 170:
                long[f"{path.relative_to(ROOT).as_posix()}:{node.name}"] = node.end_lineno - node.lineno + 1
    assert not long, long


def test_every_module_has_its_place_in_the_design_notes_layout():
    """docs/design.md §6 names every module: by its path, or by its name in its package's line."""
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    layout = text[text.index("## 6. Layout"):]
    lines = layout.splitlines()
    missing = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if path.stem in ("__init__", "__main__") or f"`{rel}`" in layout:
            continue
        package_line = next((ln for ln in lines if ln.startswith(f"- `{path.parent.relative_to(ROOT).as_posix()}/`")), "")
        if f"`{path.stem}`" not in package_line:
            missing.append(rel)
    assert not missing, f"modules docs/design.md §6 does not place: {sorted(missing)}"
