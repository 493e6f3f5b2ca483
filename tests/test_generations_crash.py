"""A worker killed at every rename boundary of closing a generation (seal, plan, each kill and
its death record, each child moved, the next generation opened): another worker finishes the
job, and the final state is legal and the same as the one of a run without a crash."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lse.store.generations import Generations
from lse.core.records import IndividualName
from lse.store import Store

from _generation_helpers import check_barrier, mu_plus_lambda
from _store_helpers import make_record, make_weights, new_store

HERE = Path(__file__).parent
MU = 4

# The victim closes generation 1 (3 children: 0.90, 0.65, failed) of a population of four
# (0.50 .. 0.80).  (4+3): parents 0.50 and 0.60 die, children 0.90 and 0.65 join.  The audit
# hook fires *before* each rename, so crashing at rename k leaves "after k-1 renames"; crash_at
# N_RENAMES + 1 dies after the last rename, before the worker unregisters.
VICTIM = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[3])
    from lse.store import Store
    from lse.store.generations import Generations
    from _generation_helpers import mu_plus_lambda
    crash_at = int(sys.argv[2])
    s = Store(sys.argv[1])
    s.register_worker(sys.argv[4], auto_heartbeat=False)
    gens = Generations(s, slots=3)
    count = 0
    def hook(event, args):
        global count
        if event == "os.rename":
            count += 1
            if count == crash_at:
                os._exit(77)
    sys.addaudithook(hook)
    g = gens.advance(mu_plus_lambda(int(sys.argv[5])))
    if crash_at > count:
        os._exit(77)
    print("renames", count, "generation", g)
    """
)
# seal 1, plan 1, two kills (each a rename and its death record) 4, three children moved 3, open 1
N_RENAMES = 10


def _id(i: int) -> str:
    """Fixed ids: every run closes the very same generation, so final states compare exactly."""
    return f"20240101T000000{i:06d}Z-{i:08x}"


def _setup(root: Path) -> None:
    store = new_store(root)
    store.register_worker("setup", auto_heartbeat=False)
    gens = Generations(store, slots=3, initial_slots=4)
    gens.current()
    for k, acc in enumerate([0.5, 0.6, 0.7, 0.8]):
        gens.publish(0, k, make_record(acc, id=_id(k)), make_weights(k))
    assert gens.close(0, mu_plus_lambda(MU))
    for k, acc in enumerate([0.9, 0.65, None]):
        rec = make_record(acc, id=_id(10 + k))
        gens.publish(1, k, rec, None if acc is None else make_weights(k), alive=acc is not None)
    store.close()


def _victim(root: Path, crash_at: int, wid: str = "victim") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", VICTIM, str(root), str(crash_at), str(HERE), wid, str(MU)],
        capture_output=True, text=True, timeout=120,
    )


def _final_state(store: Store, gens: Generations) -> dict:
    """What must not depend on crashes: every individual's id, state and fitness; each plan's
    parents, kills and children (a dead child's name carries its planner: left out)."""
    recs = {r.id: (r.state, r.val_accuracy) for r in store.records()}
    plans = {}
    for g in range(gens.current()):
        p = gens.plan(g)
        plans[g] = (p.parents, p.kill, [(c.slot, c.id, IndividualName.parse(c.name).state) for c in p.children])
    return {"records": recs, "plans": plans, "current": gens.current(),
            "alive": sorted((e.id, e.fitness) for e in store.list_alive())}


def _rescue(root: Path) -> tuple[Store, Generations]:
    store = Store(root)
    store.register_worker("rescuer", auto_heartbeat=False)
    store.recover()  # same host: the victims' processes are gone
    gens = Generations(store, slots=3)
    assert gens.advance(mu_plus_lambda(MU)) == 2
    store.gc()
    return store, gens


def _assert_clean(store: Store) -> None:
    assert os.listdir(store.paths.quarantine) == []
    assert os.listdir(store.paths.gc) == []
    assert sorted(os.listdir(store.paths.workers)) == ["rescuer"]
    assert [n for n in os.listdir(store.paths.worker("rescuer")) if n != "heartbeat.json"] == []
    assert sorted(os.listdir(store.paths.generations)) == ["0", "1", "2"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The uncrashed run."""
    root = tmp_path_factory.mktemp("ref") / "pop"
    _setup(root)
    out = _victim(root, 0)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["renames", str(N_RENAMES), "generation", "2"]
    store, gens = _rescue(root)
    state = _final_state(store, gens)
    assert state["alive"] == [(_id(2), 0.7), (_id(3), 0.8), (_id(10), 0.9), (_id(11), 0.65)]
    store.close()
    return state


@pytest.mark.parametrize("crash_at", range(1, N_RENAMES + 2))
def test_crash_at_each_rename_of_close_is_finished_by_another(tmp_path, reference, crash_at):
    root = tmp_path / "pop"
    _setup(root)
    out = _victim(root, crash_at)
    assert out.returncode == 77, out.stderr
    store, gens = _rescue(root)
    check_barrier(store, gens, 2)
    assert _final_state(store, gens) == reference
    _assert_clean(store)
    store.close()


@pytest.mark.parametrize("first,second", [(1, 1), (2, 2), (3, 4), (6, 1), (8, 2)])
def test_two_crashes_in_a_row(tmp_path, reference, first, second):
    """The worker that takes over dies too, at another boundary of what is left."""
    root = tmp_path / "pop"
    _setup(root)
    assert _victim(root, first, "victim1").returncode == 77
    assert _victim(root, second, "victim2").returncode == 77
    store, gens = _rescue(root)
    check_barrier(store, gens, 2)
    assert _final_state(store, gens) == reference
    _assert_clean(store)
    store.close()
