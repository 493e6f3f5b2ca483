"""PyCortex's generation loop (seed 002, issue 32): ``loop="generational"`` on the store's
barrier.  Every network of P_g trains exactly once in generation g (slots 0..|P_g|-1), the slots
after them breed offspring, and closing the generation culls (eq. 9) so the survivors plus the
next generation's offspring fit the ecosystem limit; the plan sizes the next generation."""

from __future__ import annotations

import random

from lse.algorithms import make_algorithm
from lse.config import ExperimentConfig
from lse.core.records import IndividualRecord, new_id
from lse.store import Store
from lse.store.generations import Generations

from _reliability_helpers import check_history, check_individuals, make_pop, run_worker_cli, write_data


def _algo(limit: int, **options):
    return make_algorithm(ExperimentConfig(population_size=6, seed=3, algorithm={
        "name": "pycortex", "options": {"loop": "generational", "ecosystem_limit": limit, **options}}))


def _rec(fitness, species="a", age=1, **extra) -> IndividualRecord:
    return IndividualRecord(id=new_id(), genome="cortex", dna={}, fitness=fitness, val_accuracy=fitness,
                            species=species, age=age, params=1000, extra=extra)


def test_offspring_count_is_the_steady_states_share_of_trainings():
    algo = _algo(111)
    assert [algo.offspring_count(n) for n in (64, 96, 111, 1)] == [32, 48, 55, 0]
    assert _algo(10, offspring_fraction=0.5).offspring_count(8) == 8
    assert _algo(10, offspring_fraction=1.0).offspring_count(8) == 10
    assert algo.generational and not make_algorithm(ExperimentConfig(algorithm={"name": "pycortex"})).generational


def test_replace_culls_to_make_room_for_the_next_offspring_and_keeps_an_untrained_parent():
    algo = _algo(10)
    parents = [_rec(0.5 + 0.01 * i, species="ab"[i % 2], age=2) for i in range(8)]
    # parent 0's training failed: it stays as it was; the others were trained once more
    kids = [_rec(None, continues=parents[0].id, step="continue")]
    kids[0] = kids[0].model_copy(update={"state": "dead"})
    kids += [_rec(0.6 + 0.01 * i, species=p.species, age=3, continues=p.id, step="continue")
             for i, p in enumerate(parents[1:])]
    kids += [_rec(0.4, species="a", step="offspring") for _ in range(3)]  # this generation's offspring
    plan = algo.replace(parents, kids)
    pool = 1 + 7 + 3  # the untrained parent, 7 trained networks, 3 offspring
    offspring = algo.offspring_count(pool)
    assert offspring == 5
    survivors = set(plan.alive) | ({parents[0].id} - set(plan.kill))
    assert len(survivors) == 10 - offspring and plan.next_slots == 10
    assert set(plan.kill) >= {p.id for p in parents[1:]}  # superseded by their continuations
    assert kids[0].id in plan.dead and set(plan.alive) | set(plan.dead) == {k.id for k in kids}
    # champions (the fittest of each species) are immune
    best = {s: max((k for k in kids[1:] if k.species == s), key=lambda k: k.fitness).id for s in "ab"}
    assert set(best.values()) <= set(plan.alive)
    assert algo.replace(parents, kids) == plan  # pure: any worker computes the same plan


def test_generation_slots_continue_each_network_then_breed():
    algo = _algo(10)
    from lse.algorithms.base import Context, PopulationView, Member

    recs = [_rec(0.5 + 0.1 * i, species="a") for i in range(3)]
    view = PopulationView([Member(r.id, r.fitness) for r in recs], {r.id: r for r in recs})
    order = sorted(r.id for r in recs)
    for k in range(3):
        sel = algo.select(view, random.Random(k), full=False, ctx=Context(generation=1, slot=k))
        assert sel.parents == (order[k],) and sel.plan["step"] == "continue" and not sel.kills
    sel = algo.select(view, random.Random(0), full=False, ctx=Context(generation=1, slot=3))
    assert sel.plan["step"] == "offspring" and set(sel.parents) <= set(order) and not sel.kills


def test_offspring_bred_in_parallel_cannot_found_species_past_the_cap():
    """Each offspring slot sees P_g's species, not its siblings': only the first (cap - present)
    offspring slots may found a new species."""
    from lse.algorithms.base import Context, Member, PopulationView

    algo = _algo(10, max_species=3)
    recs = [_rec(0.5 + 0.1 * i, species="ab"[i % 2]) for i in range(4)]  # 2 species, cap 3: one may be founded
    view = PopulationView([Member(r.id, r.fitness) for r in recs], {r.id: r for r in recs})
    founders = [algo.select(view, random.Random(k), full=False, ctx=Context(generation=1, slot=k)).plan["may_found"]
                for k in range(4, 8)]
    assert founders == [True, False, False, False]
    # a slot that may not found keeps its child inside the present species; one that may, does
    from lse.core import cortex

    g = cortex.species_founders(2, random.Random(0), (1, 12, 12), new_layer_nodes=4)[1]
    parent = _rec(0.6, species=cortex.species_key(g))
    parent = parent.model_copy(update={"dna": g.model_dump(mode="json")})
    kept = [algo.offspring([parent], {}, {parent.species}, random.Random(i), may_found=False).species for i in range(30)]
    free = [algo.offspring([parent], {}, {parent.species}, random.Random(i), may_found=True).species for i in range(30)]
    assert set(kept) == {parent.species} and set(free) - {parent.species}


def test_a_real_worker_runs_the_papers_generation(tmp_path):
    data = write_data(tmp_path / "data")
    pop = tmp_path / "pop"
    # 6 initial networks, limit 10: generation 1 trains 6 + breeds 3 (no cull); closing it,
    # 9 networks + 4 offspring would not fit, so 3 are culled: generation 2 trains 6 + breeds 4
    make_pop(pop, data, population_size=6, max_individuals=6 + 9 + 10,
             algorithm={"name": "pycortex", "options": {"loop": "generational", "ecosystem_limit": 10,
                                                        "initial_species": 2, "max_species": 3}})
    r = run_worker_cli(pop, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    check_individuals(pop)
    recs = {x.id: x for x in check_history(pop)}
    store = Store(pop).open()
    store.register_worker("checker", auto_heartbeat=False)
    try:
        algo = make_algorithm(store.config)
        gens = Generations(store, slots=algo.slots(1), initial_slots=algo.slots(0))
        plans = [gens.plan(g) for g in range(3)]
    finally:
        store.close()
    assert [p.slots for p in plans] == [6, 9, 10]
    assert [p.next_slots for p in plans] == [9, 10, 10]
    for g in (1, 2):
        before = plans[g - 1].survivors  # P_g
        kids = {c.slot: recs[c.id] for c in plans[g].children}
        assert all(k.barrier_generation == g for k in kids.values())
        continued = [kids[k].extra.get("continues") for k in range(len(before))]
        assert continued == sorted(before)  # slot k trains P_g's k-th network, each exactly once
        for k in range(len(before), plans[g].slots):
            child = kids[k]
            assert child.extra.get("step") == "offspring" and set(child.parents) <= set(before)
            assert "val_accuracy_before_training" in child.objectives  # evaluated before BP
        assert len(plans[g].survivors) + algo.offspring_count(plans[g].slots) == plans[g].next_slots <= 10
        assert set(plans[g].kill) >= set(continued)  # the trained versions replace them
        assert len({recs[i].species for i in plans[g].survivors}) <= 3  # the species cap holds
