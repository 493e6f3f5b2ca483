"""Real et al. 2017, *Large-Scale Evolution of Image Classifiers* (seed 004), section 3.

    while True:
        a, b = two alive individuals drawn at random          # 3.1
        kill the worse, copy the better                        # (kill only while full)
        mutate the copy with one of the 11 mutations           # 3.2
        train it with weight inheritance, SGD                  # 3.4, 3.6
        fitness = validation accuracy; give birth              # 3.1

The random-search control (section 4) draws the same pair and ignores fitness
(:func:`lse.core.selection.random_search`); the no-inheritance control is the experiment's
``inheritance`` switch, which every algorithm obeys.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from lse.algorithms.base import Algorithm, Child, Context, PopulationView, Selection
from lse.core.dna import DNA
from lse.core.mutations import mutate_many
from lse.core.provenance import Provenance
from lse.core.records import IndividualRecord
from lse.core.selection import decide


def mutate_one(algorithm: Algorithm, parents: Sequence[IndividualRecord], rng: random.Random,
               ctx: Context | None = None) -> Child:
    """Copy the parent and apply one mutation (section 3.2) -- or, during a burst (section 5),
    ``ctx.mutations_per_child`` in a row; inherit by name and shape (section 3.6), or as a
    network morphism where the experiment asks for it (``morph``, not the paper)."""
    parent = parents[0]
    dna, record = mutate_many(DNA.model_validate(parent.dna), rng, algorithm.config.mutation_probabilities,
                              algorithm.context(ctx).mutations_per_child,
                              insert_channels=algorithm.config.insert_channels)
    inherit = Provenance.morphism if algorithm.config.morph else Provenance.from_mutation
    return Child(dna, (parent.id,), record, inherit(parent.id, record))


class Real2017(Algorithm):
    name = "real2017"
    paper = "Real et al. 2017, Large-Scale Evolution of Image Classifiers (seed 004)"
    summary = "pairwise tournament: kill the worse, mutate a copy of the better (the paper's algorithm)"
    random_control = True

    def select(self, view: PopulationView, rng: random.Random, *, full: bool, ctx: Context | None = None) -> Selection:
        d = decide(self.config.selection, [(m.id, m.fitness) for m in view.members], rng)
        return Selection(parents=(d.parent,), kills=(d.kill,) if full else ())

    def vary(self, parents: Sequence[IndividualRecord], rng: random.Random, plan=None, ctx: Context | None = None) -> Child:
        return mutate_one(self, parents, rng, ctx)
