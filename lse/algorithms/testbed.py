"""A small generational multi-objective algorithm that exercises every part of the seam.

Not a paper: the smallest honest algorithm that uses what the neighbouring papers need, so the
infrastructure is proven before they arrive (issue 11) -- a whole-population selector, two
parents, weights from both, objective vectors and the generation barrier:

    generation 0: population_size initial individuals
    each generation: population_size children, each from
        two NSGA-II binary tournaments over the alive population (front, then crowding)
        recombine (lse.core.crossover): structure of the first parent, weights of both
        one mutation of the 11 (seed 004)
    objectives: validation accuracy and -parameters (both maximised)
    replacement: (mu + lambda) NSGA-II truncation of parents + children to population_size

Fitness (in the folder names) is the validation accuracy; selection uses the objective vectors
read through the population view.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from lse.algorithms.base import Algorithm, Child, Context, PopulationView, ReplacementPlan, Selection
from lse.core.crossover import recombine
from lse.core.dna import DNA
from lse.core.mutations import mutate_many
from lse.core.pareto import RankCache, better, survivors
from lse.core.provenance import Provenance
from lse.core.records import IndividualRecord


def objective_vector(objectives: Mapping[str, float] | None) -> tuple[float, float]:
    objectives = objectives or {}
    return (objectives.get("val_accuracy", float("-inf")), objectives.get("neg_params", float("-inf")))


class ParetoTestbed(Algorithm):
    name = "pareto-testbed"
    paper = "none (infrastructure testbed: NSGA-II selection, recombination, generation barrier)"
    summary = "generational NSGA-II on (accuracy, -parameters) with two-parent recombination"
    generational = True
    uses_records = True

    def __init__(self, config) -> None:
        super().__init__(config)
        self._ranks = RankCache()  # the alive population rarely changes between two steps

    def _rank(self, view: PopulationView, ids: list[str]) -> list[tuple[int, float]]:
        return self._ranks.rank(ids, lambda i: objective_vector(getattr(view.record(i), "objectives", None)))

    def select(self, view: PopulationView, rng: random.Random, *, full: bool, ctx: Context | None = None) -> Selection:
        ids = [m.id for m in view.members if view.record(m.id) is not None]
        if len(ids) < 2:
            ids = [m.id for m in view.members]
        key = self._rank(view, ids)

        def binary() -> str:
            a, b = rng.sample(range(len(ids)), 2)
            return ids[b] if better(key[b], key[a]) else ids[a]

        first, second = binary(), binary()
        return Selection(parents=(first, second) if second != first else (first,))

    def vary(self, parents: Sequence[IndividualRecord], rng: random.Random, plan=None, ctx: Context | None = None) -> Child:
        first = parents[0]
        dna = DNA.model_validate(first.dna)
        provenance = Provenance(default=first.id)
        if len(parents) > 1:
            dna, provenance = recombine(dna, first.id, DNA.model_validate(parents[1].dna), parents[1].id, rng)
        dna, record = mutate_many(dna, rng, self.config.mutation_probabilities, self.context(ctx).mutations_per_child,
                                     insert_channels=self.config.insert_channels)
        if record.reset_all:
            provenance = Provenance(reset_all=True)
        elif record.changed_edges:
            blocked = tuple(f"edges.{e}." for e in record.changed_edges)
            provenance = Provenance(default=provenance.default, blocked=blocked,
                                    by_prefix={p: q for p, q in provenance.by_prefix.items() if not p.startswith(blocked)})
        return Child(dna, tuple(p.id for p in parents), record, provenance)

    def objectives(self, metrics: Mapping[str, float], params: int | None, child: Child | None = None) -> dict[str, float]:
        return {"val_accuracy": metrics["val_accuracy"], "neg_params": -float(params or 0)}

    def replace(self, parents: Sequence[IndividualRecord], children: Sequence[IndividualRecord]) -> ReplacementPlan:
        alive_children = [c for c in children if c.fitness is not None]
        pool = list(parents) + alive_children
        keep = set(survivors([objective_vector(r.objectives) for r in pool], self.config.population_size))
        kept_ids = {pool[i].id for i in keep}
        return ReplacementPlan(
            kill=tuple(p.id for p in parents if p.id not in kept_ids),
            alive=tuple(c.id for c in alive_children if c.id in kept_ids),
            dead=tuple(c.id for c in children if c.id not in kept_ids),
        )
