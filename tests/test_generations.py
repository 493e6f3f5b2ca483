"""The generation barrier (lse.store.generations) on a real population folder: slots, claims, the
exclusive publish, seal/plan/apply/open, a plan written once and reused, hostile entries
quarantined, lost NFS replies."""

from __future__ import annotations

import errno
import json
import os
import shutil

import pytest

from lse.errors import LostRace
from lse.store.generations import Generations, Plan
from lse.core.records import IndividualName
from lse.store import Store

from _generation_helpers import check_barrier, mu_plus_lambda
from _store_helpers import make_record, make_weights, new_store


def _store(root, wid="w0", **kw) -> Store:
    s = Store(root, **kw) if (root / "experiment.json").exists() else new_store(root, **kw)
    s.register_worker(wid, auto_heartbeat=False)
    return s


def _fill(gens: Generations, g: int, accs, plan_fn=None) -> list[str]:
    """Claim and publish one child per accuracy (None: a failed child, published dead)."""
    gens.current()
    ids = []
    for acc in accs:
        k = gens.claim(g)
        assert k is not None
        rec = make_record(acc)
        gens.publish(g, k, rec, None if acc is None else make_weights(), alive=acc is not None)
        ids.append(rec.id)
        if plan_fn is not None:
            gens.close(g, plan_fn)
    return ids


@pytest.fixture
def store(weird_tmp_path):
    s = _store(weird_tmp_path / "pop")
    yield s
    s.close()


def test_generation_zero_opens_once_with_its_slot_count(store):
    gens = Generations(store, slots=2, initial_slots=5)
    assert gens.current() == 0
    assert Generations(store, slots=9).current() == 0  # a second worker: the same generation
    assert gens.slots(0) == 5
    assert Generations(store, slots=9).slots(0) == 5  # read from the generation, not the options
    assert gens.state(0) == "open"
    assert sorted(os.listdir(store.paths.generation(0))) == ["children", "generation.json"]


def test_two_generations_replace_by_the_plan(store):
    plan = mu_plus_lambda(3)
    gens = Generations(store, slots=2, initial_slots=4)
    g0 = _fill(gens, 0, [0.5, 0.7, None, 0.6])
    assert gens.state(0) == "open"  # full, but nobody closed it yet
    assert gens.advance(plan) == 1
    assert gens.state(0) == "closed"
    # (3+4): the three best initial children live; the failed one is born dead
    alive = {e.id: e.fitness for e in store.list_alive()}
    assert alive == {g0[0]: 0.5, g0[1]: 0.7, g0[3]: 0.6}
    dead = [e for e in store.entries("dead")]
    assert [e.id for e in dead] == [g0[2]] and dead[0].by == "w0"
    assert gens.claim(0) is None  # closed: nothing to claim

    g1 = _fill(gens, 1, [0.9, 0.1])
    assert gens.current() == 1 and gens.state(1) == "open"
    assert gens.close(1, plan) is True
    assert gens.current() == 2
    assert {e.id for e in store.list_alive()} == {g1[0], g0[1], g0[3]}
    p1 = gens.plan(1)
    assert p1.kill == [g0[0]] and p1.survivors == sorted([g1[0], g0[1], g0[3]])
    assert store.record(g0[0]).killed_by == "w0"
    assert store.record(g1[1]).state == "dead"
    figures = check_barrier(store, gens, 2)
    assert figures == {"generations": 2, "children": 6, "kills": 1, "alive": 3}
    status = gens.status()
    assert [(s.generation, s.slots, s.filled, s.state, s.kill, s.alive, s.dead) for s in status] == [
        (0, 4, 4, "closed", 0, 3, 1), (1, 2, 2, "closed", 1, 1, 1), (2, 2, 0, "open", None, None, None)]


