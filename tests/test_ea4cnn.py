"""EA4CNN (seed 001): the pure core read like the paper (fitness, ages, speciation, variation),
crossover repair with weights from both parents, and a short real run on the barrier."""

from __future__ import annotations

import math
import random

import pytest
import torch

from lse.algorithms import make_algorithm
from lse.config import ExperimentConfig
from lse.core.layer_variation import MUTATIONS, PAPER_MUTATION_PROBABILITIES, crossover, crossover_pair, mutate
from lse.core.layerlist import Conv, LayerList, Pool, fits, param_count, provenance, random_genome
from lse.core.records import IndividualRecord
from lse.core.size_fitness import SizeFitness, energy_reduction
from lse.core.speciation import INITIAL_AGE, Candidate, child_age, settled_age, survivors
from lse.nn.inherit import inherit
from lse.nn.layerlist import build_layerlist

# -- fitness (equation 1) ---------------------------------------------------------------------


@pytest.mark.parametrize("acc, params, ref, expected", [
    (0.9, 1000, 1000, 0.9 * (0.5 / math.log(2) + 1)),     # the reference's own size
    (0.9, 500, 1000, 0.9 * (0.5 / math.log(1.5) + 1)),    # half the size: a larger reward
    (0.9, 4000, 1000, 0.9 * (0.5 / math.log(5) + 1)),     # larger than the reference: smaller reward
    (0.79, 10, 1000, 0.0),                                # below a_min: 0 however small
    (0.9, 1, 1000, 0.9 * (0.5 / math.log(1.01) + 1)),     # s_rel 0.001 floored at 0.01
])
def test_size_fitness_is_equation_1_with_a_floor(acc, params, ref, expected):
    assert SizeFitness(k=0.5, a_min=0.8, s_rel_floor=0.01)(acc, params, ref) == pytest.approx(expected)


def test_size_fitness_prefers_smaller_at_equal_accuracy_and_is_bounded():
    f = SizeFitness(k=0.5, a_min=0.6)
    assert f(0.7, 100, 1000) > f(0.7, 200, 1000) > f(0.7, 1000, 1000)
    assert f(0.7, 1, 10**9) == f(0.7, 10, 10**9)  # both under the floor: the same, finite
    assert math.isfinite(f(0.7, 0, 1000))
    assert f(float("nan"), 10, 1000) == 0.0
    assert SizeFitness().relative_size(5, 1000) == (0.005, 0.01)


def test_energy_estimate_is_c1_times_the_parameter_ratio():
    assert energy_reduction(360264, 8480, fixed_point=False) == pytest.approx(42.48, abs=0.01)  # Table 2's 42.9x row
    assert energy_reduction(360264, 36720, fixed_point=True) == pytest.approx(2.4 * 360264 / 36720)  # CNN1-FX 23.6x
    with pytest.raises(ValueError):
        energy_reduction(10, 0, fixed_point=True)


# -- ages and speciation (section 3.4) --------------------------------------------------------


def test_age_counts_trainings_is_capped_and_resets_when_a_change_lowered_fitness():
    assert child_age(None, 4) == INITIAL_AGE
    assert child_age(1, 4) == 2 and child_age(3, 4) == 4 and child_age(4, 4) == 4  # cap |P|/2
    assert settled_age(3, changed=True, parent_fitness=1.5, fitness=1.4) == INITIAL_AGE
    assert settled_age(3, changed=True, parent_fitness=1.5, fitness=1.5) == 3  # not lowered
    assert settled_age(3, changed=False, parent_fitness=1.5, fitness=1.0) == 3  # identity: training noise only
    assert settled_age(3, changed=True, parent_fitness=1.5, fitness=None) == 3  # failed child: nothing known


def _c(i, age, fit):
    return Candidate(f"x{i:02d}", age, (-fit,))


def test_speciation_keeps_p_over_levels_per_age_level():
    # the paper's example: 5 age levels, |P| = 15 -> the 3 best of each level
    pool = [_c(10 * a + j, a, fit=10 * a + j) for a in range(1, 6) for j in range(6)]  # older = fitter
    kept = survivors(pool, 15)
    assert len(kept) == 15
    by_age = {a: sum(1 for c in pool if c.id in kept and c.age == a) for a in range(1, 6)}
    assert by_age == {1: 3, 2: 3, 3: 3, 4: 3, 5: 3}
    # without speciation the old fit ones take everything
    plain = survivors(pool, 15, speciation=False)
    assert {c.age for c in pool if c.id in plain} == {4, 5, 3}


