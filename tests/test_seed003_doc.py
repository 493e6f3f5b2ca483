"""docs/seed003 is generated from its committed runs: the page's tables are what the script makes
of runs/*.json (a hand-edited number cannot survive), every main arm has three paired seeds,
and the arms of one seed really started from the same initial population."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from _experiment_script import load_script

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "seed003"


def _script():
    return load_script("seed003_weights_ga")


def test_the_pages_tables_are_regenerated_from_the_committed_runs():
    mod = _script()
    runs = mod.study.load_runs(DOC)
    page = (DOC / "README.md").read_text()
    assert f"{mod.BEGIN}\n{mod.tables(runs)}{mod.END}" in page


def test_every_main_arm_has_three_paired_seeds_from_one_initial_population():
    runs = [json.loads(p.read_text()) for p in sorted((DOC / "runs").glob("*.json"))]
    arms = defaultdict(set)
    first = defaultdict(set)  # (net, seed) -> monitor accuracy of the initial population's fittest
    for r in runs:
        t = r["task"]
        arm = (t["kind"], t["net"], t.get("scheme") or t.get("optimizer"), t.get("encoding"), str(t.get("fitness")),
               bool(t.get("rejudge")))
        arms[arm].add(t["seed"])
        if t["kind"] == "ga" and str(t["fitness"]) == "32":
            first[(t["net"], t["seed"])].add(r["points"][0][5])
        elif t["kind"] == "backprop":  # trained from that population's fittest member
            first[(t["net"], t["seed"])].add(r["points"][0][2])
    main = [a for a in arms if a[1] == "mnist-table2" and a[0] == "ga" and a[4] == "32"
            and (a[2] != "ga-elitism" or a[5])]
    assert len(main) == 6  # three schemes x two encodings
    for arm in main + [a for a in arms if a[0] == "backprop"]:
        assert arms[arm] >= {0, 1, 2}, (arm, arms[arm])
    for key, values in first.items():
        assert len(values) == 1, (key, values)  # one initial population per seed
