"""docs/SECTION5.md's measured tables are generated from the committed JSON beside it (issue 31):
the page holds exactly what the experiment scripts make of docs/section5-*.json, so a
hand-edited number cannot survive, and the JSON has the design the issue asks for.  (Figure 3's
script writes its table the same way; its runs are not committed yet, so it has no test here.)"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from _experiment_script import load_script

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "SECTION5.md"


def _data(name: str) -> dict:
    return json.loads((ROOT / "docs" / f"{name}.json").read_text())


def test_the_recombination_table_is_regenerated_from_the_committed_json():
    mod = load_script("section5_recombination")
    assert f"{mod.BEGIN}\n{mod.table(_data(mod.NAME))}{mod.END}" in PAGE.read_text()


def test_recombination_is_paired_repeated_and_read_at_one_budget():
    mod = load_script("section5_recombination")
    data = _data(mod.NAME)
    repeats = defaultdict(set)
    initial = defaultdict(set)
    for r in data["rows"]:
        repeats[r["variant"]].add(r["repeat"])
        assert r["flops_read"] <= data["flops"]  # read at the budget: an overshoot counts for nothing
        assert len(r["best_val_by_flops"]) == mod.POINTS
        # one repeat = one seed = one initial population: the same networks, trained the same way,
        # score the same in every arm (their validation accuracies, to the last digit)
        initial[r["repeat"]].add(tuple(r["initial_val"]))
    assert set(repeats) == set(mod.VARIANTS) and all(len(s) >= 5 for s in repeats.values()), repeats
    assert all(len(n) == 1 for n in initial.values()), initial
