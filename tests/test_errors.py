"""Typed errors (STYLE.md 9): every error class lse declares is one it actually raises.  An
error type nothing raises (TrainingFailed, issue 20) tells a reader to catch something that
never comes; the trainer reports failures in TrainResult.failed_reason instead."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import lse
import lse.errors


def _constructed_names() -> set[str]:
    names: set[str] = set()
    for path in Path(lse.__file__).parent.rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                f = node.func
                names.add(f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else "")
    return names


def test_every_declared_error_is_raised_somewhere():
    declared = {n for n, c in inspect.getmembers(lse.errors, inspect.isclass)
                if issubclass(c, BaseException) and c.__module__ == lse.errors.__name__}
    unused = sorted(declared - {"LseError"} - _constructed_names())
    assert unused == [], f"declared in lse.errors but never raised: {unused}"
