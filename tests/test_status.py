"""`lse status` on a small real experiment (worker loop on generated data), with one live
worker (this process) and one whose process is gone."""

from __future__ import annotations

import io
import json
import os
import time

import pytest
from rich.console import Console

from lse.reports import status as status_mod
from lse.config import ExperimentConfig, WorkerOptions
from lse.core.records import is_worker_id
from lse.reports.status import render, show, snapshot
from lse.store import Store
from lse.nn.synthetic import write_synthetic
from lse.runners.worker import run_worker

BIRTHS = 6


@pytest.fixture(scope="module")
def pop(tmp_path_factory):
    root = tmp_path_factory.mktemp("status")
    data = write_synthetic(root / "data", "cifar10", n_train=300, n_test=100, seed=1)
    pop = root / "pop"
    cfg = ExperimentConfig(dataset="cifar10", data_dir=str(data), validation_size=100, population_size=3, steps=10,
                           eval_batch_size=500, seed=0, max_individuals=BIRTHS, max_hours=100.0)
    Store(pop).create(cfg)
    run_worker(pop, WorkerOptions(threads=1), worker_id="w0", handle_signals=False, log_to_file=False)
    return pop


def _text(renderable) -> str:
    c = Console(file=io.StringIO(), width=140, record=True)
    c.print(renderable)
    return c.export_text()


def test_snapshot_counts_match_the_records(pop):
    store = Store(pop).open()
    recs = store.records()
    st = snapshot(store)
    assert st.individuals == len(recs) == BIRTHS
    assert st.alive + st.dead + st.collected == BIRTHS
    assert st.alive == sum(r.state == "alive" for r in recs)
    assert st.failed == sum(r.val_accuracy is None for r in recs)
    assert st.flops == pytest.approx(sum(r.flops.total for r in recs))
    ok = [r for r in recs if r.val_accuracy is not None]
    assert st.best_val == max(r.val_accuracy for r in ok)
    stops = {c.name: c for c in st.stops}
    assert stops["individuals"].reached and stops["individuals"].limit == BIRTHS
    assert not stops["hours"].reached and stops["FLOPs"].limit is None
    assert not st.stop_file
    assert st.last_hour_births == BIRTHS and st.per_hour > 0


def test_workers_alive_and_dead_by_the_store_rules(pop):
    store = Store(pop).open()
    handle = Store(pop).register_worker("live-one", auto_heartbeat=False)
    # a worker of this host whose process is gone: its pid is free (the store checks pid and
    # process start time, so even a reused pid would not pass as the same process)
    dead = store.paths.worker("gone-one")
    dead.mkdir()
    store.paths.heartbeat("gone-one").write_text(json.dumps(
        {"host": store.host, "pid": 2**22 + 7, "create_time": 1.0, "counter": 3, "wall_time": time.time() - 600}))
    os.utime(store.paths.heartbeat("gone-one"), (time.time() - 600, time.time() - 600))
    try:
        st = snapshot(store)
        by = {w.id: w for w in st.workers}
        assert by["live-one"].alive == "alive" and by["live-one"].pid == os.getpid()
        assert by["gone-one"].alive == "dead" and by["gone-one"].heartbeat_age >= 590
        assert all(is_worker_id(w) for w in by)
        text = _text(render(st))
        for word in ("workers", "live-one", "gone-one", "heartbeat age", "best validation", "FLOPs spent",
                     "individuals / hour", "stop conditions", "reached", "STOP file"):
            assert word in text, word
    finally:
        handle.close()
        import shutil

        shutil.rmtree(dead, ignore_errors=True)


def test_stop_file_is_shown(pop):
    store = Store(pop).open()
    store.request_stop("test")
    try:
        st = snapshot(store)
        assert st.stop_file and "present" in _text(render(st))
    finally:
        store.clear_stop()


def test_watch_refreshes_until_ctrl_c(pop, monkeypatch):
    calls = []

    def fake_sleep(s):
        calls.append(s)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(status_mod.time, "sleep", fake_sleep)
    out = io.StringIO()
    st = show(pop, watch=True, every=0.01, console=Console(file=out, width=120))
    assert len(calls) == 3 and st.individuals == BIRTHS
    assert "lse status" in out.getvalue()


def test_cli(pop, tmp_path):
    from typer.testing import CliRunner

    from lse.cli import app

    res = CliRunner().invoke(app, ["status", "--pop", str(pop)])
    assert res.exit_code == 0, res.output
    assert "best validation" in res.output
    res = CliRunner().invoke(app, ["status", "--pop", str(tmp_path / "nothing")])
    assert res.exit_code == 1 and "error" in res.output