def test_a_rule_sizes_the_next_generation_and_an_unusable_count_falls_back_to_it(store):
    """``next_slots`` (seed 002's generation: one training per network plus offspring) opens
    generation g+1 with that many slots; when g+1's generation.json is unusable, every worker
    takes the count from g's plan, not from its own configuration."""
    def keep_all(parents, children):
        return Plan(kill=(), alive=tuple(c.id for c in children if c.fitness is not None),
                    dead=tuple(c.id for c in children if c.fitness is None), next_slots=len(parents) + len(children) + 2)

    gens = Generations(store, slots=2, initial_slots=3)
    _fill(gens, 0, [0.5, 0.6, 0.7])
    assert gens.advance(keep_all) == 1
    assert gens.plan(0).next_slots == 5 and gens.slots(1) == 5
    (store.paths.generation(1) / "generation.json").write_text("{garbage")
    assert Generations(store, slots=2).slots(1) == 5  # from the plan, not slots=2
    _fill(gens, 1, [0.1] * 5)
    assert gens.advance(keep_all) == 2 and gens.slots(2) == 3 + 5 + 2


def test_close_waits_for_every_slot(store):
    plan = mu_plus_lambda(2)
    gens = Generations(store, slots=3)
    _fill(gens, 0, [0.1, 0.2])
    assert gens.close(0, plan) is False
    assert gens.state(0) == "open" and store.entries() == []
    _fill(gens, 0, [0.3])
    assert gens.close(0, plan) is True and gens.close(0, plan) is True  # idempotent
    assert gens.current() == 1


def test_a_slot_takes_one_child(store, weird_tmp_path):
    other = _store(weird_tmp_path / "pop", "w1")
    a, b = Generations(store, slots=2), Generations(other, slots=2)
    a.current()
    first = make_record(0.5)
    a.publish(0, 1, first, make_weights())
    with pytest.raises(LostRace, match="filled"):
        b.publish(0, 1, make_record(0.9), make_weights())
    assert store.read_record(store.paths.generation_child(0, 1)).id == first.id
    # the loser's scratch is gone: nothing private is left behind
    assert [n for n in os.listdir(other.paths.worker("w1")) if n != "heartbeat.json"] == []
    with pytest.raises(ValueError, match="slot 2 is not in 0..1"):
        a.publish(0, 2, make_record(0.5), make_weights())
    other.close()


def test_a_late_child_never_lands_in_a_replaced_generation(store, weird_tmp_path):
    """A slow worker publishing into a generation that was sealed meanwhile loses: children/
    is gone, so nothing can be added after the plan saw the children."""
    plan = mu_plus_lambda(2)
    gens = Generations(store, slots=2)
    _fill(gens, 0, [0.4, 0.6])
    assert gens.close(0, plan)
    with pytest.raises(LostRace, match="sealed"):
        gens.publish(0, 0, make_record(0.9), make_weights())
    assert not os.path.lexists(store.paths.generation_children(0))
    check_barrier(store, gens, 1)


def test_claims_spread_work_and_die_with_their_worker(store, weird_tmp_path):
    others = [_store(weird_tmp_path / "pop", f"w{i}") for i in (1, 2)]
    gens = [Generations(s, slots=3) for s in (store, *others)]
    gens[0].current()
    k0 = gens[0].claim(0)
    assert gens[0].claim(0) == k0  # asking again keeps the same claim
    k1 = gens[1].claim(0)
    k2 = gens[2].claim(0)
    assert sorted([k0, k1, k2]) == [0, 1, 2]  # three workers, three different slots
    late = _store(weird_tmp_path / "pop", "w3")
    assert Generations(late, slots=3).claim(0) is None  # every free slot is being worked on
    # w2 dies (its heartbeat names a process that is not this one): its slot is free again
    hb = store.paths.heartbeat("w2")
    body = json.loads(hb.read_text())
    hb.write_text(json.dumps({**body, "create_time": 1.0}))
    assert Generations(late, slots=3).claim(0) == k2
    gens[0].publish(0, k0, make_record(0.5), make_weights())
    assert not os.path.lexists(store.paths.generation_claim("w0", 0, k0))  # dropped once published
    for s in (*others, late):
        s.close()


def _die(store, wid: str) -> None:
    """Make worker ``wid`` provably dead to Store.is_dead_worker (same host, another process)."""
    store.worker.close() if store.worker.id == wid else None
    hb = store.paths.heartbeat(wid)
    hb.parent.mkdir(parents=True, exist_ok=True)
    body = json.loads(hb.read_text()) if hb.exists() else {"host": store.host, "pid": os.getpid()}
    hb.write_text(json.dumps({**body, "create_time": 1.0}))


