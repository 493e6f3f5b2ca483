"""The ecosystem of seed 002 (PyCortex): calibration, champions, the species cap and culling.

Pure functions over plain data (no torch, no filesystem), in the order of a PyCortex
generation after training:

* :func:`relative` -- eq. 2: f_r = g((f - mu) / sigma), g the logistic function, over a
  species (over the whole ecosystem without speciation); 0.5 for everyone when sigma = 0.
  The complexity c_r is scaled the same way on the parameter count, negated: the paper does
  not define complexity, and simpler networks must score higher for eq. 9 to cull complex ones.
* :func:`champions` -- the fittest network of each species (of the ecosystem without
  speciation): immune to culling, as are new offspring.
* :func:`cull` -- eq. 9: over the limit, remove networks one at a time with probability
  proportional to age / (f_r c_r) until the limit holds.
* :func:`species_allowed` -- the hard limit on the number of species.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

#: the logistic argument is clipped here: exp(40) is finite and g(-40) ~ 4e-18 > 0
_CLIP = 40.0


@dataclass(frozen=True)
class Network:
    """One network of the ecosystem, as calibration and culling see it."""

    id: str
    species: str
    fitness: float  # absolute fitness (validation accuracy)
    params: int  # parameter count: the complexity
    age: int  # epochs trained (section III-G)
    offspring: bool = False  # a new offspring: immune to culling


def logistic(x: float) -> float:
    x = max(-_CLIP, min(_CLIP, x))
    return 1.0 / (1.0 + math.exp(-x))


def relative(values: Sequence[float]) -> list[float]:
    """Eq. 2 over one group: logistic of the z-score; 0.5 each when sigma = 0 (one member, or
    all equal).  sigma is the population standard deviation."""
    if not values:
        return []
    mu = statistics.fmean(values)
    sigma = statistics.pstdev(values)
    if sigma == 0 or not math.isfinite(sigma):
        return [0.5] * len(values)
    return [logistic((v - mu) / sigma) for v in values]


def groups(nets: Sequence[Network], speciation: bool) -> dict[str, list[Network]]:
    """The calibration groups: species, or the whole ecosystem ("" ) without speciation."""
    out: dict[str, list[Network]] = {}
    for n in nets:
        out.setdefault(n.species if speciation else "", []).append(n)
    return out


def calibrate(nets: Sequence[Network], speciation: bool) -> dict[str, tuple[float, float]]:
    """id -> (f_r, c_r): relative fitness and relative simplicity within each group."""
    out: dict[str, tuple[float, float]] = {}
    for members in groups(nets, speciation).values():
        fr = relative([n.fitness for n in members])
        cr = relative([-float(n.params) for n in members])
        for n, f, c in zip(members, fr, cr):
            out[n.id] = (f, c)
    return out


def champions(nets: Sequence[Network], speciation: bool) -> set[str]:
    """The fittest network of each species (of the ecosystem without speciation); ties go to
    the older (smaller id)."""
    return {min(members, key=lambda n: (-n.fitness, n.id)).id for members in groups(nets, speciation).values()}


def cull_weights(nets: Sequence[Network], speciation: bool) -> dict[str, float]:
    """Eq. 9: age / (f_r c_r) for every network that may be culled (not a new offspring, not
    a champion)."""
    calib = calibrate(nets, speciation)
    immune = champions(nets, speciation)
    out = {}
    for n in nets:
        if n.offspring or n.id in immune:
            continue
        f, c = calib[n.id]
        out[n.id] = max(n.age, 0) / max(f * c, 1e-12)
    return out


def cull(nets: Sequence[Network], limit: int, rng: random.Random, speciation: bool, incoming: int = 0) -> list[str]:
    """Victims, drawn one at a time from eq. 9's weighted distribution (without replacement),
    until ``len(nets) - victims + incoming <= limit`` or nobody may be culled.  ``incoming``:
    children about to join (steady state: the one being trained)."""
    excess = len(nets) + incoming - limit
    if excess <= 0:
        return []
    weights = cull_weights(nets, speciation)
    victims: list[str] = []
    while len(victims) < excess and weights:
        ids = list(weights)
        w = [weights[i] for i in ids]
        pick = rng.choices(ids, weights=w)[0] if sum(w) > 0 else rng.choice(ids)
        victims.append(pick)
        del weights[pick]
    return victims


def species_allowed(key: str, present: Iterable[str], max_species: int) -> bool:
    """A genome may found a new species only while fewer than ``max_species`` exist."""
    present = set(present)
    return key in present or len(present) < max_species


def roulette(weights: Mapping[str, float], rng: random.Random) -> str:
    """One id drawn with probability proportional to its weight (uniform when all are 0)."""
    ids = list(weights)
    w = [max(0.0, weights[i]) for i in ids]
    return rng.choices(ids, weights=w)[0] if sum(w) > 0 else rng.choice(ids)
