"""Issue 29: one safe read for every population file, ids that are real timestamps, bounded
numbers, and a GC that deletes any tree.  Each test plants what an attacker with write access
to the shared folder could, and asserts the reader quarantines or skips it and goes on."""

from __future__ import annotations

import json
import os

import pytest

from lse.core.records import IndividualName, IndividualRecord, id_time, is_id
from lse.errors import LostRace
from lse.store.population import remove_tree
from lse.store.saferead import CAPS, MAX_DEPTH, UnsafeFile, parse_json, read_bytes, read_json

from _store_helpers import make_record, make_weights, new_store, plant_attack, run_within

MONTH_13 = "20241301T000000000000Z-0123abcd"


def _in_thread(fn, timeout=10.0):
    return run_within(fn, timeout, "the read")


# ---- read_bytes / parse_json --------------------------------------------------------------


def test_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "f")
    out = _in_thread(lambda: read_bytes(tmp_path / "f", "heartbeat"))
    assert isinstance(out.get("error"), UnsafeFile) and "regular file" in str(out["error"])


def test_symlink_directory_and_sparse_giant_are_refused(tmp_path):
    (tmp_path / "secret").write_text('{"a": 1}')
    os.symlink(tmp_path / "secret", tmp_path / "link")
    with pytest.raises(UnsafeFile, match="symlink"):
        read_bytes(tmp_path / "link", "record")
    (tmp_path / "d").mkdir()
    with pytest.raises(UnsafeFile, match="regular file"):
        read_bytes(tmp_path / "d", "record")
    with open(tmp_path / "big", "wb") as f:
        f.truncate(CAPS["record"] + 1)  # sparse: costs nothing on disk
    with pytest.raises(UnsafeFile, match="more than a record file may"):
        read_bytes(tmp_path / "big", "record")
    with open(tmp_path / "weights", "wb") as f:
        f.truncate(2 << 30)  # the sparse 2 GiB weights file
    with pytest.raises(UnsafeFile, match="more than a weights file may"):
        read_bytes(tmp_path / "weights", "weights")
    with pytest.raises(FileNotFoundError):
        read_bytes(tmp_path / "absent", "record")


def test_deep_json_is_refused_not_a_recursion_error(tmp_path):
    for data in (b"[" * 200_000, b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), b'{"a":' * 5000 + b"1" + b"}" * 5000):
        with pytest.raises(UnsafeFile, match="JSON"):
            parse_json(data, "x")
    assert parse_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, "x") is not None
    (tmp_path / "g").write_bytes(b"\xff\xfe garbage")
    with pytest.raises(UnsafeFile, match="not valid JSON"):
        read_json(tmp_path / "g", "event")


# ---- ids -----------------------------------------------------------------------------------


def test_an_id_must_be_a_real_time():
    assert not is_id(MONTH_13)
    assert not is_id("20240230T000000000000Z-0123abcd")  # 30 February
    assert is_id("20240229T235959999999Z-0123abcd")
    assert IndividualName.parse(f"{MONTH_13}.alive.0.500000") is None
    with pytest.raises(ValueError, match="not an individual id"):
        id_time(MONTH_13)
    with pytest.raises(ValueError):
        make_record(0.5, id=MONTH_13)
    with pytest.raises(ValueError):
        make_record(0.5, parents=[MONTH_13])


@pytest.mark.parametrize("field,value", [("age", 10**400), ("born_at", -1e308), ("train_seconds", float("inf")),
                                         ("steps", 10**20), ("killed_at", float("nan"))])
def test_record_numbers_are_bounded(field, value):
    raw = make_record(0.5).model_dump(mode="json")
    raw[field] = value
    with pytest.raises(ValueError):
        IndividualRecord.model_validate(raw)


# ---- the store's readers ---------------------------------------------------------------------


def _plant(path, attack):
    plant_attack(path, attack, link_to="/etc/hostname")


ATTACKS = ["fifo", "sparse", "deep", "dir", "symlink"]


@pytest.mark.parametrize("attack", ATTACKS)
def test_hostile_record_or_weights_quarantine_a_parent(store, attack):
    good = store.publish(make_record(0.9), make_weights())
    for file in ("record.json", "weights.safetensors"):
        e = store.publish(make_record(0.5), make_weights())
        os.unlink(e.path / file)
        _plant(e.path / file, attack)
        out = _in_thread(lambda: store.read_parent(e))
        assert isinstance(out.get("error"), LostRace), out
        assert not os.path.lexists(e.path)
    assert [x.id for x in store.list_alive()] == [good.id]


