"""experiments/seed000_twostep.py's pure parts (issue 31): which autoencoders of the front go to
stage 2, and the page's tables made from the study's JSON alone."""

from __future__ import annotations

import pytest
from _experiment_script import load_script


def _cand(i, front, topsis, c):
    return {"id": f"ae{i}", "front": front, "topsis": topsis, "compression": c, "reconstruction": 1 - c,
            "architecture": "C3x3/2x1 | z", "born_at": None}


def test_the_pick_comes_first_then_the_fronts_ends():
    mod = load_script("seed000_twostep")
    cands = [_cand(1, 0, 0.60, 0.50), _cand(2, 0, 0.81, 0.75), _cand(3, 0, 0.70, 0.97),
             _cand(4, 0, 0.65, 0.80), _cand(5, 1, 0.90, 0.60)]
    chosen = mod.choose(cands, 3)
    assert [c["id"] for c in chosen] == ["ae2", "ae1", "ae3"]  # the pick, then the farthest in compression
    assert chosen[0]["label"] == "pick"
    assert len({c["label"] for c in chosen}) == 3


def test_a_small_front_is_filled_from_the_next_fronts_and_an_empty_one_is_refused():
    mod = load_script("seed000_twostep")
    chosen = mod.choose([_cand(1, 0, 0.6, 0.5), _cand(2, 1, 0.5, 0.9), _cand(3, 2, 0.7, 0.7)], 3)
    assert [c["id"] for c in chosen] == ["ae1", "ae2", "ae3"]
    with pytest.raises(SystemExit, match="no front"):
        mod.choose([_cand(1, 1, 0.6, 0.5)], 2)


def _row(inp, r, nets, test):
    return {"input": inp, "repeat": r, "networks": nets, "best_val": test + 0.01, "test": test,
            "flops_per_example": 1000, "networks_by_minute": [nets // 2, nets], "best_val_by_minute": [test, test]}


def test_the_tables_pair_every_input_with_the_same_repeats_raw_run():
    mod = load_script("seed000_twostep")
    data = {"ae_minutes": 10, "minutes": 2, "repeats": 2, "preset": "hour",
            "stage1": {"autoencoders": 5, "every": [[0.5, 0.5]], "candidates": [_cand(1, 0, 0.6, 0.5)]},
            "chosen": [{**_cand(1, 0, 0.6, 0.5), "label": "pick", "code_shape": [1, 14, 14]}],
            "rows": [_row("raw", 0, 100, 0.80), _row("raw", 1, 120, 0.82),
                     _row("pick", 0, 150, 0.78), _row("pick", 1, 180, 0.81)]}
    text = mod.tables(data)
    pick = next(line for line in text.splitlines() if line.startswith("| pick | 2 |"))
    assert "| 1.50 ± 0.00 |" in pick  # 150/100 and 180/120: the ratio to its own repeat's raw run
    assert "| -1.5 ± 1.4 |" in pick  # -2 and -1 points, paired
    assert "| 1x14x14 |" in text


def test_the_pages_tables_are_regenerated_from_the_committed_json():
    """docs/TWOSTEP.md holds exactly what the script makes of docs/twostep.json: a hand-edited
    number cannot survive."""
    import json

    mod = load_script("seed000_twostep")
    data = json.loads(mod.PAGE.with_name("twostep.json").read_text())
    assert f"{mod.BEGIN}\n{mod.tables(data)}{mod.END}" in mod.PAGE.read_text()


def test_the_committed_study_has_the_issues_design():
    """At least 3 autoencoders of the front, the TOPSIS pick among them, 3 repeats of every input
    with the raw images as the control, paired by seed, every run read over the same minutes."""
    import json
    from collections import defaultdict

    mod = load_script("seed000_twostep")
    data = json.loads(mod.PAGE.with_name("twostep.json").read_text())
    assert len(data["chosen"]) >= 3 and data["chosen"][0]["label"] == "pick"
    pick = max((c for c in data["stage1"]["candidates"] if c["front"] == 0), key=lambda c: c["topsis"])
    assert data["chosen"][0]["id"] == pick["id"]
    repeats = defaultdict(set)
    for r in data["rows"]:
        repeats[r["input"]].add(r["repeat"])
        assert len(r["networks_by_minute"]) == int(data["minutes"])
        assert r["networks_by_minute"][-1] <= r["networks"]
    assert set(repeats) == {mod.RAW, *(c["label"] for c in data["chosen"])}
    assert all(s == set(range(data["repeats"])) for s in repeats.values()) and data["repeats"] >= 3
