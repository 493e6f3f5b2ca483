"""Issue 26: the paired store-throughput table in docs/SCALING.md is generated from its data.

``docs/simulate-redesign.json`` holds what each paired `lse simulate` run measured; the page
carries exactly the table ``experiments/simulate_paired.py table`` makes of it."""

from __future__ import annotations

import json
from pathlib import Path

from _experiment_script import load_script

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "simulate-redesign.json"


def _script():
    return load_script("simulate_paired")


def test_the_scaling_page_carries_the_table_generated_from_the_data():
    table = _script().table(json.loads(DATA.read_text()))
    assert table in (ROOT / "docs" / "SCALING.md").read_text()


def test_the_comparison_is_paired_and_repeated():
    data = json.loads(DATA.read_text())
    for n in {r["workers"] for r in data["rows"]}:
        rows = [r for r in data["rows"] if r["workers"] == n]
        assert len(rows) >= 3 and {r["repeat"] for r in rows} == set(range(1, len(rows) + 1))
        assert all({"before", "after"} <= r.keys() for r in rows)
