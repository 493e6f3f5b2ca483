"""The algorithm seam: what an evolutionary algorithm decides, and nothing the workers do.

The workers (:mod:`lse.runners.worker`), the store, the launcher, Slurm and the reports are
the same for every paper.  An algorithm is the few decisions that differ, each a small method
that composes pure pieces of :mod:`lse.core` (STYLE.md 13):

=====================  ========================================================================
``initial``            the DNA of an initial individual (section 3.3 for the paper)
``select``             over a view of the alive population: which individuals are parents and,
                       when the population is full, which die (the steady-state replacement)
``vary``               mutation and/or crossover of the parents' records into a child DNA, with
                       the provenance map of the weights it inherits (:mod:`lse.core.provenance`)
``recipe``             how a child is trained: optimiser, steps or epochs, data subset, batch,
                       learning rate, momentum, weight decay, augmentation, or no training; the
                       trainer that carries it out is the one of the ``genome`` kind
                       (lse.runners.trainer.TRAINERS): an algorithm never names code
``objectives``         the objective vector of a trained child (name -> value, all maximised)
``fitness``            the scalar selection uses; it is written in the folder name
``settle``             (optional) what the record keeps once the fitness is known (an age)
``replace``            generational algorithms only: P_{g+1} from P_g and its children
=====================  ========================================================================

The worker calls these in a fixed order (select, vary, then the training seed), each with the
worker's own seeded :class:`random.Random`, so a run is reproducible from its seed and worker
id.  Everything a hook needs travels as a value: the :class:`Context` of the child being made
(its generation and slot, the mutations per child in force, the data's shape, the weight
epoch), what ``select`` decided for ``vary`` (:attr:`Selection.plan`, handed back by the
worker), and the child itself to ``objectives``.  An algorithm instance keeps no state between
calls (at most a cache of a pure function), so any worker may call any hook in any order.
Nothing here touches torch or the filesystem: an algorithm is plain decisions over plain data,
testable in milliseconds.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from lse.core.dna import DNA, initial_dna
from lse.core.mutations import MutationRecord
from lse.core.provenance import Provenance
from lse.core.records import IndividualRecord

if TYPE_CHECKING:  # only for annotations: the config imports the registry, not the reverse
    from lse.config import ExperimentConfig


@dataclass(frozen=True)
class Member:
    """One alive individual as a directory listing gives it: no file read."""

    id: str
    fitness: float | None


class PopulationView:
    """The alive population at one moment, for a selection step.

    ``members`` come from one directory listing (ids sort by birth, so ``members[0]`` is the
    oldest).  Whole-population selectors that need more than the fitness (objective vectors,
    ages, species, DNA) ask :meth:`record`; the store's view caches parsed records by folder
    name (records never change once published, and every transition renames the folder), so a
    step reads only individuals it has not seen before.
    """

    def __init__(self, members: Sequence[Member], records: "Mapping[str, IndividualRecord] | None" = None) -> None:
        self.members: tuple[Member, ...] = tuple(members)
        self._records = records if records is not None else {}

    def __len__(self) -> int:
        return len(self.members)

    def record(self, individual_id: str) -> IndividualRecord | None:
        """The record of an alive individual; None if it could not be read (it moved on, or
        is malformed and was quarantined): treat it as absent."""
        return self._records.get(individual_id)

    def without(self, ids: set[str]) -> "PopulationView":
        return PopulationView([m for m in self.members if m.id not in ids], self._records)

    def unrated(self, ids: set[str]) -> "PopulationView":
        """The same members, those in ``ids`` with no fitness (they lose every comparison):
        after a weight reset (lse.core.events) the fitness of an older epoch's individual was
        measured with weights the reset discarded."""
        if not ids:
            return self
        return PopulationView([Member(m.id, None) if m.id in ids else m for m in self.members], self._records)


@dataclass(frozen=True)
class Context:
    """What the worker knows of the child it is making, handed to the hooks as a value (the
    defaults are a direct caller's: no generation, no slot, the experiment's mutations)."""

    #: generational algorithms: the open generation the child belongs to
    generation: int | None = None
    #: generational: the slot of the generation it fills; steady state: the index of an initial
    #: child (births before it, as the worker counts them), None for an evolved one
    slot: int | None = None
    #: mutations per child in force now (section 5: bursts change it during a run)
    mutations_per_child: int = 1
    #: (C, H, W) of the data, where the trainer says it (genomes sized by their input read it)
    input_shape: tuple[int, int, int] | None = None
    #: the weight epoch in force (section 5: a reset starts a new one)
    weight_epoch: int = 0


@dataclass(frozen=True)
class Selection:
    """One selection step: read ``parents`` (in order) and kill ``kills`` first.

    ``kills`` are carried out only while the population is full; the worker passes ``full``
    to :meth:`Algorithm.select` so an algorithm can skip computing them.  ``plan`` is what the
    selection decided for the variation (an operator, a reference, pair seeds): the worker hands
    it back to :meth:`Algorithm.vary` as it is.
    """

    parents: tuple[str, ...]
    kills: tuple[str, ...] = ()
    #: exactly one of these dies: the first that is still alive, tried in order (aging: "the
    #: oldest still alive").  A kill lost to another worker moves on to the next instead of
    #: selecting again -- with many workers all aiming at the oldest, re-selecting made 95% of
    #: the rounds lost in a 250-worker simulation.
    kill_first_of: tuple[str, ...] = ()
    plan: Any = None


@dataclass(frozen=True)
class Child:
    """A child before training: its genome, where it came from and what it inherits.

    ``dna`` is the genome, of kind ``genome`` (:mod:`lse.core.genomes`): the paper's DNA graph
    for kind "dna", another paper's genome object otherwise (a pydantic model its kind dumps)."""

    dna: Any
    parents: tuple[str, ...] = ()
    mutation: MutationRecord | None = None  # recorded; also says which tensors changed
    provenance: Provenance | None = None  # None: nothing inherited (fresh initialisation)
    details: dict = field(default_factory=dict)  # recorded in the record's ``extra``
    genome: str = "dna"
    age: int | None = None  # recorded, for algorithms that count ages
    species: str | None = None  # recorded, for algorithms with species


