"""PyCortex (seed 002: deep CNNs evolved with node-level crossover, kernels of different shapes
and speciation; gitlab.com/cantordust/pycortex), on the steady-state worker loop.

A PyCortex generation trains every network of the ecosystem for one epoch on a random 10% of
the training data, calibrates (eq. 2), breeds offspring by node-level crossover and mutation,
and culls above the ecosystem limit (eq. 9).  Here each worker step is ONE of those trainings:

    view the ecosystem (records: species, age, fitness, parameters; superseded versions dropped)
    cull: while it (plus the child in training) exceeds the limit, kill one network with
          probability ~ age / (f_r c_r); new offspring and species champions are immune   (III-G)
    with probability offspring_fraction: an OFFSPRING
          parents ~ f_r (within one species; without speciation any pair, mating with
          probability s = O / (N_i + N_j - O)), node-level crossover, one size-aware
          mutation (refused at the species cap), evaluated before training         (III-D..F)
    otherwise: CONTINUE one of the least recently trained networks: same genome, all its
          weights, one more epoch (age + 1); the old version is killed by the next step
    train (Adadelta, batch 128, a fresh random 10% of the training split), fitness =
          validation accuracy                                                        (III-B, IV)

``loop="generational"`` runs the paper's generation instead, on the store's generation barrier
(lse.store.generations): generation 0 is the initial ecosystem; generation g >= 1 has one slot
per network of P_g -- slot k trains P_g's k-th network (by id) one more epoch -- and then its
offspring, bred from P_g calibrated, evaluated before training, trained once.  Closing g
(:meth:`PyCortex.replace`): the trained networks (a network whose training failed stays as it
was) are calibrated, the next generation's offspring count O is fixed (offspring_fraction of
its trainings: N/2 for 1/3), and eq. 9 culls until the networks plus those O offspring fit the
limit; no trained network is immune but the champions (the paper protects an offspring in the
one cull after its birth, which comes before it has trained).  So every network trains
exactly once per generation, as in the paper; the one shift is that breeding reads the
ecosystem after the cull, where the paper's breeds before it.

Why the steady state behaves like the paper's generations: networks are continued least-recently-trained
first, so in every window of about N births (N = ecosystem size) each network trains about
once -- a generation -- and ``offspring_fraction`` sets the offspring per generation
(1/3 of births = N/2 offspring per N trainings, the cap PyCortex's public code puts on
offspring per generation).  Culling happens one network at a time, each time the ecosystem
would exceed its limit, with the paper's weights: the same distribution a generation's cull
samples from one by one.  A new offspring is immune until it has been continued once (about
one generation), where the paper protects it in the one cull after its birth.  Every removal
and every superseded version is a kill by rename, so two workers can never cull one network
twice.  docs/pycortex.md has the measured behaviour.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lse.algorithms.base import Algorithm, Child, Context, PopulationView, Recipe, ReplacementPlan, Selection
from lse.core import cortex, ecosystem
from lse.core.datasets import shape_of
from lse.core.mutations import MutationRecord
from lse.core.provenance import Provenance
from lse.core.records import IndividualRecord

GENOME = cortex.GENOME_NAME

#: nominal input of the standard data sets, for drawing initial genomes before any data is seen


class PyCortexOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    speciation: bool = Field(True, description="species = identical layer/node counts; crossover within a species")
    initial_species: int = Field(8, ge=1, description="species of the initial ecosystem (speciation only)")
    max_species: int = Field(16, ge=1, description="hard limit on the number of species")
    ecosystem_limit: int = Field(111, ge=2, description="networks alive; above it culling (eq. 9) removes one at a time")
    offspring_fraction: float = Field(1 / 3, gt=0.0, le=1.0,
                                      description="share of births that are new offspring; the rest train an existing network one more epoch")
    data_fraction: float = Field(0.1, gt=0.0, le=1.0, description="random share of the training split per epoch")
    batch_size: int = Field(128, ge=1, description="training batch (Adadelta)")
    learning_rate: float = Field(1.0, gt=0.0, description="Adadelta lr (1.0: PyTorch's default, no tuning)")
    new_layer_nodes: int = Field(8, ge=1, description="nodes of a layer a mutation adds (the paper does not say)")
    mating_tries: int = Field(20, ge=1, description="without speciation: partners drawn (each accepted with prob. s) before cloning")
    loop: Literal["steady-state", "generational"] = Field(
        "steady-state", description="steady-state: one training per worker step; generational: the paper's "
                                    "generation (every network trains once, then calibrate, breed, cull) on the barrier")


class PyCortex(Algorithm):
    genome = GENOME
    name = "pycortex"
    paper = "seed 002: PyCortex, evolution of deep CNNs with node-level crossover and speciation (gitlab.com/cantordust/pycortex)"
    summary = ("layered CNNs with per-kernel shapes; logistic calibration, node-level crossover, "
               "size-aware mutation, speciation, culling by age/(f_r c_r)")
    Options = PyCortexOptions
    uses_records = True

    def __init__(self, config) -> None:
        super().__init__(config)
        self._founders: list[cortex.CortexGenome] | None = None
        #: per experiment: the paper's generations on the barrier, or the steady state
        self.generational = self.options.loop == "generational"

    # -- the ecosystem as a view shows it -----------------------------------------------------
    def ecosystem(self, view: PopulationView) -> tuple[list[ecosystem.Network], list[str], dict[str, IndividualRecord]]:
        """(current networks, superseded ids, records): a network continued by a newer version
        is superseded (its successor carries ``extra.continues``)."""
        recs = {m.id: view.record(m.id) for m in view.members}
        recs = {i: r for i, r in recs.items() if r is not None and r.fitness is not None}
        # x is superseded by its continuation; when two workers continued x at once, the
        # first continuation (smallest id) is x's next version and the other a duplicate: a
        # race lost after training, killed like a superseded version
        successors: dict[str, list[str]] = {}
        for i, r in sorted(recs.items()):
            if r.extra.get("continues"):
                successors.setdefault(r.extra["continues"], []).append(i)
        replaced = set(successors)
        replaced |= {d for ids in successors.values() for d in ids[1:]}
        superseded = [i for i in recs if i in replaced]
        nets = [ecosystem.Network(id=i, species=r.species or "", fitness=float(r.fitness), params=int(r.params or 0),
                                  age=int(r.age or 1), offspring=_is_new_offspring(r))
                for i, r in recs.items() if i not in replaced]
        return nets, superseded, recs

    def select(self, view: PopulationView, rng: random.Random, *, full: bool, ctx: Context | None = None) -> Selection:
        opts = self.options
        nets, superseded, recs = self.ecosystem(view)
        if len(nets) < 1:  # nothing readable: reproduce the oldest member as a continuation
            first = view.members[0].id
            return Selection((first,), plan={"step": "continue", "parents": (first,)})
        if self.generational:
            return self._generation_slot(nets, recs, rng, self.context(ctx).slot)
        victims = ecosystem.cull(nets, opts.ecosystem_limit, rng, opts.speciation, incoming=1) if full else []
        kills = (*superseded, *victims) if full else ()
        alive = [n for n in nets if n.id not in victims] or nets
        calib = ecosystem.calibrate(alive, opts.speciation)
        if rng.random() >= opts.offspring_fraction:
            # the least recently trained networks: ids sort by birth, a continuation is a new id
            oldest = sorted(alive, key=lambda n: n.id)[: max(2, len(alive) // 4)]
            pick = rng.choice(oldest).id
            return Selection((pick,), kills, plan={"step": "continue", "parents": (pick,)})
        return self._breeding(alive, calib, recs, rng, kills)

    def _generation_slot(self, nets: list[ecosystem.Network], recs: Mapping[str, IndividualRecord],
                         rng: random.Random, slot: int | None) -> Selection:
        """Slot k of a generation: P_g's k-th network (by id) trains once more; the slots after
        the last network breed offspring from P_g (no kills: the plan replaces)."""
        nets = sorted(nets, key=lambda n: n.id)
        if slot is not None and slot < len(nets):
            pick = nets[slot].id
            return Selection((pick,), plan={"step": "continue", "parents": (pick,)})
        sel = self._breeding(nets, ecosystem.calibrate(nets, self.options.speciation), recs, rng, ())
        # The species cap with offspring bred in parallel: each slot sees P_g's species, not its
        # siblings', so k slots could found k new species.  Only the first (cap - present)
        # offspring slots may found one: P_{g+1} never holds more than the cap.
        free = self.options.max_species - len(sel.plan["species"])
        index = (slot - len(nets)) if slot is not None else free
        return dataclasses.replace(sel, plan={**sel.plan, "may_found": index < free})

    def _breeding(self, alive: list[ecosystem.Network], calib: Mapping[str, tuple[float, float]],
                  recs: Mapping[str, IndividualRecord], rng: random.Random, kills: tuple[str, ...]) -> Selection:
        """Parents of one offspring (III-E): the first by roulette on f_r, the second from its
        species (with speciation) or any network accepted with probability s (without)."""
        opts = self.options
        species = {n.species for n in alive}
        fr = {n.id: calib[n.id][0] for n in alive}
        first = ecosystem.roulette(fr, rng)
        by_id = {n.id: n for n in alive}
        second = None
        if opts.speciation:
            mates = {n.id: fr[n.id] for n in alive if n.species == by_id[first].species and n.id != first}
            if mates:
                second = ecosystem.roulette(mates, rng)
        else:
            mates = {i: f for i, f in fr.items() if i != first}
            a = cortex.CortexGenome.model_validate(recs[first].dna)
            for _ in range(opts.mating_tries if mates else 0):
                cand = ecosystem.roulette(mates, rng)
                s = cortex.similarity(a, cortex.CortexGenome.model_validate(recs[cand].dna))
                if rng.random() < s:
                    second = cand
                    break
        parents = (first,) if second is None else (first, second)
        return Selection(parents, kills, plan={"step": "offspring", "parents": parents, "fr": {p: fr[p] for p in parents},
                                               "species": species})

    def cull(self, view: PopulationView, rng: random.Random) -> str | None:
        """The worker's extra kill when the alive exceed population_size by two: PyCortex's
        ecosystem grows from the initial size up to ``ecosystem_limit``, and ``select`` culls
        above that limit itself, so nothing more here."""
        return None

    # -- the paper's generation (loop="generational") ------------------------------------------
    def offspring_count(self, networks: int) -> int:
        """Offspring bred in a generation whose ecosystem trains ``networks`` networks: the
        steady state's share of births, offspring_fraction = O / (networks + O) (1/3: N/2)."""
        f, limit = self.options.offspring_fraction, self.options.ecosystem_limit
        return limit if f >= 1.0 else min(limit, round(networks * f / (1.0 - f)))

    def slots(self, generation: int) -> int:
        """Generation 0: the initial ecosystem.  Later ones are sized by the plan that opens them
        (``next_slots``); this is only the fallback for an unreadable plan: the ecosystem at its
        limit, its survivors plus their offspring."""
        if generation == 0:
            return self.config.population_size
        return self.options.ecosystem_limit

    def replace(self, parents: Sequence[IndividualRecord], children: Sequence[IndividualRecord]) -> ReplacementPlan:
        """Close a generation: the networks as trained in it (a network whose training failed
        stays as it was), calibrated; eq. 9 culls until they and the next generation's offspring
        fit the limit (champions immune); the next generation trains each survivor once and
        breeds those offspring.  Pure: the cull's draws are seeded by the experiment's seed and
        the children's ids."""
        opts = self.options
        sound = [c for c in children if c.fitness is not None and c.state == "alive"]
        trained = {c.extra.get("continues") for c in sound}
        pool = [r for r in parents if r.id not in trained and r.fitness is not None] + sound
        nets = [ecosystem.Network(id=r.id, species=r.species or "", fitness=float(r.fitness), params=int(r.params or 0),
                                  age=int(r.age or 1)) for r in pool]
        offspring = self.offspring_count(len(nets))
        rng = random.Random(f"pycortex-cull:{self.config.seed}:{','.join(sorted(c.id for c in children))}")
        culled = set(ecosystem.cull(nets, opts.ecosystem_limit, rng, opts.speciation, incoming=offspring))
        keep = {n.id for n in nets} - culled
        return ReplacementPlan(kill=tuple(p.id for p in parents if p.id not in keep),
                               alive=tuple(c.id for c in sound if c.id in keep),
                               dead=tuple(c.id for c in children if c.id not in keep),
                               next_slots=max(1, len(keep) + offspring))

    # -- variation ----------------------------------------------------------------------------
    def vary(self, parents: Sequence[IndividualRecord], rng: random.Random, plan=None, ctx: Context | None = None) -> Child:
        # select's plan, for the parents it chose (read in its order); without one, offspring
        plan = plan if isinstance(plan, dict) and tuple(plan.get("parents", ())) == tuple(p.id for p in parents) else {}
        if plan.get("step") == "continue":
            p = parents[0]
            return Child(cortex.CortexGenome.model_validate(p.dna), (p.id,), None, Provenance(default=p.id),
                         details={"step": "continue", "continues": p.id}, genome=GENOME,
                         age=int(p.age or 1) + 1, species=p.species)
        return self.offspring(parents, plan.get("fr", {}), plan.get("species", set()), rng,
                              may_found=plan.get("may_found", True))

    def offspring(self, parents: Sequence[IndividualRecord], fr: Mapping[str, float], species: set,
                  rng: random.Random, may_found: bool = True) -> Child:
        """Node-level crossover of one or two parents (III-F), then one size-aware mutation
        (III-D), refused when it would found a species beyond the cap."""
        opts = self.options
        genomes = [_bound(p) for p in parents]
        if len(parents) == 2:
            draft = cortex.crossover(genomes[0], fr.get(parents[0].id, 0.5), genomes[1], fr.get(parents[1].id, 0.5), rng)
            draft = cortex.repair(draft)
        else:
            draft = cortex.draft_of(genomes[0])
        present = set(species) or {p.species for p in parents if p.species}
        draft, m = cortex.mutate(
            draft, rng, new_layer_nodes=opts.new_layer_nodes,
            allowed=lambda key: (not opts.speciation) or ecosystem.species_allowed(
                key, present, opts.max_species if may_found else len(present)))
        dna = draft.genome()
        prov = cortex.provenance(draft, [p.id for p in parents], genomes)
        record = MutationRecord(name=m.name, details={**m.details, **({"failed": m.failed} if m.failed else {})})
        return Child(dna, tuple(p.id for p in parents), record, prov,
                     details={"step": "offspring", "crossover": len(parents) == 2}, genome=GENOME, age=1,
                     species=cortex.species_key(dna))

    def initial(self, rng: random.Random, input_channels: int, ctx: Context | None = None) -> Child:
        """Section III-A.  With speciation: ``initial_species`` founders (the minimal genome,
        then isolated networks mutated until new), drawn from the experiment's seed so every
        worker has the same; initial network k (``ctx.slot``) joins species k mod their number.  Without:
        the minimal genome and one random mutation."""
        opts = self.options
        shape = (input_channels, *(shape_of(self.config.dataset) or (1, 28, 28))[1:])
        if opts.speciation:
            if self._founders is None:  # a cache: a pure function of the seed and the shape
                self._founders = cortex.species_founders(opts.initial_species, random.Random(f"{self.config.seed}:founders"),
                                                         shape, new_layer_nodes=opts.new_layer_nodes)
            # the initial index takes the species in turn (every worker agrees); unknown: a draw
            slot = self.context(ctx).slot
            k = slot % len(self._founders) if slot is not None else rng.randrange(len(self._founders))
            g = self._founders[k]
            details = {"step": "initial", "founder": k}
        else:
            draft = cortex.draft_of(cortex.minimal())
            draft.input = shape
            draft, m = cortex.mutate(draft, rng, new_layer_nodes=opts.new_layer_nodes)
            g = cortex.CortexGenome(conv=draft.genome().conv, fc=draft.genome().fc)
            details = {"step": "initial", "mutation": m.name}
        return Child(g, genome=GENOME, age=1, species=cortex.species_key(g), details=details)

    # -- training and fitness -----------------------------------------------------------------
    def recipe(self) -> Recipe:
        # one epoch of Adadelta on a fresh share of the training split, no augmentation, no
        # weight decay (the paper's trainer)
        o = self.options
        return Recipe(optimizer="adadelta", epochs=1.0, data_fraction=o.data_fraction, batch_size=o.batch_size,
                      learning_rate=o.learning_rate, momentum=0.0, weight_decay=0.0, augment=False,
                      lr_schedule="constant")

    def objectives(self, metrics: Mapping[str, float], params: int | None, child: Child | None = None) -> dict[str, float]:
        out = {"val_accuracy": metrics["val_accuracy"]}
        if "val_accuracy_before_training" in metrics:
            out["val_accuracy_before_training"] = metrics["val_accuracy_before_training"]
        return out


def _is_new_offspring(r: IndividualRecord) -> bool:
    """A new offspring: born by crossover/mutation and not yet continued (immune, III-G)."""
    return r.extra.get("step") == "offspring"


def _bound(r: IndividualRecord) -> cortex.CortexGenome:
    """A parent's genome bound to the data set its trainer saw (recorded in ``extra``)."""
    g = cortex.CortexGenome.model_validate(r.dna)
    shape, classes = r.extra.get("input_shape"), r.extra.get("classes")
    if shape and classes:
        g = cortex.bind(g, shape, int(classes))
    return g
