"""TOPSIS (Hwang & Yoon 1981) as seed 000 uses it to pick one autoencoder from the front.

Seed 000, section 3.1: criteria are weighted by the user (equal weights by default), both
maximised; the positive ideal is compression = accuracy = 1.0 and the negative ideal 0.0 (FIXED
points, not the best and worst of the candidates); the score is the ratio of L2 distances
d- / (d+ + d-).  On the paper's Table 2 this picks autoencoder 507 (0.681) ahead of 130 (0.611).

Hand-written, not a library: pymcdm, scikit-criteria and pyDecision derive the ideal and
anti-ideal from the candidates after normalising the columns, which changes the scores (and
with a two-point front can change the pick); the paper's fixed ideals in raw units are what a
reproduction needs, and the method is a few lines.  Pure: no torch, no filesystem.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def topsis(points: Sequence[Sequence[float]], weights: Sequence[float] | None = None,
           ideal: Sequence[float] | None = None, anti_ideal: Sequence[float] | None = None) -> list[float]:
    """Closeness d- / (d+ + d-) of each point (criteria maximised), in [0, 1].

    ``weights`` (default equal) multiply each criterion's difference; ``ideal`` defaults to 1.0
    and ``anti_ideal`` to 0.0 in every criterion (the paper's)."""
    if not points:
        return []
    m = len(points[0])
    if any(len(p) != m for p in points):
        raise ValueError("every point needs the same number of criteria")
    w = [1.0 / m] * m if weights is None else [float(x) for x in weights]
    if len(w) != m or any(x < 0 or not math.isfinite(x) for x in w) or sum(w) <= 0:
        raise ValueError(f"weights {list(w)}: give {m} finite non-negative numbers with a positive sum")
    s = sum(w)
    w = [x / s for x in w]
    best = [1.0] * m if ideal is None else [float(x) for x in ideal]
    worst = [0.0] * m if anti_ideal is None else [float(x) for x in anti_ideal]
    out = []
    for p in points:
        d_plus = math.sqrt(sum((wi * (pi - bi)) ** 2 for wi, pi, bi in zip(w, p, best)))
        d_minus = math.sqrt(sum((wi * (pi - ni)) ** 2 for wi, pi, ni in zip(w, p, worst)))
        total = d_plus + d_minus
        out.append(0.0 if total == 0 else d_minus / total)
    return out


def pick(points: Sequence[Sequence[float]], weights: Sequence[float] | None = None) -> int:
    """Index of the TOPSIS choice (ties: the earlier index)."""
    scores = topsis(points, weights)
    if not scores:
        raise ValueError("TOPSIS needs at least one candidate")
    return max(range(len(scores)), key=lambda i: (scores[i], -i))
