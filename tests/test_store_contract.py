"""Contract of the population store against a real directory (with a nasty path): layout,
every transition, listing, records, GC keeping history, recovery of crashed workers."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading

import pytest
import torch

from lse.config import ExperimentConfig
from lse.errors import ConfigError, DNAError, LostRace, StoreError
from lse.core.records import IndividualName, id_time, new_id
from lse.store.population import PopulationPaths, Store
from lse.store.reading import Reader

from _store_helpers import make_record, make_weights, new_store


@pytest.fixture
def store(weird_tmp_path):
    s = new_store(weird_tmp_path / "pop", stale_after=0.2)
    s.register_worker("w0", auto_heartbeat=False)
    yield s
    s.close()


# ---- ids and names ---------------------------------------------------------------------------


def test_ids_are_unique_and_sort_by_birth():
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert abs(id_time(ids[0]) - id_time(ids[-1])) < 60


@pytest.mark.parametrize(
    "name",
    [
        "x",
        "../20240101T000000000000Z-0123abcd.alive.0.500000",
        "20240101T000000000000Z-0123abcd.alive.0.5",
        "20240101T000000000000Z-0123abcd.alive.02.000000",  # one spelling per fitness
        "20240101T000000000000Z-0123abcd.alive.-0.000000",
        "20240101T000000000000Z-0123abcd.alive.1234567890.000000",  # beyond FITNESS_LIMIT
        "20240101T000000000000Z-0123abcd.alive.1e5",
        "20240101T000000000000Z-0123abcd.alive.nan",
        "20240101T000000000000Z-0123abcd.alive.0.500000\n",
        "20240101T000000000000Z-0123abcd.dead.0.500000",  # dead needs the killer
        "20240101T000000000000Z-0123abcd.dead.0.500000.w/1",
        "20240101T000000000000Z-0123abcd.dead.0.500000.w.1",
        "20240101T000000000000Z-0123ABCD.alive.0.500000",
        "20240101T000000000000Z-0123abcd.zombie.0.500000",
    ],
)
def test_strict_names_refuse(name):
    assert IndividualName.parse(name) is None


def test_names_round_trip():
    i = new_id()
    for n in (IndividualName(i, "alive", 0.25), IndividualName(i, "dead", None, "host-1_a"), IndividualName(i, "dead", 1.0, "w"),
              IndividualName(i, "alive", 2.5), IndividualName(i, "alive", -3.25), IndividualName(i, "alive", 123456.0)):
        assert IndividualName.parse(n.render()) == n  # fitness other than an accuracy (version 2)


# ---- layout and experiment.json --------------------------------------------------------------


def test_layout(store):
    p = PopulationPaths(store.root)
    for d in p.folders:
        assert d.is_dir(), d
    assert p.experiment.is_file()
    assert store.config.population_size == 4
    assert p.heartbeat("w0").is_file()
    assert Store(store.root).open().config == store.config


def test_create_twice_keeps_the_first(weird_tmp_path):
    a = Store(weird_tmp_path / "p").create(ExperimentConfig(population_size=3))
    b = Store(weird_tmp_path / "p").create(ExperimentConfig(population_size=9))
    assert a.population_size == b.population_size == 3
    assert [n for n in os.listdir(weird_tmp_path / "p") if n.startswith(".")] == []


def test_replace_config_changes_stop_conditions_and_keeps_the_creation_time(weird_tmp_path):
    store = Store(weird_tmp_path / "p")
    store.create(ExperimentConfig(population_size=3))
    old = 1_000_000_000.0
    os.utime(store.paths.experiment, (old, old))  # max_hours counts from this mtime
    store.replace_config(store.config.model_copy(update={"max_hours": 2.0}))
    assert Store(store.root).config.max_hours == store.config.max_hours == 2.0
    assert os.stat(store.paths.experiment).st_mtime == old
    with pytest.raises(ConfigError, match="population_size: 3 -> 9"):
        store.replace_config(store.config.model_copy(update={"population_size": 9}))
    assert Store(store.root).config.population_size == 3
    store.replace_config(store.config.model_copy(update={"population_size": 9}), force=True)
    assert Store(store.root).config.population_size == 9
    assert [n for n in os.listdir(store.root) if n.startswith(".")] == []


def test_concurrent_create_has_one_winner(tmp_path):
    root = tmp_path / "p"
    code = (
        "import sys; from lse.store.population import Store; from lse.config import ExperimentConfig;"
        "c = Store(sys.argv[1]).create(ExperimentConfig(population_size=int(sys.argv[2])));"
        "print(c.population_size)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(root), str(n)], stdout=subprocess.PIPE, text=True)
        for n in range(2, 8)
    ]
    outs = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(outs) == 1
    assert json.loads((root / "experiment.json").read_text())["population_size"] == int(outs.pop())


def test_open_refuses_non_population(weird_tmp_path):
    with pytest.raises(StoreError, match="no population"):
        Store(weird_tmp_path / "missing").open()
    (weird_tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="not a population"):
        Store(weird_tmp_path / "empty").open()


# ---- transitions -----------------------------------------------------------------------------


def test_birth_is_visible_complete_and_alive(store):
    rec = make_record(0.75)
    e = store.publish(rec, make_weights())
    assert e.state == "alive" and e.fitness == 0.75 and e.id == rec.id
    assert e.path.name == f"{rec.id}.alive.0.750000"
    assert store.list_alive() == [e]
    got, weights = store.read_parent(e)
    assert got.id == rec.id and got.worker == "w0" and got.host == store.host and got.born_at is not None
    assert got.dna == rec.dna
    assert torch.equal(weights["fc.weight"], make_weights()["fc.weight"])
    # the scratch is gone: the birth was a rename, not a copy
    assert [n for n in os.listdir(store.paths.worker("w0")) if n.startswith("child-")] == []


def test_failed_child_is_born_dead_with_reason(store):
    rec = make_record(None, failed_reason="loss became NaN at step 3")
    e = store.publish(rec, None, alive=False)
    assert e.state == "dead" and e.fitness is None and e.by == "w0"
    assert store.list_alive() == []
    [r] = store.records()
    assert r.state == "dead" and r.failed_reason.startswith("loss became NaN")


def test_alive_needs_accuracy(store):
    with pytest.raises(ValueError):
        store.publish(make_record(None), make_weights())


def test_publish_refuses_invalid_dna(store):
    rec = make_record(0.5).model_copy(update={"dna": {"vertices": "nope"}})
    with pytest.raises(DNAError):
        store.publish(rec, make_weights())
    assert store.entries() == []


def test_kill_once(store):
    e = store.publish(make_record(0.4), make_weights())
    assert store.kill(e) is True
    assert store.kill(e) is False  # lost race: already dead
    assert store.list_alive() == []
    [d] = store.entries()
    assert d.state == "dead" and d.by == "w0" and d.id == e.id
    [r] = store.records()
    assert r.state == "dead" and r.killed_by == "w0" and r.killed_at is not None


def test_read_parent_of_killed_or_collected_is_lost_race(store):
    e = store.publish(make_record(0.4), make_weights())
    store.kill(e)
    with pytest.raises(LostRace):
        store.read_parent(e)
    store.gc()
    with pytest.raises(LostRace):
        store.read_parent(e)


def test_parent_killed_while_being_read_is_lost_race(store, monkeypatch):
    e = store.publish(make_record(0.4), make_weights())
    import lse.store.reading as st

    real = st.weights_from_bytes

    def load_then_killed(data):
        Store(store.root).kill(e)  # another worker wins while we copy
        return real(data)

    monkeypatch.setattr(st, "weights_from_bytes", load_then_killed)
    with pytest.raises(LostRace):
        store.read_parent(e)


def test_kill_race_between_two_stores_has_one_winner(store):
    e = store.publish(make_record(0.4), make_weights())
    other = Store(store.root)
    other.register_worker("w1", auto_heartbeat=False)
    assert sorted([store.kill(e), other.kill(e)]) == [False, True]
    other.close()


# ---- listing and records ---------------------------------------------------------------------


def test_listing_sorted_by_birth_and_filtered(store):
    es = [store.publish(make_record(a / 10), make_weights()) for a in (3, 1, 2)]
    store.kill(es[1])
    alive = store.list_alive()
    assert [x.id for x in alive] == [es[0].id, es[2].id]
    assert [x.id for x in store.entries()] == [x.id for x in es]
    assert [x.id for x in store.entries("dead")] == [es[1].id]


def test_list_alive_reads_no_files(store, monkeypatch):
    for a in range(5):
        store.publish(make_record(a / 10), make_weights())
    import builtins

    def no_open(*a, **k):
        raise AssertionError("list_alive opened a file")

    monkeypatch.setattr(builtins, "open", no_open)
    monkeypatch.setattr(os, "open", no_open)
    assert len(store.list_alive()) == 5


def test_records_every_individual_ever(store):
    a = store.publish(make_record(0.3), make_weights())
    ra, _ = store.read_parent(a)
    b = store.publish(make_record(0.6, parent=ra), make_weights())
    c = store.publish(make_record(None, failed_reason="OOM"), None, alive=False)
    store.kill(a)
    store.gc()  # a and c collected: only their records remain
    recs = store.records()
    assert [r.id for r in recs] == sorted([a.id, b.id, c.id])
    by = {r.id: r for r in recs}
    assert by[a.id].state == "dead" and by[a.id].collected and by[a.id].killed_by == "w0"
    assert by[a.id].killed_at is not None and by[a.id].dna == ra.dna
    assert by[b.id].state == "alive" and by[b.id].parent_id == a.id and by[b.id].generation == 1
    assert by[c.id].failed_reason == "OOM" and by[c.id].killed_at is None
    assert store.record(b.id).val_accuracy == 0.6


def test_record_by_id_reads_only_that_individual(store, monkeypatch):
    """record(id) finds alive, killed, collected and mid-collection individuals, equal to what
    records() says of them, without reading every record (a worker asks per new birth)."""
    alive = store.publish(make_record(0.6), make_weights())
    killed = store.publish(make_record(0.5), make_weights())
    collected = store.publish(make_record(0.3), make_weights())
    born_dead = store.publish(make_record(None, failed_reason="OOM"), None, alive=False)
    mid_gc = store.publish(make_record(0.4), make_weights())
    store.kill(collected)
    store.gc()  # collected (and born_dead) now only in history/
    store.kill(killed)
    store.kill(mid_gc)
    os.rename(store.find(mid_gc.id).path, store.paths.gc_individual(mid_gc.id, "w9"))  # a collector at work
    expected = {r.id: r for r in store.records()}
    monkeypatch.setattr(Reader, "records", lambda self: pytest.fail("record(id) must not read every record"))
    for e in (alive, killed, collected, born_dead, mid_gc):
        assert store.record(e.id) == expected[e.id]
    assert store.record(alive.id).state == "alive"
    assert store.record(killed.id).state == "dead" and not store.record(killed.id).collected
    assert store.record(collected.id).collected and store.record(collected.id).killed_at is not None
    assert store.record(mid_gc.id).collected
    assert store.record(new_id()) is None and store.record("not-an-id") is None


# ---- garbage collection ----------------------------------------------------------------------


def test_gc_frees_weights_keeps_history(store):
    better = [store.publish(make_record(acc), make_weights()) for acc in (0.9, 0.8)]
    e = store.publish(make_record(0.3), make_weights())  # born after better ones, not top-2
    store.kill(e)
    rep = store.gc()
    assert rep.collected == [e.id]
    assert sorted(os.listdir(store.paths.individuals)) == sorted(b.path.name for b in better)
    assert not store.paths.history_weights(e.id).exists()
    assert store.load_weights(e.id) is None
    assert os.listdir(store.paths.gc) == []
    h = json.loads(store.paths.history_record(e.id).read_text())
    assert h["id"] == e.id and h["collected"] is True and h["val_accuracy"] == 0.3
    assert store.paths.history_death(e.id).exists()
    assert store.gc().collected == []  # idempotent


def test_gc_keeps_weights_reports_need(store):
    """Record holders (better than everyone born before) and the top-2 keep their weights
    after collection: Figure 2 and the ensemble need their test accuracy later."""
    accs = [0.5, 0.4, 0.7, 0.6, 0.65, 0.2]
    es = [store.publish(make_record(acc), make_weights(seed=k)) for k, acc in enumerate(accs)]
    for e in es:
        store.kill(e)
    store.gc()
    kept = {e.id for e in es if store.paths.history_weights(e.id).exists()}
    # record holders 0.5, 0.7; top-2 0.7, 0.65
    assert kept == {es[0].id, es[2].id, es[4].id}
    w = store.load_weights(es[2].id)
    assert torch.equal(w["fc.weight"], make_weights(seed=2)["fc.weight"])
    assert store.load_weights(es[1].id) is None
    assert len(store.records()) == len(accs)  # kept weights are not mistaken for records


def test_gc_judges_record_holders_by_birth_not_by_id(store):
    """Ids are drawn when training starts: a rival with an earlier id and a better accuracy
    that was born later does not make an individual's weights disposable."""
    from lse.core.records import new_id

    slow_id, fast_id = new_id(), new_id()
    for acc in (0.95, 0.92):  # the top-2, alive
        store.publish(make_record(acc), make_weights())
    slow = store.publish(make_record(0.9, id=slow_id, born_at=2000.0), make_weights())
    fast = store.publish(make_record(0.5, id=fast_id, born_at=1000.0), make_weights(seed=7))
    store.kill(fast)
    store.gc()
    assert store.paths.history_weights(fast.id).exists()  # best of all born before it
    store.kill(slow)
    store.gc()
    assert store.paths.history_weights(slow.id).exists()


