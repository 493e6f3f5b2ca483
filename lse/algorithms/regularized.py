"""Regularized evolution (Real et al. 2019, *Regularized Evolution for Image Classifier
Architecture Search*, the AmoebaNet paper): the successor of seed 004, and a strong baseline
on NAS benchmarks.

    sample S alive individuals at random; the best of them is the parent
    kill the OLDEST alive individual (aging), not the loser
    mutate a copy of the parent (the 11 mutations of seed 004), train, give birth

Aging replaces kill-the-loser: every individual dies after about population_size births, so
a lucky early individual cannot hold the population forever.  The random control draws the
parent uniformly and still kills the oldest.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from lse.algorithms.base import Algorithm, Child, Context, PopulationView, Selection
from lse.algorithms.real2017 import mutate_one
from lse.core.records import IndividualRecord
from lse.core.selection import tournament_of


class RegularizedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tournament_size: int = Field(
        10, ge=1, description="S: alive individuals sampled per selection (all of them when fewer are alive)"
    )


class Regularized(Algorithm):
    name = "regularized"
    paper = "Real et al. 2019, Regularized Evolution for Image Classifier Architecture Search"
    summary = "tournament of S picks the parent; the oldest individual dies (aging evolution)"
    Options = RegularizedOptions
    random_control = True

    def select(self, view: PopulationView, rng: random.Random, *, full: bool, ctx: Context | None = None) -> Selection:
        candidates = [(m.id, m.fitness) for m in view.members]
        if self.config.selection == "random":
            parent = candidates[rng.randrange(len(candidates))][0]
        else:
            parent = tournament_of(candidates, min(self.options.tournament_size, len(candidates)), rng)
        if not full:
            return Selection((parent,))
        # The oldest still alive dies: in birth order, the first whose kill succeeds (ids sort by
        # birth).  Under concurrency each loser of the race takes the next oldest.
        by_age = sorted(m.id for m in view.members if m.id != parent)
        return Selection((parent,), kill_first_of=tuple(by_age[:64]))

    def vary(self, parents: Sequence[IndividualRecord], rng: random.Random, plan=None, ctx: Context | None = None) -> Child:
        return mutate_one(self, parents, rng, ctx)