@pytest.mark.parametrize("attack", ATTACKS)
def test_hostile_history_and_death_files_are_skipped(store, attack):
    good = store.publish(make_record(0.9), make_weights())
    victim = store.publish(make_record(0.4), make_weights())
    assert store.kill(victim)
    store.gc()
    _plant(store.paths.history / f"{make_record().id}.json", attack)
    death = store.paths.history_death(victim.id)
    os.unlink(death)
    _plant(death, attack)
    out = _in_thread(store.records)
    assert "error" not in out, out
    assert {r.id for r in out["value"]} == {good.id, victim.id}
    assert store.record(victim.id).killed_at is None  # the death time is lost, nothing else


@pytest.mark.parametrize("body", [
    {"host": None, "pid": -1, "create_time": "x", "counter": 1},
    {"host": "H", "pid": -5, "create_time": 1.0, "counter": 1},
    {"host": "H", "pid": 10**30, "create_time": 1.0, "counter": 1},
    {"host": "H", "pid": 12, "create_time": "soon", "counter": 1},
    {"host": "H", "pid": 12, "create_time": float("inf"), "counter": 1},
    [1, 2],
])
def test_malformed_heartbeats_never_raise(tmp_path, body):
    s = new_store(tmp_path / "pop", host="H", stale_after=0.0)
    s.register_worker("w0", auto_heartbeat=False)
    (s.paths.workers / "w1").mkdir()
    (s.paths.workers / "w1" / "heartbeat.json").write_text(json.dumps(body))
    assert s.is_dead_worker("w1") is None  # unknown: first look at a beat it cannot judge
    assert s.is_dead_worker("w1") is True  # ... that never moves: reclaimed like a dead host's
    assert s.recover().workers_reclaimed == ["w1"]
    s.close()


@pytest.mark.parametrize("attack", ATTACKS)
def test_hostile_heartbeat_file_never_hangs_recovery(tmp_path, attack):
    s = new_store(tmp_path / "pop", stale_after=0.0)
    s.register_worker("w0", auto_heartbeat=False)
    (s.paths.workers / "w1").mkdir()
    _plant(s.paths.workers / "w1" / "heartbeat.json", attack)
    out = _in_thread(lambda: (s.recover(), s.recover()))
    assert "error" not in out, out
    assert not os.path.lexists(s.paths.workers / "w1")
    s.close()


def test_another_pid_namespace_is_judged_like_another_host(tmp_path):
    """Containers with host networking share a host name, not a pid space: pid 1 there is not
    our pid 1.  A heartbeat from another pid namespace must not be judged by our process table."""
    s = new_store(tmp_path / "pop", stale_after=3600)
    s.register_worker("w0", auto_heartbeat=False)
    (s.paths.workers / "w1").mkdir()
    body = {"host": s.host, "pid": 2**30, "create_time": 1.0, "counter": 1, "pid_namespace": 1}
    (s.paths.workers / "w1" / "heartbeat.json").write_text(json.dumps(body))
    assert s.is_dead_worker("w1") is None  # not "True because no such pid here"
    body["pid_namespace"] = os.stat("/proc/self/ns/pid").st_ino
    (s.paths.workers / "w1" / "heartbeat.json").write_text(json.dumps(body))
    assert s.is_dead_worker("w1") is True  # our namespace: the process table is the truth
    s.close()


# ---- GC ------------------------------------------------------------------------------------


def _chain(root, depth):
    """A chain of nested folders deeper than any recursion limit and longer than PATH_MAX."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("dd", dir_fd=fd)
            nfd = os.open("dd", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
            f.write("x")
        os.symlink("/etc", "outside", dir_fd=fd)
    finally:
        os.close(fd)


def test_remove_tree_has_no_depth_limit(tmp_path):
    (tmp_path / "t").mkdir()
    _chain(tmp_path / "t", 3000)
    (tmp_path / "keep").write_text("k")
    os.symlink(tmp_path / "keep", tmp_path / "t" / "lnk")
    assert remove_tree(tmp_path / "t")
    assert not os.path.lexists(tmp_path / "t")
    assert (tmp_path / "keep").read_text() == "k"  # a symlink is removed, never followed


def test_gc_of_a_deep_tree_finishes_and_leaves_no_trap(store):
    e = store.publish(make_record(0.5), make_weights())
    _chain(e.path, 3000)
    assert store.kill(e)
    report = store.gc()
    assert report.collected == [e.id]
    assert os.listdir(store.paths.gc) == []
    assert store.record(e.id).collected


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions")
def test_gc_quarantines_what_it_cannot_delete(store):
    e = store.publish(make_record(0.5), make_weights())
    (e.path / "locked").mkdir()
    (e.path / "locked" / "f").write_text("x")
    os.chmod(e.path / "locked", 0o500)
    try:
        assert store.kill(e)
        store.gc()
        assert os.listdir(store.paths.gc) == []
        assert any(n.startswith(e.id) for n in os.listdir(store.paths.quarantine))
    finally:
        for root, dirs, _ in os.walk(store.paths.quarantine):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o700)