def test_speciation_fills_short_levels_from_the_best_of_the_rest():
    pool = [_c(0, 1, 0.1)] + [_c(i, 2, i) for i in range(1, 10)]  # level 1 has one member
    kept = survivors(pool, 6)  # quota 3 per level: level 1 gives 1, level 2 gives 3, then the best of the rest
    assert "x00" in kept and len(kept) == 6
    assert set(kept) - {"x00"} == {f"x{i:02d}" for i in range(4, 10)} - {"x04"}


def test_speciation_is_deterministic_and_bounded():
    rng = random.Random(1)
    pool = [Candidate(f"i{k}", rng.randint(1, 7), (-rng.random(),)) for k in range(20)]
    a, b = survivors(pool, 8), survivors(list(reversed(pool)), 8)
    assert a == b and len(a) == 8


# -- variation --------------------------------------------------------------------------------


def test_mutations_have_the_papers_probabilities_and_results_always_build():
    assert PAPER_MUTATION_PROBABILITIES == {"MO1": 0.41, "MO2": 0.07, "MO3": 0.03, "MO4": 0.29, "MO5": 0.10, "MO6": 0.10}
    rng = random.Random(0)
    seen = {n: 0 for n in MUTATIONS}
    g = random_genome(rng, input_side=28)
    for _ in range(300):
        g2, v = mutate(g, rng, input_side=28)
        seen[v.name] += 1
        assert fits(g2, 28)
        net = build_layerlist(g2, (1, 28, 28), 10)
        assert sum(p.numel() for p in net.parameters()) == param_count(g2, 1, 28, 10)
        assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
        g = g2
    assert seen["MO1"] > seen["MO4"] > seen["MO5"] > seen["MO3"] > 0  # roughly the paper's order


def test_mo1_resets_one_layer_and_inherits_the_rest():
    g = LayerList(layers=(Conv(id=0, kernel=3, filters=4, padding=1), Conv(id=1, kernel=3, filters=5, padding=1)),
                  fc_width=8, learning_rate=0.1, next_id=2)
    rng = random.Random(3)
    while True:
        g2, v = mutate(g, rng, input_side=8, probabilities={"MO1": 1})
        if v.reset == {"L1"}:
            break
    parent = build_layerlist(g, (1, 8, 8), 10)
    child = build_layerlist(g2, (1, 8, 8), 10)
    prov = provenance(g2, {0: ("p", 0, g), 1: ("p", 1, g)}, ("p", g), num_classes=10, reset=v.reset)
    rep = inherit(child, {"p": parent.state_dict()}, prov)
    assert all(n.startswith("layers.L1.") for n in rep.reinitialised_names) and rep.reinitialised_names
    assert torch.equal(child.layers["L0"].conv.weight, parent.layers["L0"].conv.weight)


A = LayerList(layers=(Conv(id=0, kernel=3, filters=4, padding=1), Pool(id=1, size=2, stride=2),
                      Conv(id=2, kernel=3, filters=6, padding=1)), fc_width=10, learning_rate=0.1, next_id=3)
B = LayerList(layers=(Conv(id=0, kernel=5, filters=3, padding=2), Conv(id=1, kernel=3, filters=8, padding=1),
                      Pool(id=2, mode="avg", size=2, stride=2)), fc_width=7, learning_rate=0.2, next_id=3)


