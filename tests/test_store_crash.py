"""Crashes and faults: a process killed at every rename boundary leaves a legal state that
recover() cleans; ENOSPC/EDQUOT and short writes publish nothing; a lost NFS rename reply is
recognised as a win."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lse.errors import DiskFull
from lse.store import Store

from _store_helpers import make_record, make_weights, new_store

HERE = Path(__file__).parent

# Eight renames after arming: publish A, publish B, kill A (+ death record), gc A (+ its
# weights kept in history/: A was the best at its birth, + history record), close (worker
# folder into gc/).  The audit hook fires *before* each rename runs, so crashing
# at rename k leaves the state "after k-1 renames, before k".
VICTIM = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[3])
    from lse.store.population import Store
    from _store_helpers import make_record, make_weights
    crash_at = int(sys.argv[2])
    s = Store(sys.argv[1])
    s.register_worker("victim", auto_heartbeat=False)
    count = 0
    def hook(event, args):
        global count
        if event == "os.rename":
            count += 1
            if count == crash_at:
                os._exit(77)
    sys.addaudithook(hook)
    a = s.publish(make_record(0.3), make_weights())
    b = s.publish(make_record(0.6), make_weights())
    assert s.kill(a)
    s.gc()
    s.close()
    print("renames", count)
    """
)
N_RENAMES = 8


def _victim(root: Path, crash_at: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", VICTIM, str(root), str(crash_at), str(HERE)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _assert_legal_and_clean(store: Store) -> None:
    for e in store.entries():
        rec, weights = store.read_parent(e) if e.state == "alive" else (None, None)
        if rec is not None:
            assert rec.id == e.id and weights
    assert os.listdir(store.paths.gc) == []
    assert os.listdir(store.paths.quarantine) == []
    assert sorted(os.listdir(store.paths.workers)) == [store.worker.id]
    assert [n for n in os.listdir(store.paths.history) if n.startswith("tmp")] == []


def test_victim_renames_as_counted(tmp_path):
    new_store(tmp_path / "pop")
    out = _victim(tmp_path / "pop", 0)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["renames", str(N_RENAMES)]


@pytest.mark.parametrize("crash_at", range(1, N_RENAMES + 1))
def test_crash_at_each_rename_is_recovered(tmp_path, crash_at):
    root = tmp_path / "pop"
    store = new_store(root)
    out = _victim(root, crash_at)
    assert out.returncode == 77, out.stderr
    births_done = min(crash_at - 1, 2)

    store.register_worker("rescuer", auto_heartbeat=False)
    store.recover()  # same host: the victim's pid is gone
    store.gc()
    _assert_legal_and_clean(store)

    recs = store.records()
    assert len(recs) == births_done  # a birth is all or nothing
    if crash_at > 3:  # A's kill happened: A is dead (collected now), B alive
        assert [e.fitness for e in store.list_alive()] == [0.6]
        dead = [r for r in recs if r.val_accuracy == 0.3]
        assert dead[0].state == "dead" and dead[0].killed_by == "victim"
    if crash_at > 4:
        assert dead[0].killed_at is not None  # the death record was written before the crash
    store.close()


def test_crash_while_writing_scratch_is_reclaimed(tmp_path):
    root = tmp_path / "pop"
    store = new_store(root)
    # Die while the child's files are being written: after the weights, before record.json.
    code = VICTIM.replace('if event == "os.rename":', 'if event == "open" and str(args[0]).endswith("record.json"):')
    out = subprocess.run([sys.executable, "-c", code, str(root), "1", str(HERE)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 77, out.stderr
    assert any(n.startswith("child-") for n in os.listdir(store.paths.worker("victim")))
    store.register_worker("rescuer", auto_heartbeat=False)
    assert store.recover().workers_reclaimed == ["victim"]
    assert store.entries() == []
    _assert_legal_and_clean(store)
    store.close()


# ---- full disk and short writes --------------------------------------------------------------


def _nothing_published(store: Store) -> None:
    assert store.entries() == []
    assert [n for n in os.listdir(store.paths.worker("w0")) if n != "heartbeat.json"] == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
@pytest.mark.parametrize("call", ["write", "fsync"])
def test_full_disk_publishes_nothing(store, monkeypatch, code, call):
    real = getattr(os, call)
    calls = [0]

    def failing(fd, *a):
        calls[0] += 1
        if calls[0] >= 2:  # let the first file through: the failure is mid-individual
            raise OSError(code, os.strerror(code))
        return real(fd, *a)

    monkeypatch.setattr(os, call, failing)
    with pytest.raises(DiskFull, match="nothing was published"):
        store.publish(make_record(0.5), make_weights())
    monkeypatch.setattr(os, call, real)
    _nothing_published(store)
    store.publish(make_record(0.5), make_weights())  # space is back: the worker resumes
    assert len(store.list_alive()) == 1


def test_write_without_progress_is_full_disk(store, monkeypatch):
    monkeypatch.setattr(os, "write", lambda fd, data: 0)
    with pytest.raises(DiskFull):
        store.publish(make_record(0.5), make_weights())
    monkeypatch.undo()
    _nothing_published(store)


def test_short_writes_are_completed(store, monkeypatch):
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real(fd, bytes(data[:7])))
    e = store.publish(make_record(0.5), make_weights(3))
    monkeypatch.undo()
    rec, weights = store.read_parent(e)
    assert rec.val_accuracy == 0.5
    assert weights.keys() == make_weights(3).keys()


def test_full_disk_on_kill_record_keeps_the_kill(store, monkeypatch):
    e = store.publish(make_record(0.5), make_weights())
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    assert store.kill(e) is True
    monkeypatch.undo()
    assert store.list_alive() == []


# ---- lost NFS replies ------------------------------------------------------------------------


def _lost_reply(src, dst):
    """The server did the rename; the reply was lost and the retransmission found no source."""
    os.rename(src, dst)
    raise OSError(errno.ENOENT, "No such file or directory (retransmitted rename)", str(src))


def test_lost_reply_is_a_win(tmp_path):
    store = new_store(tmp_path / "pop", rename=_lost_reply)
    store.register_worker("w0", auto_heartbeat=False)
    e = store.publish(make_record(0.5), make_weights())
    assert store.list_alive() == [e]
    assert store.kill(e) is True
    assert store.kill(e) is False
    assert store.gc().collected == [e.id]
    [r] = store.records()
    assert r.collected and r.killed_by == "w0" and r.killed_at is not None
    store.close()
    assert os.listdir(store.paths.workers) == []


def test_lost_race_is_not_mistaken_for_a_lost_reply(tmp_path):
    store = new_store(tmp_path / "pop")
    store.register_worker("w0", auto_heartbeat=False)
    e = store.publish(make_record(0.5), make_weights())
    other = Store(store.root, rename=_lost_reply)
    other.register_worker("w1", auto_heartbeat=False)
    assert store.kill(e) is True
    assert other.kill(e) is False  # the dead name carries w0, not w1: w1 lost
    other.close()
    store.close()
