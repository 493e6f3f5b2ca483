"""Kill storm on the generation barrier: worker processes loop (close what can be closed, claim
a slot, "train", publish) for several generations while a killer SIGKILLs random ones and starts
replacements.  Afterwards every closed generation has exactly its slots of children, all
accounted for in the population as its plan says, each plan saw exactly its predecessor's
survivors (no generation opened before the previous plan was fully applied), no id twice, and
recovery leaves nothing behind."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lse.store.generations import Generations
from lse.store import Store

from _generation_helpers import check_barrier
from _store_helpers import new_store

HERE = Path(__file__).parent
WORKER = HERE / "_generation_stress_worker.py"


def _applier(root: Path, running: set[str], deadline: float) -> str | None:
    """The worker that wrote a plan not yet fully applied (generation g planned, and g+1 not
    open or children still in sealed/): most likely applying it now.  Polls until ``deadline``."""
    gens = root / "generations"
    while time.monotonic() < deadline:
        try:
            numbers = sorted(int(n) for n in os.listdir(gens) if n.isdigit())
        except FileNotFoundError:
            numbers = []
        for g in numbers[-2:]:
            try:
                applying = g + 1 not in numbers or os.listdir(gens / str(g) / "sealed")
                wid = json.loads((gens / str(g) / "plan" / "plan.json").read_text())["planned_by"]
            except (OSError, ValueError, KeyError):
                continue
            if applying and wid in running:
                return wid
        time.sleep(0.002)
    return None


def _storm(tmp_path: Path, *, workers: int, target: int, kill_every: tuple[float, float], seed: int,
           timeout: float) -> dict:
    root = tmp_path / "pop"
    new_store(root).close()
    go = tmp_path / "GO"
    rng = random.Random(seed)
    procs: dict[str, subprocess.Popen] = {}
    outs: list[Path] = []
    n_started = 0

    def start() -> None:
        nonlocal n_started
        wid = f"w{n_started}"
        out = tmp_path / f"{wid}.json"
        outs.append(out)
        log = open(tmp_path / f"{wid}.log", "wb")
        procs[wid] = subprocess.Popen(
            [sys.executable, str(WORKER), str(root), wid, str(seed * 1000 + n_started), str(target), str(go), str(out)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        n_started += 1

    kills = aimed_kills = 0
    t0 = time.monotonic()
    try:
        for _ in range(workers):
            start()
        go.touch()
        while any(p.poll() is None for p in procs.values()):
            if time.monotonic() > t0 + timeout:  # a hang guard, not a timing: 12 s on a quiet machine
                pytest.fail(f"the storm did not reach generation {target} within {timeout:.0f} s: a hang")
            time.sleep(rng.uniform(*kill_every))
            running = [w for w, p in procs.items() if p.poll() is None]
            if not running:
                break
            victim = rng.choice(running)
            if rng.random() < 0.5:  # half the kills aim at a worker applying a plan right now
                aimed = _applier(root, set(running), deadline=time.monotonic() + 0.5)
                if aimed is not None:
                    victim = aimed
                    aimed_kills += 1
                    # found at the start of its plan: die somewhere inside it (~10 ms a rename)
                    time.sleep(rng.uniform(0.0, 0.12))
            try:
                os.killpg(procs[victim].pid, signal.SIGKILL)
                procs[victim].wait(timeout=30)
                kills += 1
            except ProcessLookupError:
                pass
            if procs[victim].returncode != 0:  # killed (not finished): a replacement starts
                start()
    finally:
        for p in procs.values():
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=30)
    elapsed = time.monotonic() - t0
    failed = [w for w, p in procs.items() if p.returncode not in (0, -signal.SIGKILL)]
    assert not failed, "\n".join((tmp_path / f"{w}.log").read_text(errors="replace")[-2000:] for w in failed)

    # Recovery reclaims the killed workers' folders (scratch, claims, half-collected individuals).
    # One killed before its first heartbeat is provably dead only after its folder stayed
    # unchanged for stale_after seconds of our clock: hence two passes.
    store = Store(root, stale_after=0.5)
    store.register_worker("checker", auto_heartbeat=False)
    store.recover()
    time.sleep(0.6)
    store.recover()
    store.gc()
    gens = Generations(store, slots=4)
    figures = check_barrier(store, gens, target)
    assert os.listdir(store.paths.quarantine) == []
    assert os.listdir(store.paths.gc) == []
    assert sorted(os.listdir(store.paths.workers)) == ["checker"]
    stats = [json.loads(o.read_text()) for o in outs if o.exists()]
    figures.update(seconds=round(elapsed, 1), sigkills=kills, aimed_at_appliers=aimed_kills, processes=n_started,
                   lost_races=sum(s["lost"] for s in stats), dead_children=sum(
                       1 for g in range(target) for c in gens.plan(g).children if ".dead." in c.name))
    store.close()
    print(f"\nGENERATION STORM: {figures}")
    return figures


def test_generation_kill_storm_short(tmp_path):
    f = _storm(tmp_path, workers=4, target=12, kill_every=(0.1, 0.3), seed=1, timeout=400)
    assert f["sigkills"] >= 3


@pytest.mark.slow
def test_generation_kill_storm_long(tmp_path):
    target = int(os.environ.get("LSE_GEN_STORM_GENERATIONS", "40"))
    f = _storm(tmp_path, workers=6, target=target, kill_every=(0.05, 0.3), seed=2, timeout=900)
    assert f["sigkills"] >= target
