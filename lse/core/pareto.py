"""Pareto ranking (NSGA-II, Deb et al. 2002): non-dominated fronts and crowding distance.

Objective vectors are maximised in every component.  Pure: plain tuples in, plain lists out;
serves every algorithm with more than one objective (seeds 000 and 001, the testbed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Vector = Sequence[float]


def dominates(a: Vector, b: Vector) -> bool:
    """a is at least as good as b everywhere and better somewhere (maximising)."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def fronts(points: Sequence[Vector]) -> list[list[int]]:
    """Indices of ``points`` by non-dominated front: front 0 is dominated by no point, front 1
    only by points of front 0, ...  Deb's fast non-dominated sort, O(M N^2)."""
    n = len(points)
    dominated_by_me: list[list[int]] = [[] for _ in range(n)]
    count = [0] * n  # how many points dominate i
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(points[i], points[j]):
                dominated_by_me[i].append(j)
                count[j] += 1
            elif dominates(points[j], points[i]):
                dominated_by_me[j].append(i)
                count[i] += 1
    out: list[list[int]] = []
    current = [i for i in range(n) if count[i] == 0]
    while current:
        out.append(current)
        nxt = []
        for i in current:
            for j in dominated_by_me[i]:
                count[j] -= 1
                if count[j] == 0:
                    nxt.append(j)
        current = sorted(nxt)
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
