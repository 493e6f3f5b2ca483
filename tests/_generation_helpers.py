"""Helpers of the generation-barrier tests (importable from the subprocesses they start)."""

from __future__ import annotations

import os

from lse.store.generations import GenerationPlan, Generations, Plan
from lse.core.records import IndividualName, IndividualRecord
from lse.store import Store


def mu_plus_lambda(mu: int):
    """(mu+lambda) replacement: the best ``mu`` of parents and sound children survive (ties by
    id); failed children die.  Pure, so every closer would compute the same plan."""

    def plan(parents: list[IndividualRecord], children: list[IndividualRecord]) -> Plan:
        sound = [c for c in children if c.state == "alive" and c.val_accuracy is not None]
        pool = sorted(parents + sound, key=lambda r: (-(r.val_accuracy or 0.0), r.id))
        keep = {r.id for r in pool[:mu]}
        return Plan(
            kill=[p.id for p in parents if p.id not in keep],
            alive=[c.id for c in sound if c.id in keep],
            dead=[c.id for c in children if c.id not in keep],
        )

    return plan


def child_ids(gens: Generations, g: int) -> list[str]:
    plan = gens.plan(g)
    assert plan is not None, f"generation {g} has no plan"
    return [c.id for c in plan.children]


def check_barrier(store: Store, gens: Generations, closed_upto: int) -> dict:
    """The invariants of the barrier after generations 0..closed_upto-1 closed (generation
    ``closed_upto`` open, not closed).  Returns figures for reports."""
    paths = store.paths
    assert gens.current() == closed_upto
    recs = {r.id: r for r in store.records()}
    entries = store.entries()
    assert len({e.id for e in entries}) == len(entries), "an id appears twice in individuals/"
    alive_now = sorted(e.id for e in entries if e.state == "alive")
    seen: set[str] = set()
    prev: GenerationPlan | None = None
    kills = 0
    for g in range(closed_upto):
        assert gens.state(g) == "closed"
        plan = gens.plan(g)
        n = gens.slots(g)
        assert plan.slots == n and len(plan.children) == n, f"generation {g}: {len(plan.children)} of {n} children"
        assert sorted(c.slot for c in plan.children) == list(range(n))
        ids = [c.id for c in plan.children]
        assert len(set(ids)) == n and not (set(ids) & seen), f"generation {g}: a child twice"
        seen |= set(ids)
        # every child accounted for, in the state the plan gave it (or killed later)
        for c in plan.children:
            assert c.id in recs, f"generation {g}: child {c.id} is lost"
            if IndividualName.parse(c.name).state == "dead":
                assert recs[c.id].state == "dead"
        for k in plan.kill:
            assert recs[k].state == "dead", f"generation {g}: {k} should have been killed"
        # the population each plan saw is exactly its predecessor's survivors: generation g was
        # never planned before generation g-1's plan was fully applied
        expected_parents = [] if prev is None else prev.survivors
        assert sorted(plan.parents) == expected_parents, f"generation {g} planned from a half-replaced population"
        assert set(plan.kill) <= set(plan.parents)
        kills += len(plan.kill)
        # nothing left in the generation: children/ sealed, sealed/ emptied
        assert not os.path.lexists(paths.generation_children(g))
        assert os.listdir(paths.generation_sealed(g)) == []
        prev = plan
    if prev is not None:
        assert alive_now == prev.survivors, "the alive population is not the last plan's survivors"
    # every individual of the population came through a plan (children of the open generation
    # are not in individuals/ yet)
    assert set(recs) == seen, f"individuals outside any plan: {sorted(set(recs) - seen)[:5]}"
    return {"generations": closed_upto, "children": len(seen), "kills": kills, "alive": len(alive_now)}