def test_the_plan_is_written_once_and_reused(store, weird_tmp_path):
    """A plan, once written, is what every worker applies: a second closer with another rule
    (or the same rule on a population that already changed) never recomputes it."""
    gens = Generations(store, slots=3)
    _fill(gens, 0, [0.2, 0.8, 0.5])
    assert gens._seal(0)
    written = gens.planner.make(0, mu_plus_lambda(1))  # the first closer dies before applying
    other = _store(weird_tmp_path / "pop", "w1")

    def never(parents, children):
        raise AssertionError("the plan was recomputed")

    # A closer that looked before the plan existed computes its own, loses the plan's rename,
    # and goes on with the plan in force, not with the one it computed.
    assert Generations(other, slots=3).planner.make(0, mu_plus_lambda(3)) == written
    # While its planner lives, the plan is the planner's to apply: nobody else touches it.
    assert Generations(other, slots=3).close(0, never) is False
    assert sorted(e.fitness for e in store.list_alive()) == [] and gens.state(0) == "planned"
    _die(store, "w0")  # the planner's heartbeat now names a process that is not this one
    assert Generations(other, slots=3).close(0, never) is True
    assert [e.fitness for e in store.list_alive()] == [0.8]
    assert Generations(other, slots=3).plan(0) == written
    check_barrier(store, gens, 1)
    other.close()


def test_an_invalid_plan_writes_nothing(store):
    gens = Generations(store, slots=2)
    ids = _fill(gens, 0, [0.2, None])
    bad = [
        (lambda p, c: Plan(kill=[], alive=[ids[0]], dead=[]), "children missing"),
        (lambda p, c: Plan(kill=[ids[0]], alive=[], dead=ids), "kills non-parents"),
        (lambda p, c: Plan(kill=[], alive=ids, dead=[]), "failed children cannot live"),
    ]
    for fn, msg in bad:
        with pytest.raises(ValueError, match=msg):
            gens.close(0, fn)
        assert gens.plan(0) is None and store.entries() == []
    assert gens.close(0, mu_plus_lambda(2))


def test_generation_numbers_sort_as_numbers(store):
    """The listing order (and "10" < "9") is no order: generation 10 follows 9."""
    gens = Generations(store, slots=1)
    for g in range(11):
        _fill(gens, g, [0.1 + 0.01 * g])
        assert gens.close(g, mu_plus_lambda(2))
    assert gens.current() == 11
    assert Generations(store, slots=1).current() == 11  # a fresh worker, no cache
    check_barrier(store, gens, 11)


# ---- hostile entries -------------------------------------------------------------------------


def test_hostile_children_are_quarantined_and_their_slots_refilled(store, weird_tmp_path):
    gens = Generations(store, slots=6)
    gens.current()
    kids = store.paths.generation_children(0)
    outside = weird_tmp_path / "outside"
    outside.mkdir()
    (outside / "record.json").write_text(make_record(0.9).model_dump_json())
    os.symlink(outside, kids / "0")  # a link out of the population
    (kids / "1").write_text("not a folder")
    (kids / "2").mkdir()  # an empty folder: not a child
    (kids / "3").mkdir()
    (kids / "3" / "record.json").write_text("{garbage")
    (kids / "4").mkdir()
    (kids / "4" / "record.json").write_text(json.dumps({"id": "../../etc", "dna": {}}))
    (kids / "99").mkdir()  # out of range
    (kids / "x y").write_text("junk")
    existing = store.publish(make_record(0.3), make_weights())  # an impostor copies it into slot 5
    shutil.copytree(existing.path, kids / "5")
    assert gens.claim(0) is None  # names only: every slot looks filled
    assert gens.close(0, mu_plus_lambda(9)) is False  # the reads find them out
    assert sorted(os.listdir(kids)) == []
    quarantined = [n for n in os.listdir(store.paths.quarantine) if not n.endswith(".reason.txt")]
    assert len(quarantined) == 8
    assert os.path.isdir(outside) and os.listdir(outside) == ["record.json"]  # never followed
    ids = _fill(gens, 0, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])  # every slot is free again
    assert gens.close(0, mu_plus_lambda(9))
    assert sorted(e.id for e in store.list_alive()) == sorted(ids + [existing.id])


