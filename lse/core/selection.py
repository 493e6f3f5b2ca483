"""Selection decisions of the evolutionary loop (paper section 3.1), as pure functions.

A worker lists the alive individuals as ``(id, fitness)`` pairs and asks this module which
one to kill and which one to copy; the store then carries the decision out with atomic
renames.  Nothing here touches torch or the filesystem, so the tests read like the paper.

Two schemes:

* ``tournament`` (section 3.1): draw two distinct individuals uniformly at random, compare
  their validation accuracies; the worse is killed, the better becomes the parent.  A tie is
  broken by the random draw order (the first drawn is the parent), so no id is favoured.
* ``random`` -- the paper's random-search control (section 4: "we disabled the selection
  mechanism, thereby reproducing and killing random individuals").  We draw the same pair of
  distinct individuals and then ignore fitness: the first drawn is killed, the second is the
  parent.  Keeping the pair (instead of two independent draws) keeps the population dynamics
  of the control identical to the tournament's -- one death and one birth per step, the
  parent never being the one just killed -- so the only thing that differs is selection.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Sequence

SELECTIONS = ("tournament", "random")

Candidate = tuple[str, "float | None"]


@dataclass(frozen=True)
class Decision:
    """One evolutionary step's choice: kill ``kill``, copy and mutate ``parent``."""

    kill: str
    parent: str


def _fitness(value: float | None) -> float:
    # An alive individual always has a fitness; a missing or NaN one (a hand-edited or
    # half-recovered entry) must lose every comparison rather than crash the worker.
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return -math.inf
    return float(value)


def pick_two(candidates: Sequence[Candidate], rng: random.Random) -> tuple[Candidate, Candidate]:
    """Two distinct candidates drawn uniformly at random, in draw order."""
    if len(candidates) < 2:
        raise ValueError(f"selection needs at least 2 alive individuals, got {len(candidates)}")
    i, j = rng.sample(range(len(candidates)), 2)
    return candidates[i], candidates[j]


def tournament(candidates: Sequence[Candidate], rng: random.Random) -> Decision:
    """Section 3.1: of two random individuals, kill the worse and parent the better."""
    a, b = pick_two(candidates, rng)
    if _fitness(b[1]) > _fitness(a[1]):
        a, b = b, a
    return Decision(kill=b[0], parent=a[0])


def random_search(candidates: Sequence[Candidate], rng: random.Random) -> Decision:
    """The random-search control: kill one random individual, parent another, no comparison."""
    a, b = pick_two(candidates, rng)
    return Decision(kill=a[0], parent=b[0])


def decide(selection: str, candidates: Sequence[Candidate], rng: random.Random) -> Decision:
    """Dispatch on the experiment's ``selection`` field (``tournament`` or ``random``)."""
    if selection == "tournament":
        return tournament(candidates, rng)
    if selection == "random":
        return random_search(candidates, rng)
    raise ValueError(f"unknown selection {selection!r}; valid: {', '.join(SELECTIONS)}")


def tournament_of(candidates: Sequence[Candidate], size: int, rng: random.Random) -> str:
    """Regularized evolution's selection: draw ``size`` distinct candidates uniformly at random;
    the fittest is the parent (a tie goes to the first drawn)."""
    if not candidates:
        raise ValueError("selection needs at least 1 alive individual")
    drawn = [candidates[i] for i in rng.sample(range(len(candidates)), min(size, len(candidates)))]
    best = drawn[0]
    for c in drawn[1:]:
        if _fitness(c[1]) > _fitness(best[1]):
            best = c
    return best[0]


def _weight(value: float | None) -> float:
    # Roulette needs non-negative weights: a missing, NaN or negative fitness weighs nothing.
    f = _fitness(value)
    return f if f > 0 and math.isfinite(f) else 0.0


def roulette(candidates: Sequence[Candidate], rng: random.Random) -> str:
    """Fitness-proportional selection (seed 003, eq. 1): candidate i with P_i = f_i / sum f,
    by one uniform draw against the cumulative sums.  All weights zero: uniform."""
    if not candidates:
        raise ValueError("selection needs at least 1 alive individual")
    weights = [_weight(f) for _, f in candidates]
    total = math.fsum(weights)
    if total <= 0:
        return candidates[rng.randrange(len(candidates))][0]
    r = rng.random() * total
    acc = 0.0
    for (cid, _), w in zip(candidates, weights):
        acc += w
        if r < acc:
            return cid
    return next(cid for (cid, _), w in zip(reversed(candidates), reversed(weights)) if w > 0)


def mating_pool(candidates: Sequence[Candidate], size: int, rng: random.Random) -> list[str]:
    """``size`` roulette draws with replacement (seed 003's mating pool: the fitter may enter
    it more than once), in draw order."""
    return [roulette(candidates, rng) for _ in range(size)]


def least_fit(candidates: Sequence[Candidate]) -> str | None:
    """The least fit candidate (seed 003's steady-state replacement); a tie goes to the oldest
    (ids sort by birth)."""
    if not candidates:
        return None
    return min(candidates, key=lambda c: (_fitness(c[1]), c[0]))[0]
