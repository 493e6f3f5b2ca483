"""The layers of docs/ARCHITECTURE.md, enforced: a module imports only from its own layer and
the ones above it; lse/core and lse/algorithms are pure (no torch, no file system: plain
decisions over plain data; NumPy is arithmetic and allowed, lse.core.pareto vectorises with it); no
module imports another module's private (_underscored) names, but for the listed exceptions,
which may only shrink."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "lse"
#: the layers, from the top (imported by all) down; a module may import its own layer and above
LAYERS = ["errors", "core", "algorithms", "config", "nn", "store", "reports", "runners", "dashboard", "cli"]
#: modules of the package root that belong to a layer
ROOT_MODULES = {"errors": "errors", "config": "config", "cli": "cli", "launch": "cli"}
FORBIDDEN_IN_PURE = {"os", "pathlib", "shutil", "io", "tempfile", "glob", "fcntl", "subprocess", "torch",
                     "safetensors", "lse.nn", "lse.store", "lse.runners", "lse.reports", "lse.dashboard"}
#: private names still imported across modules (issue 26: the store kernel will make them public)
PRIVATE_EXCEPTIONS: set[tuple[str, str, str]] = set()  # emptied by the store kernel (lse.store.durable, paths, recordio)


def _modules() -> list[tuple[str, Path]]:
    out = []
    for p in sorted(ROOT.rglob("*.py")):
        parts = p.relative_to(ROOT.parent).with_suffix("").parts
        out.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), p))
    return out


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "lse" or len(parts) == 1:
        return None  # outside lse, or the package's lazy facade (lse/__init__.py)
    return ROOT_MODULES.get(parts[1], parts[1])


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names, line) of every import, lazy ones included, but not those only for type
    checking (``if TYPE_CHECKING:``)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for b in node.body for n in ast.walk(b)}
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
    return out


def test_every_module_is_in_a_layer():
    assert all(_layer(m) in LAYERS for m, _ in _modules() if _layer(m) is not None)


@pytest.mark.parametrize("module,path", _modules(), ids=lambda x: x if isinstance(x, str) else "")
def test_imports_only_from_its_layer_or_above(module, path):
    me = _layer(module)
    if me is None:
        return
    upward = [f"{target} (line {line})" for target, _, line in _imports(path)
              if _layer(target) is not None and LAYERS.index(_layer(target)) > LAYERS.index(me)]
    assert upward == [], f"{module} ({me}) imports from a lower layer"


PURE = [(m, p) for m, p in _modules() if _layer(m) in ("core", "algorithms")]


@pytest.mark.parametrize("module,path", PURE, ids=lambda x: x if isinstance(x, str) else "")
def test_the_core_and_the_algorithms_are_pure(module, path):
    bad = [f"{t} (line {line})" for t, _, line in _imports(path)
           if t in FORBIDDEN_IN_PURE or t.split(".")[0] in FORBIDDEN_IN_PURE
           or any(t.startswith(f + ".") for f in FORBIDDEN_IN_PURE)]
    calls = [f"{n.func.id}() (line {n.lineno})" for n in ast.walk(ast.parse(path.read_text()))
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in {"open", "exec", "eval"}]
    assert bad + calls == []


def test_importing_every_pure_module_imports_no_torch():
    names = ", ".join(m for m, _ in PURE)
    code = f"import sys, importlib\nfor m in '{names}'.split(', '): importlib.import_module(m)\n" \
           "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'safetensors'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == ""


def test_no_module_imports_another_modules_private_names():
    found = {(m, target, name) for m, p in _modules() for target, names, _ in _imports(p)
             if target.startswith("lse") and target != m for name in names if name.startswith("_")}
    assert found - PRIVATE_EXCEPTIONS == set(), "new imports of private names"
    assert PRIVATE_EXCEPTIONS - found == set(), "fixed: remove them from PRIVATE_EXCEPTIONS"


#: issue 26: a worker and a trainer you can read in one sitting
MAX_WORKER_LINES = 500
MAX_CLASS_LINES = 400


def test_the_worker_and_every_class_stay_readable_in_one_sitting():
    worker = ROOT / "runners" / "worker.py"
    assert len(worker.read_text().splitlines()) <= MAX_WORKER_LINES
    big = []
    for module, path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                big.append(f"{module}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not big, f"classes over {MAX_CLASS_LINES} lines (split them by job): {big}"