def test_one_point_crossover_takes_head_of_a_and_tail_of_b_with_repaired_weights_from_both():
    rng = random.Random(0)
    crossing = None
    while crossing is None or crossing.cut != (1, 1):
        crossing = crossover(A, "a", B, "b", rng, input_side=8)
    child = crossing.child
    # A's first conv (4 filters), then B's 8-filter conv (its fan-in was 3, now 4) and B's pool
    assert [type(x).__name__ for x in child.layers] == ["Conv", "Conv", "Pool"]
    assert child.layers[0].filters == 4 and child.layers[1].filters == 8
    assert child.fc_width == B.fc_width and child.learning_rate == A.learning_rate
    assert len({x.id for x in child.layers}) == 3  # B's id 1 collides with nothing; ids unique anyway
    genomes = {"a": A, "b": B}
    origins = {cid: (p, lid, genomes[p]) for cid, (p, lid) in crossing.origins.items()}
    net_a, net_b = build_layerlist(A, (1, 8, 8), 10), build_layerlist(B, (1, 8, 8), 10)
    net = build_layerlist(child, (1, 8, 8), 10)
    prov = provenance(child, origins, (crossing.head, B), num_classes=10)
    rep = inherit(net, {"a": net_a.state_dict(), "b": net_b.state_dict()}, prov)
    assert set(rep.by_parent) == {"a", "b"} and rep.by_parent["a"] > 0 and rep.by_parent["b"] > 0
    l0, l1 = child.layers[0].id, child.layers[1].id
    # the head conv is A's, whole
    assert torch.equal(net.layers[f"L{l0}"].conv.weight, net_a.layers["L0"].conv.weight)
    # the tail conv is B's: its 3 input channels copied, the 4th (missing) keeps fresh values
    w, wb = net.layers[f"L{l1}"].conv.weight, net_b.layers["L1"].conv.weight
    assert w.shape == (8, 4, 3, 3) and wb.shape == (8, 3, 3, 3)
    assert torch.equal(w[:, :3], wb)
    assert not torch.equal(w[:, 3], torch.zeros_like(w[:, 3]))
    assert torch.equal(net.layers[f"L{l1}"].bn.running_var, net_b.layers["L1"].bn.running_var)
    # the FC head is B's; its fan-in (the flattened size) was cut or extended, the rows kept
    assert torch.equal(net.out.weight, net_b.out.weight)
    k = min(net.fc.weight.shape[1], net_b.fc.weight.shape[1])
    assert torch.equal(net.fc.weight[:, :k], net_b.fc.weight[:, :k])


def test_superfluous_filters_are_cut_off():
    small = LayerList(layers=(Conv(id=0, kernel=3, filters=2, padding=1),), fc_width=5, learning_rate=0.1, next_id=1)
    big = small.with_layers((Conv(id=0, kernel=3, filters=6, padding=1),))
    child, parent = build_layerlist(small, (1, 6, 6), 10), build_layerlist(big, (1, 6, 6), 10)
    inherit(child, {"p": parent.state_dict()}, provenance(small, {0: ("p", 0, big)}, ("p", big), num_classes=10))
    assert torch.equal(child.layers["L0"].conv.weight, parent.layers["L0"].conv.weight[:2])


def test_crossover_children_always_fit_and_build():
    rng = random.Random(5)
    for _ in range(60):
        a, b = random_genome(rng, input_side=12, max_layers=5), random_genome(rng, input_side=12, max_layers=5)
        c = crossover(a, "a", b, "b", rng, input_side=12)
        if c is not None:
            assert fits(c.child, 12)
            assert build_layerlist(c.child, (1, 12, 12), 10)(torch.zeros(2, 1, 12, 12)).shape == (2, 10)


def test_crossover_pair_gives_both_offspring_of_one_cut_and_is_deterministic():
    for seed in range(20):
        pair = crossover_pair(A, "a", B, "b", random.Random(seed), input_side=8)
        assert pair is not None and pair == crossover_pair(A, "a", B, "b", random.Random(seed), input_side=8)
        first, second = pair
        i, j = first.cut
        assert [x.kind for x in first.child.layers] == [x.kind for x in A.layers[:i] + B.layers[j:]]
        if second is not None:  # the twin: b's first j layers, then a's from i on, with a's head
            assert second.cut == (j, i) and second.head == "a"
            assert [x.kind for x in second.child.layers] == [x.kind for x in B.layers[:j] + A.layers[i:]]
            assert second.child.learning_rate == B.learning_rate and second.child.fc_width == A.fc_width
            assert {p for p, _ in second.origins.values()} <= {"a", "b"}


