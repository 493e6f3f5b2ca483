"""Seed 003: training a fixed CNN's weights by a genetic algorithm, in three schemes.

The architecture never changes (:mod:`lse.core.fixednet`: the MNIST net of Table 2 or the LeNet of
Table 3); the weights are the genes, under the Accordion or the traditional encoding
(:mod:`lse.core.chromosome`).  A child is never trained by gradient (recipe "none"): it is built
from its parents' weights and evaluated; its fitness is its accuracy on the experiment's
validation split, a fixed seeded subset of the TRAINING split (``--validation-size``: its size).

    ga-steady-state  (4.1.1)  each step: with p 0.7 two roulette parents -> ONE crossover child,
                              else one roulette parent -> one mutated clone; the least fit dies
                              (a kill like any other: a rename race between the workers)
    ga-generational  (4.1.2)  mating pool of population_size roulette draws, paired in draw
                              order; each pair -> two complementary children; each child mutated
                              with p 0.2 (in place); the children replace the whole population
    ga-elitism       (4.1.3)  the 10 fittest pass unchanged; a pool of 20 roulette draws; each of
                              the 90 children: two random pool members -> one crossover child,
                              mutated with p 0.2

Selection is roulette, P_i = f_i / sum f (:func:`lse.core.selection.roulette`).  The generational
schemes run on the store's generation barrier, one child per slot: the mating pool is a pure
function of P_g (seeded by its ids) and slot k takes pair k // 2 (complementary when k is odd), so
a generation's children do not depend on which worker made which, or when.

Every initial individual is the net with Glorot-normal weights drawn from ``init_seed`` and its
index (slot of generation 0, or birth rank of the steady state), so runs with the same
``init_seed`` start from the same initial population -- the paper's comparison protocol.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from lse.algorithms.base import Algorithm, Child, Context, PopulationView, Recipe, ReplacementPlan, Selection
from lse.core.chromosome import Encoding, Variation, derive_seed
from lse.core.fixednet import FixedNet
from lse.core.provenance import Provenance
from lse.core.records import IndividualRecord
from lse.core.selection import least_fit, mating_pool, roulette


class WeightGAOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    net: str = Field("mnist-table2", pattern="^(mnist-table2|lenet-table3)$",
                     description="the fixed net: mnist-table2 (Table 2, 4,540 weights on 28x28x1) or lenet-table3 (Table 3)")
    encoding: Encoding = Field("accordion", description="accordion: a gene is a filter or a neuron; traditional: a scalar")
    init_seed: int = Field(0, description="seed of the initial population (same seed: same initial weights)")
    mutation_ratio: float = Field(0.1, ge=0.0, le=1.0, description="genes mutated in each section, as a fraction")
    filter_sigma: float = Field(0.5, gt=0.0, description="a mutated filter value becomes N(v, sigma)")
    crossover_rate: float = Field(0.7, ge=0.0, le=1.0, description="steady-state: share of children made by crossover")
    mutation_probability: float = Field(0.2, ge=0.0, le=1.0,
                                        description="generational, elitism: probability that a child is mutated")
    elites: int = Field(10, ge=0, description="elitism: fittest individuals copied to the next generation")
    pool_size: int = Field(20, ge=2, description="elitism: roulette draws in the mating pool")
    fitness_batch: int | None = Field(None, ge=1, description=(
        "fitness = accuracy on a fresh random batch of this many training images per child (the paper: 32, "
        "one iteration = one batch); None: on the validation split (a fixed subset). Either way the "
        "validation accuracy is recorded"))


class _WeightGA(Algorithm):
    genome = "fixed-net"
    """What the three schemes share: genome, initial population, operators, no gradient."""

    paper = "seed 003: Training CNNs with genetic algorithms (Accordion encoding; steady-state, generational, elitism)"
    Options = WeightGAOptions

    def initial(self, rng: random.Random, input_channels: int, ctx: Context | None = None) -> Child:
        ctx = self.context(ctx)
        index = ctx.slot if ctx.generation in (None, 0) else None  # later: a refill, not P_0
        details = {"init": {"seed": self.options.init_seed, "index": index}, **self._fitness_details()}
        if index is None:  # no index known: a fresh draw (not part of the shared initial population)
            details["init"]["draw"] = rng.randrange(2**63)
        return Child(FixedNet(net=self.options.net), genome="fixed-net", details=details)

    def _fitness_details(self) -> dict:
        """What the trainer measures the fitness on (lse.runners.weights)."""
        return {"fitness_batch": self.options.fitness_batch} if self.options.fitness_batch else {}

    def objectives(self, metrics, params, child=None) -> dict[str, float]:
        out = {"val_accuracy": metrics["val_accuracy"]}
        if "batch_accuracy" in metrics:
            out["batch_accuracy"] = metrics["batch_accuracy"]
        return out

    def fitness(self, objectives) -> float:
        # the batch's accuracy when the fitness is measured on changing batches
        return objectives.get("batch_accuracy", objectives["val_accuracy"])

    def recipe(self) -> Recipe:
        return Recipe(optimizer="none")

    def _variation(self, op: str, *, mask_seed: int | None = None, complement: bool = False,
                   mutation_seed: int | None = None) -> Variation:
        o = self.options
        return Variation(op=op, encoding=o.encoding, mask_seed=mask_seed, complement=complement,
                         mutation_seed=mutation_seed, mutation_ratio=o.mutation_ratio, filter_sigma=o.filter_sigma)

    def _child(self, parents: Sequence[IndividualRecord], v: Variation, **details) -> Child:
        # The gene plan (extra.variation) is the provenance: inherit()'s row map cannot say
        # "this scalar from the second parent", so the trainer carries the plan out for both
        # encodings; the provenance only asks the worker for the parents' weights.
        return Child(FixedNet(net=self.options.net), parents=tuple(p.id for p in parents),
                     provenance=Provenance(default=parents[0].id), genome="fixed-net",
                     details={"variation": v.model_dump(mode="json"), **self._fitness_details(), **details})


def _candidates(view: PopulationView) -> list[tuple[str, float | None]]:
    return [(m.id, m.fitness) for m in view.members]


class WeightSteadyState(_WeightGA):
    name = "ga-steady-state"
    summary = "seed 003 steady state: 70% crossover / 30% mutation of roulette parents, the least fit dies"

    def select(self, view: PopulationView, rng: random.Random, *, full: bool, ctx: Context | None = None) -> Selection:
        cands = _candidates(view)
        first = roulette(cands, rng)
        parents = (first,)
        if rng.random() < self.options.crossover_rate:
            # the second parent is drawn among the others: a crossover of an individual with
            # itself would be a clone, a wasted evaluation
            parents = (first, roulette([c for c in cands if c[0] != first], rng))
        if not full:
            return Selection(parents)
        victim = least_fit([c for c in cands if c[0] not in parents])
        return Selection(parents, (victim,) if victim is not None else ())

    def vary(self, parents: Sequence[IndividualRecord], rng: random.Random, plan=None, ctx: Context | None = None) -> Child:
        if len(parents) >= 2:
            return self._child(parents[:2], self._variation("crossover", mask_seed=rng.randrange(2**63)))
        return self._child(parents[:1], self._variation("mutation", mutation_seed=rng.randrange(2**63)))


class _Generational(_WeightGA):
    """A mating pool per generation, the same for every worker: a pure function of P_g."""

    generational = True

    def __init__(self, config) -> None:
        super().__init__(config)
        # a cache of a pure function of the population (the same pool for every worker)
        self._pool: tuple[tuple[str, ...], int, list[str]] = ((), 0, [])

    def _pool_of(self, view: PopulationView, size: int) -> tuple[int, list[str]]:
        cands = sorted(_candidates(view))
        key = tuple(c[0] for c in cands)
        if self._pool[0] != key:
            seed = derive_seed(self.config.seed, self.options.init_seed, *key)
            self._pool = (key, seed, mating_pool(cands, size, random.Random(seed)))
        return self._pool[1], self._pool[2]

    def _slot_or_draw(self, rng: random.Random, ctx: Context | None) -> int:
        # A worker always says which slot it fills (its Context); a direct caller may not.
        slot = self.context(ctx).slot
        return slot if slot is not None else rng.randrange(self.slots(1))

    def vary(self, parents: Sequence[IndividualRecord], rng: random.Random, plan=None, ctx: Context | None = None) -> Child:
        ids = tuple(p.id for p in parents)
        if not (isinstance(plan, tuple) and len(plan) == 2 and plan[0] == ids and isinstance(plan[1], Variation)):
            raise ValueError(f"vary({', '.join(ids)}) without the plan of the selection that chose them")
        v = plan[1]
        if v.op == "crossover" and len(parents) < 2:
            v = v.model_copy(update={"op": "mutation", "mask_seed": None, "complement": False,
                                     "mutation_seed": v.mutation_seed if v.mutation_seed is not None
                                     else derive_seed(v.mask_seed, "clone")})
        return self._child(parents, v, slot=self.context(ctx).slot)

    def _decide(self, parents: tuple[str, ...], v: Variation) -> Selection:
        if len(parents) == 2 and parents[0] == parents[1]:
            parents = parents[:1]  # drawn twice into the pool and paired with itself
        return Selection(parents, plan=(parents, v))  # vary() carries out this variation


class WeightGenerational(_Generational):
    name = "ga-generational"
    summary = "seed 003 generational: roulette mating pool, complementary pairs, mutation p 0.2, full replacement"

    def select(self, view: PopulationView, rng: random.Random, *, full: bool, ctx: Context | None = None) -> Selection:
        n = self.slots(1)
        seed, pool = self._pool_of(view, n)
        slot = self._slot_or_draw(rng, ctx)
        pair = slot // 2
        a, b = pool[(2 * pair) % len(pool)], pool[(2 * pair + 1) % len(pool)]
        mutated = random.Random(derive_seed(seed, "mutate?", slot)).random() < self.options.mutation_probability
        v = self._variation("crossover", mask_seed=derive_seed(seed, "pair", pair), complement=slot % 2 == 1,
                            mutation_seed=derive_seed(seed, "mutation", slot) if mutated else None)
        return self._decide((a, b), v)

    def replace(self, parents: Sequence[IndividualRecord], children: Sequence[IndividualRecord]) -> ReplacementPlan:
        alive = tuple(c.id for c in children if c.fitness is not None)
        return ReplacementPlan(kill=tuple(p.id for p in parents), alive=alive,
                               dead=tuple(c.id for c in children if c.fitness is None))


class WeightElitism(_Generational):
    name = "ga-elitism"
    summary = "seed 003 elitism: the 10 fittest pass, 90 crossover children of a 20-member roulette pool"

    def slots(self, generation: int) -> int:
        if generation == 0:
            return self.config.population_size
        return max(1, self.config.population_size - self.options.elites)

    def select(self, view: PopulationView, rng: random.Random, *, full: bool, ctx: Context | None = None) -> Selection:
        seed, pool = self._pool_of(view, self.options.pool_size)
        slot = self._slot_or_draw(rng, ctx)
        draw = random.Random(derive_seed(seed, "parents", slot))
        i, j = draw.sample(range(len(pool)), 2)  # parents go back into the pool after each child
        mutated = draw.random() < self.options.mutation_probability
        v = self._variation("crossover", mask_seed=derive_seed(seed, "mask", slot),
                            mutation_seed=derive_seed(seed, "mutation", slot) if mutated else None)
        return self._decide((pool[i], pool[j]), v)

    def replace(self, parents: Sequence[IndividualRecord], children: Sequence[IndividualRecord]) -> ReplacementPlan:
        ranked = sorted(parents, key=lambda r: (-(r.fitness if r.fitness is not None else float("-inf")), r.id))
        elite = {r.id for r in ranked[: self.options.elites]}
        return ReplacementPlan(kill=tuple(p.id for p in parents if p.id not in elite),
                               alive=tuple(c.id for c in children if c.fitness is not None),
                               dead=tuple(c.id for c in children if c.fitness is None))

