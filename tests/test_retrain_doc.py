"""Issue 28: the retraining measurement's page is generated from its committed data.

Every ``docs/retrain-<tag>.json`` has its ``docs/RETRAIN-<tag>.md``, and the page is exactly what
``experiments/retrain.py``'s ``table`` makes of the JSON: no figure typed by hand."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
SCRIPT = DOCS.parent / "experiments" / "retrain.py"


def _table():
    spec = importlib.util.spec_from_file_location("retrain_experiment", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod.table


@pytest.mark.parametrize("data", sorted(DOCS.glob("retrain-*.json")), ids=lambda p: p.stem)
def test_the_retrain_page_is_generated_from_its_data(data):
    page = DOCS / f"RETRAIN-{data.stem[len('retrain-'):]}.md"
    assert page.exists(), f"{data.name} has no page; run experiments/retrain.py"
    assert page.read_text() == _table()(json.loads(data.read_text()))


def test_there_is_a_measurement():
    assert list(DOCS.glob("retrain-*.json")), "docs/ holds no retraining measurement"
