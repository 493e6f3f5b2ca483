"""Issue 29: a generational worker among hostile generation files.

A steady-state worker never reads ``generations/``; a generational one reads the open
generation's ``generation.json`` (its slot count) and a planned generation's ``plan/plan.json``
(the replacement to apply).  An intruder who replaces either with a FIFO, a giant, deep JSON, a
folder, a link out of the population, out-of-range numbers or garbage must not end the worker
(it used to raise StoreError on every step until MAX_STEP_FAILURES ended it), must not hang it,
and must not be able to make two workers disagree.  Each case runs the real worker loop
(``run_worker``, the stand-in trainer of ``lse simulate``) under a hang guard.
"""

from __future__ import annotations

import json
import os

import pytest

from _store_helpers import plant_attack, run_within

from lse.algorithms import make_algorithm
from lse.config import ExperimentConfig, WorkerOptions
from lse.runners.simulate import StandInTrainer
from lse.runners.worker import run_worker
from lse.store import Store
from lse.store.generations import PLAN_FILE, Generations
from lse.store.plans import Planner

ATTACKS = ["fifo", "sparse", "deep", "dir", "symlink", "range", "garbage", "other-generation"]
FAST = {"fifo", "symlink", "other-generation"}  # the default suite; every attack under -m slow
HANG = 120.0


class Crash(BaseException):
    """A worker killed between writing a plan and applying it (no ``except Exception`` stops it)."""


def _run(pop, wid: str, max_individuals: int) -> None:
    store = Store(pop).open()
    store.replace_config(store.config.model_copy(update={"max_individuals": max_individuals}))
    out = run_within(lambda: run_worker(pop, WorkerOptions(threads=1, heartbeat_seconds=0.5),
                                        StandInTrainer(time_scale=0), worker_id=wid, handle_signals=False,
                                        log_to_file=False), HANG, f"worker {wid}")
    if "error" in out:
        raise out["error"]


def _births(pop) -> int:
    return len(Store(pop, read_only=True).open().records())


def _population(tmp_path):
    pop = tmp_path / "pop"
    Store(pop).create(ExperimentConfig(population_size=4, steps=10, max_individuals=4,
                                       algorithm={"name": "pareto-testbed"}))
    _run(pop, "g0", 4)  # generation 0 filled and closed; generation 1 open and empty
    return pop


def _plant(path, attack: str, tmp_path, good: dict) -> None:
    if path.is_dir() and not path.is_symlink():
        path.rmdir()
    elif path.exists() or path.is_symlink():
        path.unlink()
    if attack == "range":
        path.write_text(json.dumps({**good, "slots": 10**12, "generation": -1}))
    elif attack == "other-generation":
        path.write_text(json.dumps({**good, "generation": good["generation"] + 7}))
    else:
        secret = tmp_path / "secret.json"
        secret.write_text(json.dumps(good))  # valid content, but outside the population
        plant_attack(path, attack, link_to=secret)


def _attacks():
    return [a if a in FAST else pytest.param(a, marks=pytest.mark.slow) for a in ATTACKS]


@pytest.mark.parametrize("attack", _attacks())
def test_a_hostile_generation_json_does_not_end_a_generational_worker(tmp_path, attack):
    pop = _population(tmp_path)
    meta = Store(pop).paths.generation_meta(1)
    _plant(meta, attack, tmp_path, json.loads(meta.read_text()))
    _run(pop, "g1", 8)  # raised StoreError 20 steps in a row before
    assert _births(pop) == 8
    store = Store(pop, read_only=True).open()
    from lse.reports.status import snapshot

    assert run_within(lambda: snapshot(store), HANG, "lse status").get("value") is not None


@pytest.mark.parametrize("attack", _attacks())
def test_a_hostile_plan_is_replaced_by_a_plan_every_worker_agrees_on(tmp_path, attack, monkeypatch):
    pop = _population(tmp_path)

    def crash(self, g, plan):
        raise Crash(f"killed before applying the plan of generation {g}")

    monkeypatch.setattr(Planner, "apply", crash)
    with pytest.raises(Crash):
        _run(pop, "g1", 8)  # generation 1 is filled, sealed and planned, never applied
    monkeypatch.undo()
    paths = Store(pop).paths
    plan_file = paths.generation_plan(1) / PLAN_FILE
    good = json.loads(plan_file.read_text())
    _plant(plan_file, attack, tmp_path, good)

    _run(pop, "g2", 12)  # re-plans generation 1 from what is there, applies it, goes on
    assert _births(pop) == 12
    store = Store(pop).open()
    store.register_worker("checker", auto_heartbeat=False)
    algo = make_algorithm(store.config)
    gens = Generations(store, slots=algo.slots(1), initial_slots=algo.slots(0))
    in_force = gens.plan(1)
    assert in_force is not None and in_force.generation == 1
    assert gens.planner.in_force(1)[1] == 1, "the unusable plan/ was not superseded by plan.1/"
    assert gens.plan(1) == in_force, "two reads of the plan in force disagree"
    assert len(store.list_alive()) == 4  # the population keeps its size through the re-plan
    assert gens.current() >= 2
    assert os.path.lexists(plan_file)  # the hostile plan is never deleted (nor moved: see plan())
    store.close()
