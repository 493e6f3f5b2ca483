"""The evolutionary core is pure (ARCHITECTURE.md, STYLE.md 2): importing lse.core.dna and
lse.core.mutations pulls in no torch, and their source uses no file-system API."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import lse.core.dna
import lse.core.mutations

PURE = [Path(lse.core.dna.__file__), Path(lse.core.mutations.__file__)]
FORBIDDEN_MODULES = {"os", "pathlib", "shutil", "io", "tempfile", "glob", "fcntl", "subprocess", "torch", "numpy"}
FORBIDDEN_CALLS = {"open", "__import__", "exec", "eval"}


def test_importing_the_pure_core_does_not_import_torch():
    code = (
        "import sys\n"
        "import lse, lse.core.dna, lse.core.mutations\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "", f"pure modules imported: {out.stdout.strip()}"


@pytest.mark.parametrize("path", PURE, ids=lambda p: p.name)
def test_pure_source_uses_no_file_apis(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            problems += [a.name for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in FORBIDDEN_MODULES:
            problems.append(node.module)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            problems.append(f"{node.func.id}() at line {node.lineno}")
        elif isinstance(node, ast.Attribute) and node.attr in {"read_text", "write_text", "open", "unlink", "rename", "replace"} and isinstance(node.value, ast.Name) and node.value.id in FORBIDDEN_MODULES:
            problems.append(f"{node.value.id}.{node.attr}")
    assert problems == []


def test_lse_exposes_the_public_api_lazily():
    import lse

    for name in ("initial_dna", "mutate", "DNA", "MUTATION_NAMES", "render_line", "render_dot",
                 "build_model", "inherit_weights", "count_flops"):
        assert callable(getattr(lse, name)) or name == "MUTATION_NAMES"
    with pytest.raises(AttributeError):
        lse.no_such_thing  # noqa: B018