def test_crossover_pair_prefers_a_cut_with_two_valid_children():
    rng = random.Random(7)
    twins = 0
    for _ in range(40):
        a, b = random_genome(rng, input_side=12, max_layers=5), random_genome(rng, input_side=12, max_layers=5)
        pair = crossover_pair(a, "a", b, "b", rng, input_side=12)
        if pair is None:
            continue
        for c in pair:
            if c is not None:
                assert fits(c.child, 12)
        twins += pair[1] is not None
    assert twins >= 20


# -- the algorithm's decisions ----------------------------------------------------------------


def _id(i):
    return f"20260101T000000{i:06d}Z-0000000{i % 10}"


def _rec(i, acc, params, *, age=1, parents=(), ref=0, fitness=1.0):
    return IndividualRecord(id=_id(i), parents=[_id(99) for _ in parents], algorithm="ea4cnn",
                            dna=A.model_dump(mode="json"), genome="layerlist", val_accuracy=acc, params=params,
                            objectives={"val_accuracy": acc, "val_accuracy_fx": acc, "reference_params": ref},
                            fitness=fitness, age=age)


def test_reference_is_the_best_initial_network_then_frozen():
    algo = make_algorithm(ExperimentConfig(population_size=4, algorithm={"name": "ea4cnn"}))
    initial = [_rec(1, 0.85, 5000), _rec(2, 0.9, 20000), _rec(3, 0.9, 30000)]
    assert algo.reference(initial) == 20000  # highest accuracy, then fewest parameters
    later = [_rec(4, 0.95, 100, parents=("x",), ref=20000), _rec(5, 0.99, 10, parents=("y",), ref=20000)]
    assert algo.reference(later + initial[:1]) == 20000


def test_replacement_speciates_by_age_and_drops_failed_children():
    algo = make_algorithm(ExperimentConfig(population_size=4, algorithm={"name": "ea4cnn", "options": {"a_min": 0.5}}))
    parents = [_rec(i, 0.9, 1000, age=2, ref=1000) for i in range(4)]  # old and good
    kids = [_rec(10 + i, 0.6, 1000, age=1, parents=("p",), ref=1000) for i in range(3)]  # young, worse
    failed = _rec(20, 0.0, 1000, age=1, parents=("p",), ref=1000, fitness=None)
    plan = algo.replace(parents, kids + [failed])
    assert len(plan.alive) == 2 and len(plan.kill) == 2  # 2 levels -> 2 per level
    assert failed.id in plan.dead
    plain = make_algorithm(ExperimentConfig(population_size=4, algorithm={
        "name": "ea4cnn", "options": {"a_min": 0.5, "speciation": False}})).replace(parents, kids + [failed])
    assert plain.alive == () and plain.kill == ()


def test_settle_resets_age_when_the_change_lowered_fitness():
    algo = make_algorithm(ExperimentConfig(population_size=8, algorithm={"name": "ea4cnn"}))
    rng = random.Random(2)
    parent = _rec(1, 0.9, 1000, age=3, ref=1000, fitness=1.5)
    child = algo.vary([parent], rng)
    assert child.age == 4 and child.genome == "layerlist"
    assert algo.settle(child, child.details["parent_score"] + 1).age == 4  # not lowered: parent + 1
    lowered = algo.settle(child, -1.0)
    assert lowered.age == (INITIAL_AGE if child.details["changed"] else 4)
    assert lowered.species == f"age-{lowered.age}"


def _view(recs):
    from lse.algorithms.base import Member, PopulationView

    return PopulationView([Member(r.id, None) for r in recs], {r.id: r for r in recs})


