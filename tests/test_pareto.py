"""NSGA-II ranking against fronts and crowding distances computed by hand."""

import math

from lse.core.pareto import crowding, dominates, fronts, rank_and_crowding, survivors

# (accuracy, -params), maximised:
#   a (0.9, -5)  b (0.8, -3)  c (0.7, -1)   : front 0 (a trade-off curve)
#   d (0.8, -5)  dominated by a              : front 1 with e
#   e (0.6, -2)  dominated by b and c        : front 1
#   f (0.5, -6)  dominated by everyone       : front 2
P = [(0.9, -5), (0.8, -3), (0.7, -1), (0.8, -5), (0.6, -2), (0.5, -6)]


def test_dominance():
    assert dominates((1, 1), (0, 1)) and not dominates((1, 1), (1, 1)) and not dominates((1, 0), (0, 1))


def test_fronts_by_hand():
    assert fronts(P) == [[0, 1, 2], [3, 4], [5]]
    assert fronts([]) == []
    assert fronts([(1, 1), (1, 1)]) == [[0, 1]]  # equal points do not dominate each other


def test_crowding_by_hand():
    d = crowding(P, [0, 1, 2])
    # extremes infinite; b: accuracy gap (0.9-0.7)/(0.9-0.7) = 1, params gap (-1-(-5))/4 = 1
    assert d[0] == math.inf and d[2] == math.inf and math.isclose(d[1], 2.0)
    assert crowding(P, [3, 4]) == {3: math.inf, 4: math.inf}


def test_rank_and_survivors():
    rc = rank_and_crowding(P)
    assert [r for r, _ in rc] == [0, 0, 0, 1, 1, 2]
    assert survivors(P, 3) == [0, 1, 2]
    assert survivors(P, 5) == [0, 1, 2, 3, 4]
    # a four-point front, keep 3: the interior point with less room goes
    Q = [(1.0, 0.0), (0.9, 0.5), (0.55, 0.55), (0.0, 1.0)]
    assert fronts(Q) == [[0, 1, 2, 3]]
    d = crowding(Q, [0, 1, 2, 3])
    assert d[1] < d[2]  # (0.9,0.5) is squeezed between (1,0) and (0.55,0.55)
    assert survivors(Q, 3) == [0, 2, 3]