def test_hostile_generations_are_quarantined(store):
    gens = Generations(store, slots=1)
    gens.current()
    g = store.paths.generations
    (g / "junk").write_text("x")
    (g / "05").mkdir()  # not canonical: "5" and "05" would be two names for one generation
    (g / "3").mkdir()  # a gap
    (g / "1").mkdir()  # opened before generation 0 had a plan
    os.symlink(store.paths.generation(0), g / "7")
    assert gens.current() == 0
    assert sorted(os.listdir(g)) == ["0"]
    assert len([n for n in os.listdir(store.paths.quarantine) if not n.endswith(".reason.txt")]) == 5
    _fill(gens, 0, [0.5])
    assert gens.close(0, mu_plus_lambda(1))
    assert gens.current() == 1
    check_barrier(store, gens, 1)


# ---- lost NFS replies ------------------------------------------------------------------------


def _lost_reply(src, dst):
    """The server did the rename; the reply was lost and the retransmission found no source."""
    os.rename(src, dst)
    raise OSError(errno.ENOENT, "No such file or directory (retransmitted rename)", str(src))


def test_lost_replies_on_every_rename_still_close_generations(weird_tmp_path):
    """Every rename of the barrier (open, publish, seal, plan, kill, death record, move) loses
    its reply: each is recognised as done, and the result is the one of an unfaulted run."""
    store = _store(weird_tmp_path / "pop", rename=_lost_reply)
    gens = Generations(store, slots=2, initial_slots=3)
    plan = mu_plus_lambda(2)
    g0 = _fill(gens, 0, [0.5, 0.7, 0.6], plan)
    g1 = _fill(gens, 1, [0.9, 0.55], plan)
    assert gens.current() == 2
    assert sorted(e.id for e in store.list_alive()) == sorted([g1[0], g0[1]])
    assert sorted(os.listdir(store.paths.quarantine)) == []
    check_barrier(store, gens, 2)
    store.close()


def test_a_lost_race_is_not_mistaken_for_a_lost_reply(weird_tmp_path):
    """Our scratch vanished (the worker was reclaimed) and another child holds the slot: the
    rename reports ENOENT with "destination there, source gone", which _rename calls a win --
    the record id in the slot says it is not ours."""
    store = _store(weird_tmp_path / "pop")
    gens = Generations(store, slots=1)
    gens.current()
    winner = make_record(0.5)
    gens.publish(0, 0, winner, make_weights())

    def reclaimed(src, dst):
        shutil.rmtree(src)
        raise OSError(errno.ENOENT, "No such file or directory", str(src))

    other = _store(weird_tmp_path / "pop", "w1", rename=reclaimed)
    with pytest.raises(LostRace, match="another worker"):
        Generations(other, slots=1).publish(0, 0, make_record(0.9), make_weights())
    assert store.read_record(store.paths.generation_child(0, 0)).id == winner.id
    other.close()


def test_a_seal_right_after_our_publish_is_not_an_error(weird_tmp_path):
    """Another worker seals (and plans, and applies) the generation between our rename into
    children/<k> and our fsync of children/: the child is published, and the worker goes on
    (CI once saw FileNotFoundError here kill a worker)."""
    sealer = _store(weird_tmp_path / "pop", "w1")
    plan = mu_plus_lambda(1)
    theirs = Generations(sealer, slots=1, initial_slots=2)
    theirs.current()
    theirs.publish(0, 0, make_record(0.4), make_weights())

    def then_seal(src, dst):
        os.rename(src, dst)
        if dst.parent.name == "children":
            assert theirs.close(0, plan)  # seal + plan + apply, before our publish returns

    store = _store(weird_tmp_path / "pop", "w0", rename=then_seal)
    mine = make_record(0.8)
    assert Generations(store, slots=1, initial_slots=2).publish(0, 1, mine, make_weights()).id == mine.id
    assert [e.id for e in store.list_alive()] == [mine.id]
    check_barrier(store, theirs, 1)
    store.close()
    sealer.close()


def test_adopt_is_idempotent(store):
    """Store.adopt: the same move by two workers (same destination from the plan) is one move."""
    gens = Generations(store, slots=1)
    gens.current()
    rec = make_record(0.5)
    gens.publish(0, 0, rec, make_weights())
    src = store.paths.generation_child(0, 0)
    name = IndividualName(rec.id, "alive", 0.5)
    assert store.adopt(src, name) is True
    assert store.adopt(src, name) is True  # already there: done
    assert [e.id for e in store.list_alive()] == [rec.id]
