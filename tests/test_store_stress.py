"""Real processes racing kills, births and garbage collection on the same individuals.

Afterwards: every individual was killed at most once, every birth is visible exactly once, the
alive count matches the operations that succeeded, and a reader polling throughout never saw a
partially written individual.  No timing is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lse.core.records import IndividualName
from lse.store.durable import weights_from_bytes
from lse.store.population import Store
from lse.store.recordio import parse_record

from _store_helpers import new_store

HERE = Path(__file__).parent


def _reader(store: Store, stop: threading.Event, seen: dict, problems: list) -> None:
    """Poll the population like a tournament would, and open every individual it lists."""
    while not stop.is_set():
        for e in store.entries():
            try:
                data = store.paths.record_file(e.path).read_bytes()
                weights = store.paths.weights_file(e.path).read_bytes() if e.fitness is not None else None
            except FileNotFoundError:
                continue  # killed or collected after the listing: fine
            try:
                rec = parse_record(data, str(e.path), IndividualName.parse(e.path.name))
                if weights is not None:
                    weights_from_bytes(weights)
                seen["complete"] += 1
                if rec.id != e.id:
                    problems.append(f"{e.path.name}: record of {rec.id}")
            except Exception as err:  # any parse failure is exactly what this test hunts
                problems.append(f"{e.path.name}: {err!r}")


def _run(tmp_path: Path, n_procs: int, ops: int) -> None:
    root = tmp_path / "pop"
    store = new_store(root)
    store.register_worker("reader", auto_heartbeat=False)
    go = tmp_path / "go"
    procs, outs = [], []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    for i in range(n_procs):
        out = tmp_path / f"out{i}.json"
        outs.append(out)
        procs.append(
            subprocess.Popen(
                [sys.executable, str(HERE / "_store_stress_worker.py"), str(root), f"p{i}", str(ops), str(i), str(out), str(go)],
                env=env,
            )
        )
    stop = threading.Event()
    seen = {"complete": 0}
    problems: list[str] = []
    reader = threading.Thread(target=_reader, args=(store, stop, seen, problems), daemon=True)
    try:
        reader.start()
        go.touch()
        for p in procs:
            assert p.wait(timeout=240) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        stop.set()
        reader.join(timeout=60)

    assert problems == []
    assert seen["complete"] > 0

    results = [json.loads(o.read_text()) for o in outs]
    births = [b for r in results for b in r["births"]]
    kills = [k for r in results for k in r["kills"]]
    assert len(births) + len(kills) + sum(r["lost"] for r in results) >= n_procs * ops
    assert len(set(kills)) == len(kills), "an individual was killed twice"
    assert len(set(births)) == len(births)
    assert set(kills) <= set(births)
    assert kills, "no kill succeeded: the test raced nothing"

    # Every birth visible exactly once: in individuals/ or history/, never both, never twice.
    listed = [e.id for e in store.entries()]
    collected = [
        n[: -len(".json")]
        for n in os.listdir(store.paths.history)
        if n.endswith(".json") and not n.endswith(".death.json")  # not kept weights (Store.gc)
    ]
    assert len(listed) == len(set(listed))
    assert not set(listed) & set(collected)
    assert sorted(listed + collected) == sorted(births)
    records = store.records()
    assert [r.id for r in records] == sorted(births)

    born_alive = {r.id for r in records if r.failed_reason is None}
    assert {e.id for e in store.list_alive()} == born_alive - set(kills)
    killed_records = {r.id: r for r in records if r.killed_by is not None}
    assert set(killed_records) == set(kills)

    store.gc()
    store.recover()
    store.close()
    assert os.listdir(store.paths.gc) == []
    assert os.listdir(store.paths.workers) == []
    assert os.listdir(store.paths.quarantine) == []


def test_eight_processes_race(tmp_path):
    _run(tmp_path, n_procs=8, ops=250)


@pytest.mark.slow
def test_eight_processes_race_long(tmp_path):
    _run(tmp_path, n_procs=8, ops=2500)