def test_two_children_per_pair_are_the_two_offspring_of_one_cut_whichever_worker_makes_them():
    from lse.algorithms.base import Context

    opts = {"p_cross": 1.0, "p_mut": 0.0}
    algo = make_algorithm(ExperimentConfig(population_size=6, seed=3, algorithm={"name": "ea4cnn", "options": opts}))
    recs = [_rec(i, 0.9 - 0.01 * i, 1000 + i, ref=1000) for i in range(6)]
    recs = [r.model_copy(update={"dna": (A if i % 2 else B).model_dump(mode="json")}) for i, r in enumerate(recs)]
    by_id = {r.id: r for r in recs}
    crossed = 0
    for slot in range(0, 6, 2):
        # two workers with unrelated rngs and differently ordered views make slots 2k and 2k+1
        s0 = algo.select(_view(recs), random.Random(1), full=False, ctx=Context(generation=2, slot=slot))
        s1 = algo.select(_view(recs[::-1]), random.Random(99), full=False, ctx=Context(generation=2, slot=slot + 1))
        assert s1.parents == s0.parents[::-1]
        assert (s0.plan.side, s1.plan.side) == (0, 1) and s0.plan.cut_seed == s1.plan.cut_seed
        c0 = algo.vary([by_id[p] for p in s0.parents], random.Random(5), s0.plan, Context(generation=2, slot=slot))
        c1 = algo.vary([by_id[p] for p in s1.parents], random.Random(6), s1.plan, Context(generation=2, slot=slot + 1))
        if len(s0.parents) == 2 and by_id[s0.parents[0]].dna != by_id[s0.parents[1]].dna:
            cut0, cut1 = c0.details["crossover"]["cut"], c1.details["crossover"]["cut"]
            assert cut1 == cut0[::-1]  # a[:i] + b[j:] and b[:j] + a[i:]
            assert c0.details["pair_side"] == 0 and c1.details["pair_side"] == 1
            crossed += 1
    assert crossed >= 1
    # another generation draws other pairs; one child per pair keeps drawing from the worker's rng
    single = make_algorithm(ExperimentConfig(population_size=6, seed=3, algorithm={
        "name": "ea4cnn", "options": {**opts, "children_per_pair": 1}}))
    sel = single.select(_view(recs), random.Random(1), full=False, ctx=Context(generation=2, slot=1))
    assert isinstance(sel.plan, int)


def test_bad_options_are_one_line_errors():
    from lse.errors import ConfigError

    with pytest.raises(ConfigError, match="MO1"):
        ExperimentConfig.parse({"algorithm": {"name": "ea4cnn", "options": {"mutation_probabilities": {"MO9": 1}}}})
    with pytest.raises(ConfigError, match="p_mut"):
        ExperimentConfig.parse({"algorithm": {"name": "ea4cnn", "options": {"p_mut": 2}}})


# -- a real run on the barrier ----------------------------------------------------------------


def test_real_run_on_the_barrier_records_ages_both_accuracies_and_a_frozen_reference(tmp_path):
    from _generation_helpers import check_barrier
    from _reliability_helpers import FAST_CONFIG, write_data
    from _store_helpers import run_workers_in_threads

    from lse.store import Store
    from lse.store.generations import Generations, Plan

    data = write_data(tmp_path / "data")
    cfg = ExperimentConfig(**{**FAST_CONFIG, "data_dir": str(data), "population_size": 4, "max_individuals": 16,
                              "algorithm": {"name": "ea4cnn", "options": {"input_size": 12, "a_min": 0.0,
                                                                          "max_layers": 3, "p_cross": 0.5}}})
    Store(tmp_path / "pop").create(cfg)
    run_workers_in_threads(tmp_path / "pop", 2, prefix="ew")
    store = Store(tmp_path / "pop").open()
    store.register_worker("checker", auto_heartbeat=False)
    algo = make_algorithm(store.config)
    gens = Generations(store, slots=algo.slots(1), initial_slots=algo.slots(0))
    figures = check_barrier(store, gens, gens.advance(lambda p, c: Plan(*_plan(algo, p, c))))
    assert figures["generations"] >= 3
    recs = store.records()
    refs = {r.objectives["reference_params"] for r in recs if r.parents and r.fitness is not None}
    initial = [r for r in recs if not r.parents]
    assert len(refs) == 1 and refs.pop() == algo.reference(initial)  # frozen once, the best initial
    for r in recs:
        assert r.genome == "layerlist" and r.age is not None and 1 <= r.age <= 2 and r.species == f"age-{r.age}"
        assert {"val_accuracy", "val_accuracy_fx", "s_rel", "size_fitness"} <= set(r.objectives)
        if r.parents and r.extra.get("changed") is False:
            parent = next(p for p in recs if p.id == r.parents[0])
            assert r.age == min(2, parent.age + 1)  # the identity step: the parent trained once more


def _plan(algo, parents, children):
    r = algo.replace(parents, children)
    return r.kill, r.alive, r.dead
