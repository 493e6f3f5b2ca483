"""Seed 000, step 1: evolve convolutional autoencoders with a Pareto tournament.

    initial: one 3x3 convolution, stride 2, 2C filters (compresses by half; lse.core.autoencoder)
    each step: two alive individuals drawn at random;
        the one in the better non-dominated front wins; in the same front, the one with the
        larger NSGA-II crowding distance ("farther from the others") wins (lse.core.pareto),
        fronts computed over the whole alive population read through the view;
        the loser dies while the population is full (the baseline's steady state)
    variation: one of the 9 autoencoder mutations, redrawn until the code is smaller than the
        input (lse.core.autoencoder); weights inherited by layer id, except the changed layer
    training: SGD (momentum 0.9) on the MSE of the reconstruction, the experiment's steps
    objectives: compression c = 1 - |z|/|x| and reconstruction accuracy R (lse.nn.autoencoder)
    fitness (the folder name): the TOPSIS closeness of (c, R) to the ideal (1, 1) -- an absolute
        score, so `ls` ranks the population the way the final pick will (lse.core.topsis)

Step 2 (classifiers on the codes) is the paper's own algorithm (real2017) on the encoded data set
`lse ae encode` writes; `lse ae pipeline` runs both (lse.runners.twostep).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from lse.algorithms.base import Algorithm, Child, Context, PopulationView, Recipe, Selection
from lse.core.datasets import shape_of
from lse.core.autoencoder import AutoencoderGenome, initial_autoencoder, mutate
from lse.core.pareto import RankCache, better
from lse.core.provenance import Provenance
from lse.core.records import IndividualRecord
from lse.core.topsis import topsis

#: the data sets' (C, H, W) where the worker's trainer does not say (lse simulate's stand-in)
OBJECTIVES = ("compression", "reconstruction")


class AutoencoderOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    learning_rate: float = Field(0.01, gt=0, description="SGD learning rate of the MSE training")
    compression_weight: float = Field(0.5, ge=0, description="TOPSIS weight of compression in the fitness")
    reconstruction_weight: float = Field(0.5, ge=0, description="TOPSIS weight of reconstruction in the fitness")


def objective_vector(objectives: Mapping[str, float] | None) -> tuple[float, float]:
    objectives = objectives or {}
    return tuple(float(objectives.get(k, float("-inf"))) for k in OBJECTIVES)  # type: ignore[return-value]


def pareto_tournament(ids: Sequence[str], keys: Sequence[tuple[int, float]], rng: random.Random) -> tuple[str, str]:
    """(winner, loser) of two individuals drawn at random: better front, then more crowding
    distance; a full tie is decided by a coin."""
    a, b = rng.sample(range(len(ids)), 2)
    if better(keys[b], keys[a]) or (keys[a] == keys[b] and rng.random() < 0.5):
        a, b = b, a
    return ids[a], ids[b]


class TwoStepAutoencoder(Algorithm):
    genome = "autoencoder"
    name = "autoencoder"
    paper = "seed 000: two-step evolution (autoencoders by Pareto tournament, TOPSIS, classifiers on codes)"
    summary = "convolutional autoencoders, Pareto tournament on (compression, reconstruction), kill the loser"
    Options = AutoencoderOptions
    uses_records = True

    def __init__(self, config) -> None:
        super().__init__(config)
        self._ranks = RankCache()  # the alive population rarely changes between two steps

    def _shape(self, ctx: Context | None) -> tuple[int, int, int]:
        shape = self.context(ctx).input_shape or shape_of(self.config.dataset)
        if shape is None:
            raise ValueError(f"input shape of data set {self.config.dataset!r} unknown")
        return tuple(int(v) for v in shape)  # type: ignore[return-value]

    def initial(self, rng: random.Random, input_channels: int, ctx: Context | None = None) -> Child:
        return Child(initial_autoencoder(self._shape(ctx)), genome="autoencoder")

    def _rank(self, view: PopulationView, ids: list[str]) -> list[tuple[int, float]]:
        return self._ranks.rank(ids, lambda i: objective_vector(getattr(view.record(i), "objectives", None)))

    def select(self, view: PopulationView, rng: random.Random, *, full: bool, ctx: Context | None = None) -> Selection:
        ids = [m.id for m in view.members if view.record(m.id) is not None]
        if len(ids) < 2:
            ids = [m.id for m in view.members]
        if len(ids) < 2:
            return Selection(parents=(ids[0],)) if ids else Selection(parents=())
        winner, loser = pareto_tournament(ids, self._rank(view, ids), rng)
        return Selection(parents=(winner,), kills=(loser,) if full else ())

    def vary(self, parents: Sequence[IndividualRecord], rng: random.Random, plan=None, ctx: Context | None = None) -> Child:
        parent = parents[0]
        genome = AutoencoderGenome.model_validate(parent.dna)
        child, record = mutate(genome, rng)
        blocked = tuple(p for lid in record.changed_edges for p in (f"encoder.{lid}.", f"decoder.{lid}."))
        return Child(child, (parent.id,), record, Provenance(default=parent.id, blocked=blocked),
                     genome="autoencoder")

    def recipe(self) -> Recipe:
        # SGD on the MSE at the algorithm's learning rate, the experiment's steps
        return Recipe(learning_rate=self.options.learning_rate)

    def objectives(self, metrics: Mapping[str, float], params: int | None, child: Child | None = None) -> dict[str, float]:
        return {k: float(metrics[k]) for k in OBJECTIVES}

    def fitness(self, objectives: Mapping[str, float]) -> float:
        w = (self.options.compression_weight, self.options.reconstruction_weight)
        return topsis([objective_vector(objectives)], w)[0]
