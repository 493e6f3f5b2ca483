"""Issue 28: the retraining measurement's page is generated from its committed data.

Every ``docs/retrain-<tag>.json`` has its ``docs/RETRAIN-<tag>.md``, and the page is exactly what
``experiments/retrain.py``'s ``table`` makes of the JSON: no figure typed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _experiment_script import load_script

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _table():
    return load_script("retrain").table


@pytest.mark.parametrize("data", sorted(DOCS.glob("retrain-*.json")), ids=lambda p: p.stem)
def test_the_retrain_page_is_generated_from_its_data(data):
    page = DOCS / f"RETRAIN-{data.stem[len('retrain-'):]}.md"
    assert page.exists(), f"{data.name} has no page; run experiments/retrain.py"
    assert page.read_text() == _table()(json.loads(data.read_text()))


def test_there_is_a_measurement():
    assert list(DOCS.glob("retrain-*.json")), "docs/ holds no retraining measurement"
