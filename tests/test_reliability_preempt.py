"""Graceful preemption: SIGTERM (what Slurm sends on time-out and preemption) to a real
worker.py process in the middle of training stops it promptly, publishes nothing half-done,
removes its private folder and claim, and leaves every committed individual untouched."""

from __future__ import annotations

import os
import signal

from lse.store import Store
from lse.worker import list_claims

from _reliability_helpers import births, check_individuals, logs_text, make_pop, reaped, start_worker, wait_for, write_data
from _reliability_seed import digest, seed_individuals


def test_sigterm_mid_training_stops_cleanly(tmp_path):
    data = write_data(tmp_path / "data")
    pop = tmp_path / "pop"
    # Very long trainings: the SIGTERM is sure to arrive inside train().
    make_pop(pop, data, steps=1_000_000)
    committed = seed_individuals(pop, 2)
    out = tmp_path / "worker.out"
    p = start_worker(pop, out)
    with reaped(p):
        log = wait_for(lambda: next(pop.glob(f"logs/*-{p.pid}-*.log"), None), 60, "the worker's log")
        wait_for(lambda: "training " in log.read_text(), 60, "training to start")
        # Mid-training: the child holds a birth slot (claim) and the worker its private folder.
        assert len(list_claims(Store(pop))) == 1
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=30)  # a bound against a hang, not a timing assertion
    text = out.read_text()
    assert rc == 0, text + logs_text(pop)
    assert "signal SIGTERM" in text and "Traceback" not in text
    assert "discarded, nothing published" in log.read_text()
    assert births(pop) == set(committed)  # nothing new published, nothing lost
    check_individuals(pop)
    store = Store(pop)
    assert os.listdir(store.paths.workers) == [] and list_claims(store) == []  # no scratch, no claim
    for e in store.list_alive():
        assert digest(e.path) == committed[e.id]
    print(f"\nPREEMPT: SIGTERM mid-training -> exit {rc}; committed {len(committed)} kept, 0 published")
