"""The algorithm seam: the paper's algorithm makes exactly the decisions it made before the
seam existed, the registry and options, and the other algorithms' pure decisions."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from _decision_trace import CASES, decision_trace
from lse.algorithms import ALGORITHMS, algorithm_class, make_algorithm
from lse.algorithms.base import Member, PopulationView
from lse.config import ExperimentConfig
from lse.errors import ConfigError

EXPECTED = json.loads((Path(__file__).parent / "data" / "real2017-decisions.json").read_text())


@pytest.mark.parametrize("case", sorted(CASES))
def test_real2017_makes_the_recorded_decisions(tmp_path, case):
    """Parents, mutations, child DNA, fitness and the order of kills of one seeded worker are
    those recorded from the worker before the seam (tests/data/real2017-decisions.json)."""
    assert decision_trace(tmp_path, case) == EXPECTED[case]


def test_registry_lists_every_algorithm_with_its_paper():
    assert {"real2017", "regularized", "pareto-testbed"} <= set(ALGORITHMS)
    for name, cls in ALGORITHMS.items():
        assert cls.name == name and cls.paper and cls.summary


def test_unknown_algorithm_and_bad_options_are_one_line_errors():
    with pytest.raises(ConfigError, match="unknown algorithm 'nope'; valid: real2017"):
        ExperimentConfig.parse({"algorithm": {"name": "nope"}})
    with pytest.raises(ConfigError, match="tournament_size"):
        ExperimentConfig.parse({"algorithm": {"name": "regularized", "options": {"tournament_size": 0}}})
    with pytest.raises(ConfigError, match="Extra inputs|extra"):
        ExperimentConfig.parse({"algorithm": {"name": "regularized", "options": {"size": 3}}})
    with pytest.raises(ConfigError, match="no random-search control"):
        ExperimentConfig.parse({"algorithm": {"name": "pareto-testbed"}, "selection": "random"})


def test_options_are_saved_with_defaults_and_old_experiments_read_as_real2017():
    cfg = ExperimentConfig(algorithm={"name": "regularized"})
    assert cfg.algorithm.options == {"tournament_size": 10}
    old = ExperimentConfig.from_json(json.dumps({"schema_version": 1, "population_size": 6, "selection": "random"}))
    assert old.algorithm.name == "real2017" and old.selection == "random"
    assert ExperimentConfig(algorithm={"name": "regularized"}).differences(ExperimentConfig()) == [
        "algorithm: {'name': 'regularized', 'options': {'tournament_size': 10}} -> {'name': 'real2017', 'options': {}}"
    ]


def _view(fits):
    # ids sort by birth: index 0 is the oldest
    return PopulationView([Member(f"20240101T00000000000{i}Z-0000000{i}", f) for i, f in enumerate(fits)])


def test_regularized_kills_the_oldest_not_the_loser():
    algo = make_algorithm(ExperimentConfig(algorithm={"name": "regularized", "options": {"tournament_size": 3}}))
    view = _view([0.9, 0.1, 0.2, 0.3, 0.4])
    for seed in range(50):
        sel = algo.select(view, random.Random(seed), full=True)
        parent = sel.parents[0]
        # the oldest dies even though it is the fittest, unless it is the parent itself; if
        # another worker killed it first, the next oldest
        others = [m.id for m in view.members if m.id != parent]
        assert sel.kills == () and sel.kill_first_of == tuple(others)
        assert algo.select(view, random.Random(seed), full=False).kill_first_of == ()


def test_regularized_parent_is_the_best_of_its_sample():
    algo = make_algorithm(ExperimentConfig(algorithm={"name": "regularized", "options": {"tournament_size": 5}}))
    view = _view([0.5, 0.1, 0.9, 0.3, 0.2])
    # S = the whole population: always the fittest
    assert {algo.select(view, random.Random(s), full=False).parents[0] for s in range(20)} == {view.members[2].id}
    small = make_algorithm(ExperimentConfig(algorithm={"name": "regularized", "options": {"tournament_size": 1}}))
    picked = {small.select(view, random.Random(s), full=False).parents[0] for s in range(200)}
    assert picked == {m.id for m in view.members}  # S = 1: uniform, fitness ignored


def test_random_control_of_regularized_ignores_fitness():
    algo = make_algorithm(ExperimentConfig(algorithm={"name": "regularized"}, selection="random"))
    view = _view([0.0, 0.0, 0.0, 0.0, 1.0])
    counts = {m.id: 0 for m in view.members}
    for s in range(1000):
        counts[algo.select(view, random.Random(s), full=False).parents[0]] += 1
    assert all(150 < c < 250 for c in counts.values()), counts


def test_algorithm_class_error_names_valid():
    with pytest.raises(ValueError, match="valid: real2017, regularized"):
        algorithm_class("amoeba")
