"""The dashboard's pure panel helpers (lse.dashboard.panels): Pareto front, species, generations,
ages, curve steps -- on hand-made rows, in milliseconds."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lse.reports import curves as cv
from lse.dashboard import panels


@pytest.mark.parametrize("a, b, expected", [
    ((1, 1), (0, 0), True),
    ((1, 0), (0, 0), True),
    ((1, 1), (1, 1), False),  # equal: neither dominates
    ((1, 0), (0, 1), False),  # a trade-off
    ((0, 0), (1, 1), False),
    ((2, 2, 2), (2, 2, 1), True),
])
def test_dominates(a, b, expected):
    assert panels.dominates(a, b) is expected


@pytest.mark.parametrize("points, front", [
    ({}, []),
    ({"a": (1, 1)}, ["a"]),
    ({"a": (1, 0), "b": (0, 1), "c": (0.5, 0.5), "d": (0.2, 0.2)}, ["a", "b", "c"]),
    ({"a": (1, 1), "b": (1, 1), "c": (0, 0)}, ["a", "b"]),  # duplicates are all on the front
    ({"a": (3, 1, 1), "b": (1, 3, 1), "c": (1, 1, 3), "d": (1, 1, 1)}, ["a", "b", "c"]),
    ({"a": (1, 2), "b": (1, 1)}, ["a"]),  # equal first objective, better second
])
def test_non_dominated(points, front):
    assert panels.non_dominated(points) == front


@given(st.dictionaries(st.text(min_size=1, max_size=3), st.tuples(*[st.integers(0, 4)] * 3), max_size=25))
def test_non_dominated_matches_brute_force(points):
    brute = sorted(k for k, p in points.items() if not any(panels.dominates(q, p) for q in points.values()))
    assert panels.non_dominated(points) == brute


def _row(i, **kw):
    return {"id": f"i{i}", "born_at": 1000.0 + i, "alive": True, "val": 0.5, **kw}


def test_pareto_panel_only_alive_and_complete_vectors():
    rows = [
        _row(0, objectives={"compression": 0.9, "reconstruction": 0.1}),
        _row(1, objectives={"compression": 0.1, "reconstruction": 0.9}),
        _row(2, objectives={"compression": 0.05, "reconstruction": 0.05}),
        _row(3, objectives={"compression": 1.0, "reconstruction": 1.0}, alive=False),  # dead: not in the front
        _row(4, objectives={"compression": 0.5}),  # incomplete vector: left out
        _row(5),  # no objectives (schema v1)
    ]
    p = panels.pareto_panel(rows)
    assert p["objectives"] == ["compression", "reconstruction"]
    assert [q["id"] for q in p["points"]] == ["i0", "i1", "i2"]
    assert [q["id"] for q in p["points"] if q["front"]] == ["i0", "i1"] and p["front_size"] == 2


def test_panels_absent_without_their_fields():
    rows = [_row(0), _row(1, objectives={"val_accuracy": 0.5})]  # one objective: no front
    assert panels.pareto_panel(rows) is None
    assert panels.species_panel(rows, now=2000.0) is None
    assert panels.generation_panel(rows) is None
    assert panels.age_panel(rows) is None


def test_alive_counts_over_time():
    out = panels.alive_counts_over_time([("a", 0, 10), ("a", 5, None), ("b", 2, 3)], [0, 2, 5, 10])
    assert out == {"a": [1, 1, 2, 1], "b": [0, 1, 0, 0]}


def test_species_panel_counts_alive_per_species():
    rows = [_row(0, species="s1", alive=False, killed_at=1010.0), _row(5, species="s1"), _row(6, species="s2"),
            _row(7, species="s2", failed=True, alive=False)]  # born dead: never counted
    p = panels.species_panel(rows, now=1020.0, points=3)
    assert p["times"] == [1000.0, 1010.0, 1020.0]
    assert p["species"] == {"s1": [1, 1, 1], "s2": [0, 1, 1]}


def test_generation_panel_uses_fitness_then_validation():
    rows = [_row(0, barrier_generation=0, fitness=0.2), _row(1, barrier_generation=0, val=0.4),
            _row(2, barrier_generation=1, fitness=0.9), _row(3, barrier_generation=1, val=None, fitness=None)]
    g = panels.generation_panel(rows)["generations"]
    assert g[0] == {"generation": 0, "count": 2, "best": 0.4, "mean": pytest.approx(0.3)}
    assert g[1] == {"generation": 1, "count": 2, "best": 0.9, "mean": 0.9}


def test_age_panel_histogram_of_alive():
    rows = [_row(i, age=a) for i, a in enumerate([0, 1, 1, 5])] + [_row(9, age=100, alive=False)]
    a = panels.age_panel(rows, bins=3)
    assert a["alive"] == 4 and a["max"] == 5 and a["bin_width"] == 2
    assert [(b["from"], b["count"]) for b in a["bins"]] == [(0, 3), (4, 1)]


def test_curve_steps_are_the_changes_plus_the_end():
    inds = [cv.Individual(f"{k}", None, 100.0 + k, v, 10.0) for k, v in enumerate([0.1, 0.3, 0.2, None, 0.5, 0.4])]
    c = cv.progress_curve(inds, {"1": 0.25}, start=100.0)
    s = panels.curve_steps(c)
    assert s["steps"] == 3 and s["best_id"] == ["0", "1", "4", "4"]
    assert s["val"] == [0.1, 0.3, 0.5, 0.5] and s["test"] == [None, 0.25, None, None]
    assert s["flops"] == [10.0, 20.0, 50.0, 60.0]
    assert list(itertools.pairwise(s["hours"])) and all(a <= b for a, b in itertools.pairwise(s["hours"]))


@pytest.mark.parametrize("cfg, names", [
    ({"max_hours": 1.0, "finish_minutes": 10}, ["individuals", "hours", "evolution (--finish)", "FLOPs"]),
    ({"max_hours": 1.0}, ["individuals", "hours", "FLOPs"]),
    ({"max_hours": 1.0, "finish_minutes": "ten"}, ["individuals", "hours", "FLOPs"]),  # a hostile file: left out
])
def test_the_overview_shows_when_evolution_stops_for_the_finish(cfg, names):
    o = panels.overview_panel([], [], cfg, now=1800.0, start=0.0, pop="p", label="p", config_error=None,
                              stop_file=False)
    stops = {s["name"]: s for s in o["stops"]}
    assert list(stops) == names
    if "evolution (--finish)" in stops:
        assert stops["evolution (--finish)"]["limit"] == pytest.approx(50 / 60)
        assert stops["evolution (--finish)"]["value"] == pytest.approx(0.5) and stops["hours"]["unit"] == "h"
