"""docs/pycortex is generated from its committed runs: the page's tables are what the script
makes of runs/*.json (a hand-edited number cannot survive), every arm has five seeds at the
paper's ecosystem, and the two loops of one seed started from the same initial ecosystem."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from _experiment_script import load_script

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "pycortex"


def _script():
    return load_script("pycortex_table1")


def test_the_pages_tables_are_regenerated_from_the_committed_runs():
    mod = _script()
    page = (DOC / "README.md").read_text()
    assert f"{mod.BEGIN}\n{mod.tables(mod.study.load_runs(DOC))}{mod.END}" in page


def test_five_seeds_per_arm_at_the_papers_ecosystem_and_paired_loops():
    mod = _script()
    runs = [json.loads(p.read_text()) for p in sorted((DOC / "runs").glob("*.json"))]
    seeds, initial = defaultdict(set), defaultdict(set)
    for r in runs:
        t = r["task"]
        assert (t["initial"], t["limit"], t["species"]) == (64, 111, 8)
        assert r["schedule"][:3] == [64, 96, 111] and r["births"] == sum(r["schedule"])
        seeds[t["arm"]].add(t["seed"])
        if t["arm"].endswith("-speciation") and "no-speciation" not in t["arm"]:
            initial[t["seed"]].add(r["initial_hash"])
    assert set(seeds) == set(mod.ARMS) and all(len(s) >= 5 for s in seeds.values()), seeds
    assert all(len(h) == 1 for h in initial.values()), initial  # both loops of a seed: one start
    assert mod.schedule(64, 111, 20) == [64, 96] + [111] * 19