@dataclass(frozen=True)
class Recipe:
    """How a child is trained (paper 004: SGD, the experiment's steps, all of the training split).

    ``optimizer`` "none": no gradient training (weights evolved directly, paper 003): the
    child is only evaluated.  ``epochs`` (if set) replaces ``steps``: that many passes over the
    (subset of the) training split.  ``data_fraction``: each child trains on a fresh random
    subset of the training split of that size (paper 002: 10%).
    """

    optimizer: Literal["sgd", "adadelta", "none"] = "sgd"
    steps: int | None = None  # None: ExperimentConfig.steps
    epochs: float | None = None
    data_fraction: float = 1.0
    # None in any of these: the experiment's (ExperimentConfig), and for the learning rate the
    # child's own gene (the DNA's learning_rate), else the experiment's initial rate
    batch_size: int | None = None
    learning_rate: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    augment: bool | None = None
    lr_schedule: Literal["constant", "cosine"] | None = None


@dataclass(frozen=True)
class ReplacementPlan:
    """What closing a generation does: kill these parents, keep these children alive, publish
    the others dead.  Pure data, persisted before it is applied (lse.store.generations)."""

    kill: tuple[str, ...]
    alive: tuple[str, ...]
    dead: tuple[str, ...] = ()
    #: children of the next generation, where the rule decides it (seed 002: one training per
    #: network of the new ecosystem plus its offspring); None: ``slots(g + 1)``
    next_slots: int | None = None


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Algorithm:
    """Base class of every algorithm; subclasses set the class attributes and override the
    methods their paper changes.  Registered by name in :mod:`lse.algorithms`."""

    name: ClassVar[str]
    paper: ClassVar[str]
    summary: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: runs in generations on the store's barrier (replace() is used, select() kills nothing)
    generational: ClassVar[bool] = False
    #: select() reads records through the view (objectives, ages...), not only the fitness
    uses_records: ClassVar[bool] = False
    #: supports the random-search control (ExperimentConfig.selection == "random")
    random_control: ClassVar[bool] = False
    #: the genome kind of its children (lse.core.genomes); it picks their builder and trainer
    genome: ClassVar[str] = "dna"

    def __init__(self, config: "ExperimentConfig") -> None:
        self.config = config
        self.options = self.Options.model_validate(config.algorithm.options)

    def context(self, ctx: Context | None) -> Context:
        """``ctx``, or a direct caller's: the experiment's mutations per child, nothing else known."""
        return ctx if ctx is not None else Context(mutations_per_child=getattr(self.config, "mutations_per_child", 1))

    # -- the seam ----------------------------------------------------------------------------
    def initial(self, rng: random.Random, input_channels: int, ctx: Context | None = None) -> Child:
        """An initial individual: the experiment's ``initial_dna`` if one was given
        (``--initial-dna``), else section 3.3's trivial model."""
        if self.config.initial_dna is not None:
            return Child(DNA.model_validate(self.config.initial_dna))
        return Child(initial_dna(self.config.initial_learning_rate, input_channels=input_channels))

    def select(self, view: PopulationView, rng: random.Random, *, full: bool, ctx: Context | None = None) -> Selection:
        raise NotImplementedError

    def cull(self, view: PopulationView, rng: random.Random) -> str | None:
        """One extra kill when the alive alone exceed the population by two (listings taken a
        moment apart err either way; see the worker).  Default: the victim ``select`` would
        choose among ``view``."""
        if len(view) < 2:
            return None
        sel = self.select(view, rng, full=True)
        kills = sel.kills or sel.kill_first_of
        return kills[0] if kills else None

    def vary(self, parents: Sequence[IndividualRecord], rng: random.Random, plan: Any = None,
             ctx: Context | None = None) -> Child:
        """The child of ``parents`` (read in the order ``select`` gave); ``plan``: the
        selection's :attr:`Selection.plan`."""
        raise NotImplementedError

    def recipe(self) -> Recipe:
        return Recipe()

    def objectives(self, metrics: Mapping[str, float], params: int | None, child: Child | None = None) -> dict[str, float]:
        """The objective vector of a trained ``child`` (all maximised) from what its trainer
        measured (``val_accuracy`` for classifiers, plus any metrics of its own)."""
        return {"val_accuracy": metrics["val_accuracy"]}

    def fitness(self, objectives: Mapping[str, float]) -> float:
        return objectives["val_accuracy"]

    def settle(self, child: Child, fitness: float | None) -> Child:
        """The child as recorded, once its fitness is known (None: it failed).  For what only
        the trained child decides, e.g. seed 001 resets the age of a child whose variation
        lowered its fitness.  Default: unchanged."""
        return child

    # -- generational algorithms -----------------------------------------------------------
    def slots(self, generation: int) -> int:
        """Children of ``generation`` (generation 0 is the initial population)."""
        return self.config.population_size

    def replace(self, parents: Sequence[IndividualRecord], children: Sequence[IndividualRecord]) -> ReplacementPlan:
        """P_{g+1} from P_g and the children of g.  Must be a pure function of its arguments:
        any worker may compute it, and the first plan written is the one applied."""
        raise NotImplementedError


class AlgorithmSpec(BaseModel):
    """``experiment.json``'s ``algorithm``: a registered name and its typed options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("real2017", description="a name from `lse algorithms`")
    options: dict = Field(default_factory=dict, description="the algorithm's options (validated by its Options)")
