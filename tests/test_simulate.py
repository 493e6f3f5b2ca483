"""`lse simulate`: a small simulation with the real store and worker loop (20 workers as threads
of 2 processes, population 40, 240 births) leaves a consistent population, and the figures it
prints are present, finite and in range.  No timing is asserted."""

from __future__ import annotations

import json
import math
import random

import pytest
from typer.testing import CliRunner

from lse.cli import app
from lse.core.dna import initial_dna
from lse.core.mutations import mutate
from lse.runners.simulate import OPS, standin_accuracy
from lse.store.durable import weights_from_bytes
from lse.store.population import Store

WORKERS, POPULATION, BIRTHS = 20, 40, 240


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sim")
    pop, out = tmp / "pop", tmp / "figures.json"
    result = CliRunner().invoke(app, [
        "simulate", "--pop", str(pop), "--workers", str(WORKERS), "--population-size", str(POPULATION),
        "--individuals", str(BIRTHS), "--processes", "2", "--time-scale", "1e-3", "--seed", "3",
        "--listing-sizes", "100,400", "--json", str(out),
    ])
    assert result.exit_code == 0, result.output
    return pop, json.loads(out.read_text()), result.output


def test_population_invariants(simulated):
    pop, fig, _ = simulated
    store = Store(pop).open()
    records = store.records()
    ids = [r.id for r in records]
    assert len(ids) == len(set(ids))
    # Every birth the workers reported is a record, and nothing else is.
    assert fig["births"] == len(records)
    # The birth-slot claims stop the run exactly at the limit.
    assert len(records) == BIRTHS
    # Never more initial individuals than the population; a few fewer where claims saw each
    # other within one timestamp tick (lse.runners.worker.initial_rank).
    assert sum(r.parent_id is None for r in records) == fig["initial"]
    assert POPULATION - WORKERS < fig["initial"] <= POPULATION
    # Kills only while the population is full, extra kills when it is over: it ends near its
    # size (listings a moment apart can disagree by a birth or two per worker), never drained
    # by failures nor grown by drift.
    alive = store.list_alive()
    assert abs(len(alive) - POPULATION) <= WORKERS // 2
    # Every kill is one record killed by a worker, with a death file; born-dead children have no
    # killer; alive = births - kills - born dead.
    killed = [r for r in records if r.killed_by is not None]
    assert len(killed) == fig["kills"]
    assert {p.name[: -len(".death.json")] for p in store.paths.history.glob("*.death.json")} == {r.id for r in killed}
    assert all(r.state == "dead" for r in killed)
    born_dead = [r for r in records if r.failed_reason is not None]
    assert all(r.killed_by is None and r.state == "dead" for r in born_dead)
    assert len(alive) == len(records) - len(killed) - len(born_dead)
    # Parents are individuals of this population born before their children.  (Not by id: a
    # child's id is drawn when its slot is claimed, before its parent is chosen.)
    by_id = {r.id: r for r in records}
    for r in records:
        if r.parent_id is not None:
            parent = by_id[r.parent_id]
            assert parent.born_at <= r.born_at and r.generation == parent.generation + 1
    # Nothing left behind: no worker folders (scratch, claims), nothing half-collected or quarantined.
    assert list(store.paths.workers.iterdir()) == []
    assert list(store.paths.gc.iterdir()) == []
    assert list(store.paths.quarantine.iterdir()) == []
    assert not store.paths.stop.exists()
    # Every alive individual is complete: a full record and weights that load.
    for e in alive:
        rec = by_id[e.id]
        assert rec.state == "alive" and rec.val_accuracy == pytest.approx(e.fitness, abs=1e-6)
        assert rec.flops and rec.flops.total > 0 and rec.params and rec.steps > 0
        assert rec.extra["simulated"] is True and rec.born_at and rec.worker and rec.host
        assert rec.parent_id is None or rec.inheritance is not None
        weights = weights_from_bytes(store.paths.weights_file(e.path).read_bytes())
        assert weights and sum(int(t.numel()) for t in weights.values()) >= rec.params


def test_figures_present_finite_in_range(simulated):
    _, fig, output = simulated
    for line in ("births per second", "rounds lost to races", "store operations", "directory at the end",
                 "listing cost"):
        assert line in output
    assert fig["workers"] == WORKERS and fig["processes"] == 2 and fig["errors"] == []
    assert math.isfinite(fig["births_per_second"]) and fig["births_per_second"] > 0
    assert fig["wall_seconds"] > 0 and fig["worker_seconds"] > 0
    shares = [fig["lost_share"], fig["store_share"], fig["standin_sleep_share"], fig["standin_compute_share"],
              *fig["op_share"].values()]
    assert all(math.isfinite(s) and 0.0 <= s <= 1.0 for s in shares)
    assert set(fig["op_share"]) == set(OPS) == set(fig["op_ms_per_birth"])
    assert all(math.isfinite(v) and v >= 0 for v in fig["op_ms_per_birth"].values())
    # what the loop calls is measured through run_worker's timed/store_class (no name rebinding)
    for op in ("list_alive", "count_births", "list_claims", "read_config", "kill", "read_parent", "publish",
               "view", "select"):
        assert fig["op_calls"][op] > 0, op
    # Every birth published once, every kill attempted once.
    assert fig["op_calls"]["publish"] >= fig["births"]
    assert fig["kill_attempts"] == fig["kills"] + fig["lost_kills"]
    assert fig["lost_rounds"] == fig["lost_kills"] + fig["lost_reads"] <= fig["kill_attempts"]
    d = fig["directory"]
    assert d["alive"] + d["dead"] + d["history_records"] == fig["births"]
    assert d["workers"] == d["gc"] == d["quarantine"] == d["foreign"] == 0 and d["bytes"] > 0
    assert [row["entries"] for row in fig["listing"]] == [100, 400]
    assert all(math.isfinite(row[k]) and row[k] > 0 for row in fig["listing"] for k in ("list_alive_ms", "count_births_ms"))


def test_status_reads_the_simulated_population(simulated):
    pop, fig, _ = simulated
    result = CliRunner().invoke(app, ["status", "--pop", str(pop)])
    assert result.exit_code == 0, result.output
    assert str(fig["births"]) in result.output


def test_standin_accuracy_is_deterministic_and_rewards_depth():
    base = initial_dna(0.05, input_channels=1)
    assert standin_accuracy(base, 1) == standin_accuracy(base, 1)
    assert 0.8 < standin_accuracy(base, 1) < 0.86  # a linear model on Fashion-MNIST
    rng = random.Random(0)
    deeper = base
    while deeper.depth() < 4:
        cand, rec = mutate(deeper, rng, {"insert_convolution": 1.0})
        deeper = cand
    assert standin_accuracy(deeper, 1) > standin_accuracy(base, 1) + 0.02
    hot = base.model_copy(update={"learning_rate": 1.6})  # diverges for every seed
    assert all(standin_accuracy(hot, s) is None for s in range(20))