def test_load_weights_of_alive_and_dead(store):
    e = store.publish(make_record(0.5), make_weights(seed=3))
    assert torch.equal(store.load_weights(e.id)["fc.weight"], make_weights(seed=3)["fc.weight"])
    store.kill(e)
    assert torch.equal(store.load_weights(e.id)["fc.weight"], make_weights(seed=3)["fc.weight"])


def test_gc_leaves_alive_alone(store):
    e = store.publish(make_record(0.3), make_weights())
    store.gc()
    assert store.list_alive() == [e]


def test_two_collectors_never_collect_the_same(store):
    es = [store.publish(make_record(0.1), make_weights()) for _ in range(20)]
    for e in es:
        store.kill(e)
    other = Store(store.root)
    other.register_worker("w1", auto_heartbeat=False)
    reports = []
    ts = [threading.Thread(target=lambda s=s: reports.append(s.gc())) for s in (store, other)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    collected = reports[0].collected + reports[1].collected
    assert sorted(collected) == sorted(e.id for e in es)
    assert len(store.records()) == 20
    other.close()


# ---- workers and recovery --------------------------------------------------------------------


def _dead_same_host_worker(root, wid: str) -> None:
    """A worker process that registers, leaves a scratch child and dies without cleaning up."""
    code = (
        "import os, sys; from lse.store.population import Store;"
        "s = Store(sys.argv[1]); w = s.register_worker(sys.argv[2], auto_heartbeat=False);"
        "os.makedirs(os.path.join(w.dir, 'child-x')); open(os.path.join(w.dir, 'child-x', 'f'), 'w').close();"
        "os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code, str(root), wid], check=True, timeout=60)


def test_recover_same_host_dead_pid(store):
    _dead_same_host_worker(store.root, "crashed")
    assert store.paths.worker("crashed").exists()
    rep = store.recover()
    assert rep.workers_reclaimed == ["crashed"]
    assert sorted(os.listdir(store.paths.workers)) == ["w0"]
    assert os.listdir(store.paths.gc) == []


def test_recover_same_host_pid_reused(store):
    # Our own pid, but another process start time: the worker that wrote it is gone.
    wdir = store.paths.worker("reused")
    wdir.mkdir()
    hb = {"host": store.host, "pid": os.getpid(), "create_time": 12345.0, "counter": 1}
    store.paths.heartbeat("reused").write_text(json.dumps(hb))
    assert store.recover().workers_reclaimed == ["reused"]


def test_recover_keeps_live_same_host_worker(store):
    other = Store(store.root)
    other.register_worker("alive-one", auto_heartbeat=False)
    assert store.recover().workers_reclaimed == []
    assert store.paths.worker("alive-one").exists()
    other.close()
    assert not store.paths.worker("alive-one").exists()


def test_recover_other_host_by_stale_heartbeat_on_reader_clock(store, monkeypatch):
    import lse.store.population as st

    clock = [1000.0]
    monkeypatch.setattr(st.time, "monotonic", lambda: clock[0])
    remote = Store(store.root, host="far-away-host")
    h = remote.register_worker("remote", auto_heartbeat=False)
    assert store.recover().workers_reclaimed == []  # first observation
    clock[0] += 100
    h.heartbeat()  # it beats: a fresh observation
    assert store.recover().workers_reclaimed == []
    clock[0] += 0.1  # < stale_after (0.2)
    assert store.recover().workers_reclaimed == []
    clock[0] += 0.2  # unchanged for >= stale_after on our clock
    assert store.recover().workers_reclaimed == ["remote"]


def test_register_takes_over_dead_worker_id(store):
    _dead_same_host_worker(store.root, "w7")
    s = Store(store.root)
    h = s.register_worker("w7", auto_heartbeat=False)
    assert not (h.dir / "child-x").exists()
    with pytest.raises(StoreError, match="in use"):
        Store(store.root).register_worker("w7", auto_heartbeat=False)
    s.close()


def test_auto_heartbeat_moves(store):
    s = Store(store.root)
    h = s.register_worker("beater", heartbeat_seconds=0.01)
    import time

    deadline = time.monotonic() + 30
    while h.counter < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert h.counter >= 3
    s.close()
    assert not store.paths.worker("beater").exists()


# ---- stop file and errors --------------------------------------------------------------------


def test_stop_file(store):
    assert not store.stop_requested()
    store.request_stop("max_individuals reached")
    assert Store(store.root).stop_requested()
    assert "max_individuals" in store.paths.stop.read_text()
    store.clear_stop()
    assert not store.stop_requested()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_population_is_a_clear_store_error(store):
    e = store.publish(make_record(0.3), make_weights())
    os.chmod(store.paths.individuals, 0o555)
    try:
        with pytest.raises(StoreError, match="cannot write"):
            store.kill(e)
        assert [x.id for x in store.list_alive()] == [e.id]  # still readable
    finally:
        os.chmod(store.paths.individuals, 0o755)


def test_permission_denied_maps_to_store_error(store, monkeypatch):
    e = store.publish(make_record(0.3), make_weights())

    def denied(src, dst):
        raise OSError(errno.EROFS, "Read-only file system", str(src))

    s = Store(store.root, rename=denied)
    s.register_worker("w9", auto_heartbeat=False)
    with pytest.raises(StoreError, match="read-write"):
        s.kill(e)
