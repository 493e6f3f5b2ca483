"""Evolved mutation probabilities (paper section 5, after Tuson & Ross 1998).

An individual may carry its own distribution over the 11 mutations
(``DNA.mutation_probabilities``).  Its child is mutated with it, and the distribution itself is
mutated first, so distributions that produced fit children spread with them:

    p_i <- p_i * exp(sigma * N(0, 1))   for every mutation i   (log-normal self-adaptation)
    p_i <- max(p_i, FLOOR); p <- p / sum(p)

The floor keeps every mutation reachable (a probability that drifted to 0 could never come
back).  The result is always a valid distribution: the same 11 names, each finite and > 0,
summing to 1 (:func:`check_distribution`).

Pure: no torch, no filesystem.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping

from lse.core.mutations import MUTATION_NAMES

#: smallest probability a mutation keeps after self-adaptation (before renormalising)
FLOOR = 1e-3
#: tolerance on the sum of a stored distribution (JSON round trips of 11 floats)
SUM_TOLERANCE = 1e-6


def check_distribution(p: Mapping[str, float]) -> str | None:
    """What is wrong with ``p`` as a mutation distribution, or None when it is valid."""
    names = set(p)
    if names != set(MUTATION_NAMES):
        missing, extra = sorted(set(MUTATION_NAMES) - names), sorted(names - set(MUTATION_NAMES))
        return f"must name exactly the {len(MUTATION_NAMES)} mutations (missing {missing}, unknown {extra})"
    bad = sorted(k for k, v in p.items() if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0))
    if bad:
        return f"probabilities must be finite and > 0 ({', '.join(bad)} are not)"
    total = sum(p.values())
    if abs(total - 1.0) > SUM_TOLERANCE:
        return f"probabilities must sum to 1, got {total!r}"
    return None


def normalise(weights: Mapping[str, float] | None) -> dict[str, float]:
    """A distribution from relative weights (None: uniform), in MUTATION_NAMES order; names
    given weight 0 get the floor, so every mutation stays reachable once evolution starts."""
    w = {n: 1.0 for n in MUTATION_NAMES} if weights is None else {n: float(weights.get(n, 0.0)) for n in MUTATION_NAMES}
    total = sum(w.values())
    if total <= 0:
        raise ValueError("weights must have a positive sum")
    p = {n: max(v / total, FLOOR) for n, v in w.items()}
    total = sum(p.values())
    return {n: v / total for n, v in p.items()}


def evolve(p: Mapping[str, float], rng: random.Random, sigma: float) -> dict[str, float]:
    """The distribution mutated once (module docstring); always valid."""
    out = {n: max(p[n] * math.exp(sigma * rng.gauss(0.0, 1.0)), FLOOR) for n in MUTATION_NAMES}
    total = sum(out.values())
    return {n: v / total for n, v in out.items()}
