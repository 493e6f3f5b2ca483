"""Issue 32: EA4CNN's section 5.1 page is generated from its committed data.

``docs/ea4cnn/SECTION51.md`` is exactly what ``experiments/ea4cnn_section5.py`` makes of
``docs/ea4cnn/section51.json``: no figure typed by hand, and the comparisons are paired."""

from __future__ import annotations

import json
from pathlib import Path

from _experiment_script import load_script

DOCS = Path(__file__).resolve().parent.parent / "docs" / "ea4cnn"


def _script():
    return load_script("ea4cnn_section5")


def test_the_section51_page_is_generated_from_its_data():
    data = json.loads((DOCS / "section51.json").read_text())
    assert (DOCS / "SECTION51.md").read_text() == _script().page51(data)


def test_section51_is_paired_and_repeated():
    results = json.loads((DOCS / "section51.json").read_text())["results"]
    for arm in ("EA", "RS", "EA-no-speciation", "EA1", "EA2", "EA3"):
        assert len(results[arm]) >= 5, f"{arm}: fewer than 5 runs"
    for seed in results["EA"]:  # every EA arm of a seed starts from the same networks
        hashes = {results[a][seed]["initial_networks"] for a in results if a != "RS" and seed in results[a]}
        assert len(hashes) == 1, f"seed {seed}: the arms did not start from the same initial networks"
        # RS trains the EA run's own initial networks: same sizes, and its first training is a
        # replay of the EA's (same initial weights and batches): the same accuracy, to a few images
        nets = results["RS"][seed]["networks"]
        assert [n["params"] for n in nets] == results["EA"][seed]["initial_params"]
        for n in nets:
            assert abs(n["val_accuracy"][0] - n["ea_first_training"]) < 0.005


def test_a_hand_edited_number_does_not_survive():
    mod = _script()
    data = json.loads((DOCS / "section51.json").read_text())
    data["results"]["EA"]["0"]["final_best"] += 0.01
    assert mod.page51(data) != (DOCS / "SECTION51.md").read_text()
