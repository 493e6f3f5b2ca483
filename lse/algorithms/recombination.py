"""Real et al. 2017, section 5: the paper's algorithm with one of its three recombinations.

    while True:
        a, b = two alive individuals drawn at random; kill the worse   # 3.1, as real2017
        A = the better
        if recombining: B = the better of two more (no kill)          # a second parent
        child = variation of A (and B):
          probabilities: A's structure, B's mutation distribution      # Tuson & Ross 1998
          weights:       A's structure, each module's trained weights
                         from A or B with probability 1/2               # lse.core.crossover
          fusion:        A's and B's backbones side by side, widened
                         layer by layer, weights from both              # lse.core.fusion
        if evolving probabilities: mutate the child's distribution     # lse.core.distribution
        mutate the child (its own distribution, if it has one)         # 3.2, one or a burst
        train with inheritance, fitness = validation accuracy          # 3.4, 3.6

``recombination none`` with ``evolve_probabilities false`` makes the same kind of decisions as
real2017 (the default algorithm stays real2017 itself).  Only the first pair's loser dies, so a
step is still one death and one birth.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lse.algorithms.base import Algorithm, Child, Context, PopulationView, Selection
from lse.core.crossover import recombine
from lse.core.distribution import evolve, normalise
from lse.core.dna import DNA
from lse.core.fusion import fuse
from lse.core.mutations import mutate_many
from lse.core.provenance import Provenance
from lse.core.records import IndividualRecord
from lse.core.selection import decide

KINDS = ("none", "probabilities", "weights", "fusion")


class RecombinationOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    recombination: Literal["none", "probabilities", "weights", "fusion"] = Field(
        "none", description="none | probabilities (structure of one parent, mutation distribution of another) | "
        "weights (trained weights of two parents, per module) | fusion (both backbones side by side)")
    evolve_probabilities: bool = Field(
        False, description="each DNA carries its mutation distribution, mutated every child (on for recombination probabilities)")
    probability_sigma: float = Field(0.2, gt=0, le=5, description="log-normal step of the evolved distribution")


class Recombination(Algorithm):
    name = "recombination"
    paper = "Real et al. 2017, section 5: evolved mutation probabilities, weight recombination, structure fusion"
    summary = "real2017's tournament plus one of the paper's three recombinations (-o recombination=...)"
    Options = RecombinationOptions
    random_control = True

    @property
    def evolving(self) -> bool:
        return self.options.evolve_probabilities or self.options.recombination == "probabilities"

    @property
    def two_parents(self) -> bool:
        return self.options.recombination != "none"

    def initial(self, rng: random.Random, input_channels: int, ctx: Context | None = None) -> Child:
        child = super().initial(rng, input_channels, ctx)
        if self.evolving and child.dna.mutation_probabilities is None:
            p = normalise(self.config.mutation_probabilities)
            child = Child(child.dna.model_copy(update={"mutation_probabilities": p}))
        return child

    def select(self, view: PopulationView, rng: random.Random, *, full: bool, ctx: Context | None = None) -> Selection:
        members = [(m.id, m.fitness) for m in view.members]
        d = decide(self.config.selection, members, rng)
        if not self.two_parents:
            return Selection(parents=(d.parent,), kills=(d.kill,) if full else ())
        rest = [c for c in members if c[0] not in (d.kill, d.parent)]
        # the second parent: the better of two more (no kill; never the first pair's loser, which
        # may be dead by the time it is read); with too few alive, the child has one parent
        second = decide(self.config.selection, rest, rng).parent if len(rest) >= 2 else (rest[0][0] if rest else None)
        parents = (d.parent,) if second is None else (d.parent, second)
        return Selection(parents=parents, kills=(d.kill,) if full else ())

    def vary(self, parents: Sequence[IndividualRecord], rng: random.Random, plan=None, ctx: Context | None = None) -> Child:
        a = parents[0]
        b = parents[1] if len(parents) > 1 else None
        kind = self.options.recombination if b is not None else "none"
        dna = DNA.model_validate(a.dna)
        provenance = Provenance(default=a.id)
        details: dict = {"recombination": kind}
        if kind == "weights":
            dna, provenance = recombine(dna, a.id, DNA.model_validate(b.dna), b.id, rng)
        elif kind == "fusion":
            dna, provenance = fuse(dna, a.id, DNA.model_validate(b.dna), b.id)
        # whether the child really has something of B (two trivial parents fuse into A; a
        # weight crossover may draw every module from A)
        details["recombined"] = kind == "probabilities" or (kind != "none" and {a.id, b.id} <= provenance.parents())
        probabilities = self.config.mutation_probabilities
        if self.evolving:
            source = b if kind == "probabilities" else a
            inherited = DNA.model_validate(source.dna).mutation_probabilities
            p = evolve(inherited or normalise(self.config.mutation_probabilities), rng, self.options.probability_sigma)
            dna = dna.model_copy(update={"mutation_probabilities": p})
            probabilities = p
            details["probabilities_from"] = source.id
        dna, record = mutate_many(dna, rng, probabilities, self.context(ctx).mutations_per_child,
                                     insert_channels=self.config.insert_channels)
        if self.evolving:  # mutations rebuild the DNA from its data: the distribution rides along
            assert dna.mutation_probabilities == probabilities
        ids = (a.id,) if kind == "none" else (a.id, b.id)
        if kind == "fusion":
            details["structure_from"] = provenance.default  # the deeper parent (lse.core.fusion)
        return Child(dna, ids, record, provenance.then(record), details)


__all__ = ["KINDS", "Recombination", "RecombinationOptions"]
