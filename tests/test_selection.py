"""Selection (section 3.1) as pure decisions over (id, fitness) lists."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from lse.core.selection import Decision, decide, pick_two, random_search, tournament


@pytest.mark.parametrize(
    "pair, kill, parent",
    [
        ([("a", 0.1), ("b", 0.9)], "a", "b"),
        ([("a", 0.9), ("b", 0.1)], "b", "a"),
        ([("a", None), ("b", 0.0)], "a", "b"),  # a missing fitness loses
        ([("a", math.nan), ("b", 0.0)], "a", "b"),  # NaN loses too
    ],
)
def test_tournament_kills_the_worse_of_two(pair, kill, parent):
    for seed in range(20):  # whatever the draw order
        assert tournament(pair, random.Random(seed)) == Decision(kill=kill, parent=parent)


def test_tournament_ties_are_broken_by_draw_order_not_by_id():
    parents = Counter(tournament([("a", 0.5), ("b", 0.5)], random.Random(s)).parent for s in range(400))
    assert set(parents) == {"a", "b"} and min(parents.values()) > 120


def test_pairs_are_distinct_and_uniform():
    cands = [(str(i), float(i)) for i in range(5)]
    rng = random.Random(1)
    seen = Counter()
    for _ in range(5000):
        a, b = pick_two(cands, rng)
        assert a != b
        seen[frozenset((a[0], b[0]))] += 1
    assert len(seen) == 10 and min(seen.values()) > 350  # 10 pairs, ~500 each


def test_tournament_never_kills_the_best_and_never_parents_the_worst():
    cands = [(f"i{i}", i / 10) for i in range(10)]
    rng = random.Random(2)
    for _ in range(2000):
        d = tournament(cands, rng)
        assert d.kill != "i9" and d.parent != "i0"
        assert d.kill != d.parent


def test_random_search_ignores_fitness():
    cands = [("best", 1.0), ("worst", 0.0)]
    kills = Counter(random_search(cands, random.Random(s)).kill for s in range(400))
    assert min(kills["best"], kills["worst"]) > 120  # the best is killed about half the time
    for s in range(50):
        d = random_search(cands, random.Random(s))
        assert d.kill != d.parent


def test_decisions_are_reproducible_from_the_seed():
    cands = [(str(i), random.Random(i).random()) for i in range(30)]
    for sel in ("tournament", "random"):
        a = [decide(sel, cands, random.Random(7)) for _ in range(3)]
        assert a[0] == a[1] == a[2]


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="at least 2"):
        tournament([("a", 1.0)], random.Random(0))
    with pytest.raises(ValueError, match="valid: tournament, random"):
        decide("roulette", [("a", 1.0), ("b", 0.0)], random.Random(0))
