"""EA4CNN (seed 001, Algorithm 1): a generational GA over layer lists with a size-aware fitness,
age-level speciation, one-point crossover and optional Q7.8 fixed-point evaluation.

    P = initial population (random layer lists, or copies of a trained seed network)
    each generation g:
        |P| children, in pairs: two binary tournaments on P_g (on the size-aware fitness)
            pick a pair, whose two children fill slots 2k and 2k+1 of the generation
            one-point crossover with p_cross gives both offspring of one cut
                (lse.core.layer_variation.crossover_pair); else the two parents themselves
            each child then one of MO1..MO6 with p_mut (lse.core.layer_variation.mutate)
            neither: the parent itself, trained once more (the paper's identity step)
        every child inherits every reusable weight, repaired (lse.core.layerlist.provenance)
        and trains one epoch (SGD, lr = its gene, batch 32)
        age: parent + 1, capped at |P|/2; reset when a change lowered the fitness
        P_{g+1} = replacement with speciation of P_g u Q (lse.core.speciation)
    fitness: a * (k / ln(s_rel + 1) + 1) if a >= a_min else 0 (lse.core.size_fitness)

Scale: the paper trains one epoch of TinyDNN per child; here ``epochs`` and ``data_fraction``
set what "one epoch" is (a fraction of the training split per epoch at small scale).

The reference network of s_rel is the seed network (its copies carry their own size as the
reference), else the best initial network (highest validation accuracy, then fewest parameters),
frozen when generation 0 closes: every child of later generations records it in its objectives
(``reference_params``) and selection reads it back from the population.  Generation 0 cannot
know it while it trains, so an initial network's folder fitness uses s_rel = 1 (its objectives
say ``reference_params`` 0); selection and replacement re-score every record against the frozen
reference, so the decisions are consistent.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lse.algorithms.base import Algorithm, Child, Context, PopulationView, Recipe, ReplacementPlan, Selection
from lse.core.layer_variation import MUTATIONS, PAPER_MUTATION_PROBABILITIES, crossover, crossover_pair, mutate
from lse.core.layerlist import DATASET_SHAPES, LayerList, provenance, random_genome
from lse.core.mutations import MutationRecord
from lse.core.records import IndividualRecord
from lse.core.size_fitness import SizeFitness
from lse.core.speciation import INITIAL_AGE, Candidate, child_age, settled_age, species_name, survivors


class EA4CNNOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    p_mut: float = Field(0.7, ge=0.0, le=1.0, description="probability that a child is mutated (MO1-MO6)")
    p_cross: float = Field(0.35, ge=0.0, le=1.0, description="probability of one-point crossover of the two parents")
    children_per_pair: int = Field(2, ge=1, le=2, description=(
        "children of one selected pair (paper: 2, both offspring of the crossover, each mutated on its own)"))
    mutation_probabilities: dict[str, float] = Field(
        dict(PAPER_MUTATION_PROBABILITIES), description="MO1..MO6 -> probability (paper's)")
    k: float = Field(0.5, ge=0.0, description="weight of the size reward in the fitness (paper: 0.5; 1 in section 5.2)")
    a_min: float | None = Field(None, ge=0.0, le=1.0, description="minimal accuracy; None: 0.6 on CIFAR, 0.8 on (Fashion-)MNIST")
    s_rel_floor: float = Field(0.01, gt=0.0, description="floor on s_rel: no reward for being over 1/floor times smaller")
    age_max: int | None = Field(None, ge=1, description="age cap; None: population_size // 2")
    speciation: bool = Field(True, description="replacement keeps |P|/levels per age level (off: the |P| best)")
    fixed_point: bool = Field(False, description="fitness from the Q7.8 fixed-point accuracy (both are always recorded)")
    epochs: float = Field(1.0, gt=0.0, description="epochs of training per child per generation")
    data_fraction: float = Field(1.0, gt=0.0, le=1.0, description="fraction of the training split that is one epoch")
    batch_size: int = Field(32, ge=1, description="SGD batch size")
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="SGD momentum (TinyDNN's plain SGD: 0)")
    weight_decay: float = Field(0.0, ge=0.0, description="L2 weight decay")
    min_layers: int = Field(1, ge=0, description="layers of a random initial network, at least")
    max_layers: int = Field(8, ge=1, description="layers of a random initial network, at most")
    max_filters: int | None = Field(None, ge=1, description="filters of a new convolution; None: 12 (MNIST) / 20 (CIFAR)")
    max_pool: int = Field(4, ge=2, le=8, description="largest pooling window")
    fc_width: int | None = Field(None, ge=1, description="initial FC width; None: 50 (MNIST) / 70 (CIFAR)")
    learning_rate: float = Field(0.1, gt=0.0, description="initial learning rate")
    input_size: int | None = Field(None, ge=1, description="image side; None: from the data set (28 or 32)")
    seed_genome: dict | None = Field(None, description="layer list of a trained seed network (section 5.2)")
    seed_weights: str | None = Field(None, description="safetensors file with the seed network's weights")
    reference_params: int | None = Field(None, ge=1, description="parameters of the reference network; None: seed or best initial")

    @field_validator("mutation_probabilities")
    @classmethod
    def _known(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(MUTATIONS))
        if unknown or any(p < 0 for p in v.values()) or sum(v.values()) <= 0:
            raise ValueError(f"give weights >= 0 (positive sum) for names among {', '.join(MUTATIONS)}; got {v}")
        return v

    @field_validator("seed_genome")
    @classmethod
    def _genome(cls, v: dict | None) -> dict | None:
        return None if v is None else LayerList.model_validate(v).model_dump(mode="json")


@dataclasses.dataclass(frozen=True)
class PairPlan:
    """What select() decided for one child of a pair, handed to vary(): the frozen reference,
    whether the pair crosses, the seed of its cut (the same for both children), and which of
    the two children this one is (0: head of the first parent, 1: head of the second)."""

    reference: int | None
    cross: bool = False
    cut_seed: int = 0
    side: int = 0


class EA4CNN(Algorithm):
    genome = "layerlist"
    name = "ea4cnn"
    paper = "EA4CNN: neuroevolution of CNNs with fixed-point inference (seed 001)"
    summary = ("generational GA over layer lists: size-aware fitness, age speciation, one-point crossover, "
               "MO1-MO6, Q7.8 fixed-point evaluation")
    Options = EA4CNNOptions
    generational = True
    uses_records = True

    def __init__(self, config) -> None:
        super().__init__(config)
        o = self.options
        if (o.seed_genome is None) != (o.seed_weights is None):
            raise ValueError("seed_genome and seed_weights go together (the network and its trained weights)")
        side, self.num_classes = DATASET_SHAPES.get(config.dataset, (28, 10))
        self.input_side = o.input_size or side
        cifar = config.dataset.startswith("cifar")
        self.a_min = o.a_min if o.a_min is not None else (0.6 if cifar else 0.8)
        self.max_filters = o.max_filters or (20 if cifar else 12)
        self.fc_width = o.fc_width or (70 if cifar else 50)
        self.age_max = o.age_max or max(1, config.population_size // 2)
        self.size_fitness = SizeFitness(k=o.k, a_min=self.a_min, s_rel_floor=o.s_rel_floor)

    # -- scores --------------------------------------------------------------------------------
    def accuracy(self, rec: IndividualRecord) -> float:
        obj = rec.objectives or {}
        return float(obj.get("val_accuracy_fx" if self.options.fixed_point else "val_accuracy", 0.0))

    def reference(self, records: Sequence[IndividualRecord]) -> int | None:
        """The reference network's parameters: the option, else the frozen value the records
        carry, else the best initial network among ``records`` (P_1 = the initial survivors)."""
        if self.options.reference_params:
            return self.options.reference_params
        frozen = [int(r.objectives.get("reference_params", 0)) for r in records if r.objectives]
        frozen = [f for f in frozen if f > 0]
        if frozen:
            return frozen[0]
        initial = [r for r in records if not r.parents and r.params]
        if not initial:
            return None
        best = min(initial, key=lambda r: (-self.accuracy(r), r.params, r.id))
        return int(best.params)

    def score(self, rec: IndividualRecord, reference: int | None) -> float:
        """The fitness of ``rec`` against ``reference`` (its folder fitness may predate it)."""
        if rec.fitness is None or not rec.params:
            return float("-inf")
        return self.size_fitness(self.accuracy(rec), int(rec.params), reference or int(rec.params))

    def _key(self, rec: IndividualRecord, reference: int | None) -> tuple:
        # fitness first; among equal fitness (e.g. several below a_min, all 0) the more accurate
        return (-self.score(rec, reference), -self.accuracy(rec))

    # -- the seam ------------------------------------------------------------------------------
    def initial(self, rng: random.Random, input_channels: int, ctx: Context | None = None) -> Child:
        o = self.options
        if o.seed_genome is not None:
            genome = LayerList.model_validate(o.seed_genome)
            return Child(genome, genome="layerlist", age=INITIAL_AGE, species=species_name(INITIAL_AGE),
                         details={"seed_weights": o.seed_weights, "evaluate_only": True, "reference": "self"})
        genome = random_genome(rng, input_side=self.input_side, min_layers=o.min_layers, max_layers=o.max_layers,
                               max_filters=self.max_filters, max_pool=o.max_pool, fc_width=self.fc_width,
                               learning_rate=o.learning_rate)
        return Child(genome, genome="layerlist", age=INITIAL_AGE, species=species_name(INITIAL_AGE),
                     details={"reference_params": 0})

    def select(self, view: PopulationView, rng: random.Random, *, full: bool, ctx: Context | None = None) -> Selection:
        recs = sorted((r for r in (view.record(m.id) for m in view.members) if r is not None and r.fitness is not None),
                      key=lambda r: r.id)
        if len(recs) < 2:
            ids = [m.id for m in view.members]
            return Selection(parents=tuple(rng.sample(ids, 2)) if len(ids) >= 2 else tuple(ids))
        ref = self.reference(recs)
        paired = self.options.children_per_pair == 2 and ctx is not None and ctx.generation is not None \
            and ctx.slot is not None
        # Two children per pair: slots 2k and 2k+1 of a generation are the two offspring of one
        # pair, which may be made by two workers; both draw the pair from the same seeded rng.
        pick = random.Random(f"ea4cnn-pair:{self.config.seed}:{ctx.generation}:{ctx.slot // 2}") if paired else rng

        def binary() -> IndividualRecord:  # the paper's two-member tournament
            a, b = pick.sample(recs, 2)
            return min((a, b), key=lambda r: (self._key(r, ref), r.id))

        first, second = binary(), binary()
        plan = PairPlan(ref, cross=pick.random() < self.options.p_cross, cut_seed=pick.randrange(2**31))
        if paired and ctx.slot % 2 == 1:
            first, second, plan = second, first, dataclasses.replace(plan, side=1)
        parents = (first.id, second.id) if second.id != first.id else (first.id,)
        return Selection(parents=parents, plan=plan if paired else plan.reference)

    def _cross(self, genomes: dict[str, LayerList], parents: Sequence[IndividualRecord], rng: random.Random,
               plan) -> tuple | None:
        """The crossing this child is made of, or None: one child per pair draws its own, a
        pair's two children take the two sides of one cut."""
        a, b = parents[0], parents[1]
        if not isinstance(plan, PairPlan):
            if rng.random() >= self.options.p_cross:
                return None
            return crossover(genomes[a.id], a.id, genomes[b.id], b.id, rng, input_side=self.input_side)
        if not plan.cross:
            return None
        # the cut is drawn with the parents in the pair's order, so both sides find the same one
        x, y = (a, b) if plan.side == 0 else (b, a)
        both = crossover_pair(genomes[x.id], x.id, genomes[y.id], y.id, random.Random(plan.cut_seed),
                              input_side=self.input_side)
        return None if both is None else both[plan.side]

    def vary(self, parents: Sequence[IndividualRecord], rng: random.Random, plan=None, ctx: Context | None = None) -> Child:
        o = self.options
        reference = plan.reference if isinstance(plan, PairPlan) else plan
        ref = reference if isinstance(reference, int) and reference > 0 else self.reference(parents)
        a = parents[0]
        genomes = {p.id: LayerList.model_validate(p.dna) for p in parents}
        genome = genomes[a.id]
        origins = {layer.id: (a.id, layer.id, genome) for layer in genome.convs()}
        head = (a.id, genome)
        used = [a.id]
        details: dict = {}
        names = []
        crossing = self._cross(genomes, parents, rng, plan) if len(parents) > 1 else None
        if crossing is not None:
            b = parents[1]
            genome = crossing.child
            origins = {cid: (pid, lid, genomes[pid]) for cid, (pid, lid) in crossing.origins.items()}
            head = (crossing.head, genomes[crossing.head])
            used = [a.id, b.id]
            details["crossover"] = {"cut": list(crossing.cut), "head_from": a.id, "tail_from": b.id}
            names.append("crossover")
        if isinstance(plan, PairPlan):
            details["pair_side"] = plan.side
        reset: frozenset[str] = frozenset()
        mutation = None
        if rng.random() < o.p_mut:
            genome, var = mutate(genome, rng, input_side=self.input_side, probabilities=o.mutation_probabilities,
                                 max_filters=self.max_filters, max_pool=o.max_pool)
            reset = var.reset
            names.append(var.name)
            mutation = MutationRecord(name=var.name, details=var.details)
            details["reset"] = sorted(reset)
        if mutation is None:
            mutation = MutationRecord(name="crossover" if names else "identity", details=details.get("crossover", {}))
        prov = provenance(genome, origins, head, num_classes=self.num_classes, reset=reset)
        details.update({"reference_params": ref or 0, "parent_score": self.score(a, ref), "changed": bool(names),
                        "operators": names or ["identity"]})
        age = child_age(a.age if a.age is not None else INITIAL_AGE, self.age_max)
        return Child(genome, tuple(used), mutation, prov, details, genome="layerlist", age=age,
                     species=species_name(age))

    def recipe(self) -> Recipe:
        # plain SGD with the child's learning-rate gene, the paper's batch, no augmentation
        o = self.options
        return Recipe(optimizer="sgd", epochs=o.epochs, data_fraction=o.data_fraction, batch_size=o.batch_size,
                      momentum=o.momentum, weight_decay=o.weight_decay, augment=False, lr_schedule="constant")

    def objectives(self, metrics: Mapping[str, float], params: int | None, child: Child | None = None) -> dict[str, float]:
        acc, fx = float(metrics["val_accuracy"]), float(metrics["val_accuracy_fx"])
        n = int(params or 0)
        # the child's reference (vary() recorded it); a seed genome is its own reference
        details = child.details if child is not None else {}
        ref = n if details.get("reference") == "self" else int(details.get("reference_params", 0) or 0)
        s_raw, s_used = self.size_fitness.relative_size(n, ref if ref > 0 else max(n, 1))
        a = fx if self.options.fixed_point else acc
        return {"val_accuracy": acc, "val_accuracy_fx": fx, "params": float(n), "reference_params": float(ref),
                "s_rel": s_raw, "s_rel_used": s_used,
                "size_fitness": self.size_fitness(a, n, ref if ref > 0 else max(n, 1))}

    def fitness(self, objectives: Mapping[str, float]) -> float:
        return objectives["size_fitness"]

    def settle(self, child: Child, fitness: float | None) -> Child:
        if child.age is None or "changed" not in child.details:
            return child
        age = settled_age(child.age, changed=child.details["changed"], parent_fitness=child.details["parent_score"],
                          fitness=fitness)
        return dataclasses.replace(child, age=age, species=species_name(age))

    def replace(self, parents: Sequence[IndividualRecord], children: Sequence[IndividualRecord]) -> ReplacementPlan:
        sound = [c for c in children if c.fitness is not None and c.state == "alive"]
        pool = list(parents) + sound
        ref = self.reference(pool)
        keep = set(survivors([Candidate(r.id, r.age or INITIAL_AGE, self._key(r, ref)) for r in pool],
                             self.config.population_size, speciation=self.options.speciation))
        return ReplacementPlan(kill=tuple(p.id for p in parents if p.id not in keep),
                               alive=tuple(c.id for c in sound if c.id in keep),
                               dead=tuple(c.id for c in children if c.id not in keep))
