"""Pareto ranking (NSGA-II, Deb et al. 2002): non-dominated fronts and crowding distance.

Objective vectors are maximised in every component.  Pure: plain tuples in, plain lists out
(NumPy inside: the dominance matrix of 1,000 individuals is one vectorised comparison, where the
pure-Python double loop took seconds -- every worker ranks the population each step); serves
every algorithm with more than one objective (seeds 000 and 001, the testbed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Vector = Sequence[float]


def dominates(a: Vector, b: Vector) -> bool:
    """a is at least as good as b everywhere and better somewhere (maximising)."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def fronts(points: Sequence[Vector]) -> list[list[int]]:
    """Indices of ``points`` by non-dominated front: front 0 is dominated by no point, front 1
    only by points of front 0, ...  Deb's non-dominated sort, O(M N^2) as one NumPy
    comparison; -inf components (a missing objective) are dominated by any finite value."""
    n = len(points)
    if n == 0:
        return []
    x = np.asarray(points, dtype=float)
    ge = (x[:, None, :] >= x[None, :, :]).all(axis=2)
    gt = (x[:, None, :] > x[None, :, :]).any(axis=2)
    dom = ge & gt  # dom[i, j]: i dominates j
    count = dom.sum(axis=0)  # how many points dominate j
    out: list[list[int]] = []
    remaining = np.ones(n, dtype=bool)
    while remaining.any():
        current = np.flatnonzero(remaining & (count == 0))
        out.append([int(i) for i in current])
        remaining[current] = False
        count = count - dom[current].sum(axis=0)
    return out


def crowding(points: Sequence[Vector], front: Sequence[int]) -> dict[int, float]:
    """NSGA-II crowding distance of each index of one ``front``: the sum over objectives of the
    normalised gap between its two neighbours; the extremes of each objective get infinity."""
    dist = {i: 0.0 for i in front}
    if len(front) <= 2:
        return {i: math.inf for i in front}
    for k in range(len(points[front[0]])):
        order = sorted(front, key=lambda i: points[i][k])
        lo, hi = points[order[0]][k], points[order[-1]][k]
        dist[order[0]] = dist[order[-1]] = math.inf
        if hi == lo:
            continue
        for a, i, b in zip(order, order[1:], order[2:]):
            dist[i] += (points[b][k] - points[a][k]) / (hi - lo)
    return dist


def rank_and_crowding(points: Sequence[Vector]) -> list[tuple[int, float]]:
    """(front index, crowding distance) of every point: the NSGA-II sort key (lower front,
    then larger distance, wins)."""
    out: list[tuple[int, float]] = [(0, 0.0)] * len(points)
    for r, front in enumerate(fronts(points)):
        for i, d in crowding(points, front).items():
            out[i] = (r, d)
    return out


def better(a: tuple[int, float], b: tuple[int, float]) -> bool:
    """NSGA-II's crowded comparison: a better front, or the same front and more room."""
    return a[0] < b[0] or (a[0] == b[0] and a[1] > b[1])


def survivors(points: Sequence[Vector], keep: int) -> list[int]:
    """(mu + lambda) truncation: the ``keep`` best indices by front, then crowding distance;
    ties keep the earlier index (deterministic, so every worker computes the same plan)."""
    key = rank_and_crowding(points)
    order = sorted(range(len(points)), key=lambda i: (key[i][0], -key[i][1], i))
    return sorted(order[:keep])


class RankCache:
    """NSGA-II keys of one population, recomputed only when its members change: a worker ranks
    the alive population every step, and between two births nothing about it moves (for a
    generational algorithm, nothing during a whole generation)."""

    def __init__(self) -> None:
        self._ids: tuple[str, ...] = ()
        self._keys: list[tuple[int, float]] = []

    def rank(self, ids: Sequence[str], vector) -> list[tuple[int, float]]:
        """(front, crowding) per id, in ``ids`` order; ``vector(id)`` gives an objective vector."""
        key = tuple(ids)
        if key != self._ids:
            self._ids, self._keys = key, rank_and_crowding([vector(i) for i in ids])
        return self._keys
