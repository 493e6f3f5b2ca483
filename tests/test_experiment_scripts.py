"""Every experiment script imports: a script's imports from its neighbours (``_common``, another
study's plot) are checked here, not first by the user who reruns a study hours later."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
SCRIPTS = sorted(p.stem for p in EXPERIMENTS.glob("*.py"))


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_script_imports_and_has_a_main(name, monkeypatch):
    monkeypatch.syspath_prepend(str(EXPERIMENTS))  # how `python experiments/NAME.py` finds its neighbours
    for mod in [m for m in sys.modules if m in SCRIPTS]:
        monkeypatch.delitem(sys.modules, mod)  # import each afresh, with its own imports
    mod = importlib.import_module(name)
    if not name.startswith("_"):
        assert callable(getattr(mod, "main", None)), f"experiments/{name}.py has no main()"
