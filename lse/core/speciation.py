"""EA4CNN's ages and age-level speciation (seed 001, section 3.4).

* A network's **age** counts its trainings: an initial network is ``INITIAL_AGE`` after its
  first training, a child is its parent's age + 1 (it is the parent trained once more), capped
  at ``age_max`` (~|P|/2) "to increase the selection pressure for networks that were trained
  many times".  A child that crossover or mutation *changed* and whose fitness fell below its
  parent's is reset to ``INITIAL_AGE``: it starts over as a young network.
* A **species** is the set of individuals of one age.  Replacement of P u Q keeps, for each age
  level present, the |P| / levels best of that level, then fills up with the best of the rest
  ("if there are 5 age levels and the population size is 15 then 3 best-performing candidate
  CNNs are selected for each age level").  Without speciation it keeps the |P| best.

Pure: no torch, no filesystem.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: the age of a network after its first training (initial, or after a reset)
INITIAL_AGE = 1


def child_age(parent_age: int | None, age_max: int) -> int:
    """The age of a child before its fitness is known: one training more than its parent."""
    return min(age_max, (parent_age or 0) + 1) if parent_age is not None else INITIAL_AGE


def settled_age(age: int, *, changed: bool, parent_fitness: float | None, fitness: float | None) -> int:
    """The age once the child's fitness is known: reset when a change lowered the fitness."""
    if changed and fitness is not None and parent_fitness is not None and fitness < parent_fitness:
        return INITIAL_AGE
    return age


def species_name(age: int | None) -> str | None:
    return None if age is None else f"age-{age}"


@dataclass(frozen=True)
class Candidate:
    """One member of P u Q for replacement: ``key`` sorts best first (ties broken by id)."""

    id: str
    age: int
    key: tuple  # compared ascending: e.g. (-fitness, -accuracy)


def survivors(pool: Sequence[Candidate], size: int, *, speciation: bool = True) -> list[str]:
    """Ids of the ``size`` survivors of ``pool`` (deterministic: any worker computes the same).

    With speciation: quota = max(1, size // levels) best per age level, then the best of the
    rest until ``size``; if the quotas alone exceed ``size`` (more levels than places), the
    best ``size`` of the level winners.  Without: the ``size`` best."""
    ranked = sorted(pool, key=lambda c: (c.key, c.id))
    if not speciation or len(ranked) <= size:
        return [c.id for c in ranked[:size]]
    levels = sorted({c.age for c in ranked})
    quota = max(1, size // len(levels))
    chosen: list[Candidate] = []
    for level in levels:
        chosen += [c for c in ranked if c.age == level][:quota]
    chosen = sorted(chosen, key=lambda c: (c.key, c.id))[:size]
    taken = {c.id for c in chosen}
    for c in ranked:
        if len(chosen) >= size:
            break
        if c.id not in taken:
            chosen.append(c)
            taken.add(c.id)
    return [c.id for c in ranked if c.id in taken]  # best first


__all__ = ["INITIAL_AGE", "Candidate", "child_age", "settled_age", "species_name", "survivors"]
