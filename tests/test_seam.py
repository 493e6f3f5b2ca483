"""Issue 26: the algorithm seam hands everything over as values.

What ``select`` decides reaches ``vary`` as :attr:`Selection.plan`, the child's place and the live
settings as a :class:`Context`, and the trained child reaches ``objectives``.  So an algorithm
instance keeps no state between calls: a selection made by one instance and varied by another
(another worker, or the same worker after other calls) gives the same child.  Before, PyCortex,
EA4CNN and the generational GAs kept the selection on the instance, the worker told them the
slot with ``begin_child`` and set ``mutations_per_child`` by attribute, and EA4CNN's reference
travelled through a trainer metric.
"""

from __future__ import annotations

import copy
import random

import pytest

from lse.algorithms import ALGORITHMS, make_algorithm
from lse.algorithms.base import Algorithm, Context, Member, PopulationView
from lse.config import ExperimentConfig
from lse.core.dna import initial_dna
from lse.core.records import IndividualRecord


def _id(i: int) -> str:
    return f"20260101T000000{i:06d}Z-0000000{i % 10}"


def test_no_hook_takes_begin_child_or_live_attributes():
    for cls in ALGORITHMS.values():
        assert not hasattr(cls, "begin_child"), cls.name
        algo = make_algorithm(ExperimentConfig(algorithm={"name": cls.name}))
        assert not hasattr(algo, "mutations_per_child") and not hasattr(algo, "input_shape"), cls.name


def _state(algo: Algorithm) -> dict:
    """The instance's attributes but its caches of pure functions (named in the classes)."""
    caches = {"_pool", "_ranks", "_founders"}
    return {k: copy.deepcopy(v) for k, v in vars(algo).items() if k not in caches}


def _dna_records(n: int) -> list[IndividualRecord]:
    dna = initial_dna(0.1, input_channels=1).model_dump(mode="json")
    return [IndividualRecord(id=_id(i), dna=dna, val_accuracy=0.1 + 0.05 * i, fitness=0.1 + 0.05 * i,
                             objectives={"val_accuracy": 0.1 + 0.05 * i}, steps=1, examples=1)
            for i in range(n)]


@pytest.mark.parametrize("name", ["real2017", "regularized", "pareto-testbed", "recombination"])
def test_a_selection_varied_by_another_instance_gives_the_same_child(name):
    """The steady-state DNA algorithms: select on one instance, vary on a fresh one."""
    cfg = ExperimentConfig(population_size=6, algorithm={"name": name})
    recs = _dna_records(6)
    view = PopulationView([Member(r.id, r.fitness) for r in recs], {r.id: r for r in recs})
    ctx = Context(mutations_per_child=3)
    a, b = make_algorithm(cfg), make_algorithm(cfg)
    before = _state(a)
    sel = a.select(view, random.Random(5), full=True, ctx=ctx)
    parents = [next(r for r in recs if r.id == p) for p in sel.parents]
    child_a = a.vary(parents, random.Random(6), sel.plan, ctx)
    child_b = b.vary(parents, random.Random(6), sel.plan, ctx)
    assert child_a.dna == child_b.dna and child_a.parents == child_b.parents
    assert _state(a) == before, "select or vary changed the instance"


def test_mutations_per_child_come_from_the_context():
    cfg = ExperimentConfig(population_size=4, algorithm={"name": "real2017"},
                           mutation_probabilities={"alter_learning_rate": 1.0})
    algo = make_algorithm(cfg)
    (parent,) = _dna_records(1)
    one = algo.vary([parent], random.Random(1), None, Context(mutations_per_child=1))
    three = algo.vary([parent], random.Random(1), None, Context(mutations_per_child=3))
    assert one.mutation is not None and three.mutation is not None
    assert one.mutation.model_dump() != three.mutation.model_dump()


def test_ea4cnn_reference_travels_as_the_plan_and_the_child():
    cfg = ExperimentConfig(population_size=4, algorithm={"name": "ea4cnn"})
    a, b = make_algorithm(cfg), make_algorithm(cfg)
    rng = random.Random(3)
    genomes = [a.initial(random.Random(i), 1) for i in range(4)]
    recs = [IndividualRecord(id=_id(i), dna=g.dna.model_dump(mode="json"), genome="layerlist", algorithm="ea4cnn",
                             val_accuracy=0.9 - 0.01 * i, params=1000 * (i + 1), fitness=0.5, age=1,
                             objectives={"val_accuracy": 0.9 - 0.01 * i, "val_accuracy_fx": 0.9 - 0.01 * i})
            for i, g in enumerate(genomes)]
    view = PopulationView([Member(r.id, r.fitness) for r in recs], {r.id: r for r in recs})
    sel = a.select(view, rng, full=False)
    assert sel.plan == 1000  # the best initial network's size: the reference
    parents = [next(r for r in recs if r.id == p) for p in sel.parents]
    child = b.vary(parents, random.Random(4), sel.plan)  # another instance: the plan is enough
    assert child.details["reference_params"] == 1000
    obj = b.objectives({"val_accuracy": 0.8, "val_accuracy_fx": 0.8}, 2000, child)  # no reference metric
    assert obj["reference_params"] == 1000.0 and obj["s_rel"] == pytest.approx(2.0)


def test_generational_ga_varies_only_what_a_selection_planned():
    cfg = ExperimentConfig(population_size=10, algorithm={"name": "ga-generational"})
    a, b = make_algorithm(cfg), make_algorithm(cfg)
    view = PopulationView([Member(_id(i), 0.05 + 0.01 * i) for i in range(10)])
    ctx = Context(generation=2, slot=3)
    sel = a.select(view, random.Random(1), full=False, ctx=ctx)
    parents = [IndividualRecord(id=p, dna={}, genome="fixed-net", fitness=0.1) for p in sel.parents]
    child = b.vary(parents, random.Random(9), sel.plan, ctx)
    assert child.details["slot"] == 3
    planned = sel.plan[1].model_dump(mode="json")
    if len(sel.parents) == 2:  # (one parent drawn twice: a mutation of it instead)
        assert child.details["variation"] == planned and planned["complement"] is True  # slot 3: odd
    with pytest.raises(ValueError, match="without the plan"):
        b.vary(parents, random.Random(9), None, ctx)
