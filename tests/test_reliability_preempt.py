"""Graceful preemption: SIGTERM (what Slurm sends on time-out and preemption) to a real
worker.py process in the middle of training stops it promptly, publishes nothing half-done,
removes its private folder and claim, and leaves every committed individual untouched."""

from __future__ import annotations

import os
import signal

from lse.store import Store
from lse.runners.worker import list_claims

from _reliability_helpers import (births, check_individuals, logs_text, make_pop, output_of, reaped, start_worker, wait_for,
                                  write_data)
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
        log = wait_for(lambda: next(pop.glob(f"logs/*-{p.pid}-*.log"), None), 60, "the worker's log", show=output_of(out))
        wait_for(lambda: "training " in log.read_text(), 60, "training to start", show=output_of(out, pop=pop))
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


def test_killed_launcher_stops_its_workers_cleanly(tmp_path):
    """SIGKILL to the launcher (lost terminal, OOM): its workers notice their parent is gone,
    stop at the next training step, publish nothing half-done and clean up after themselves."""
    import subprocess

    import psutil

    from _reliability_helpers import PYTHON, REPO, kill_group, worker_env

    data = write_data(tmp_path / "data")
    pop = tmp_path / "pop"
    make_pop(pop, data, steps=1_000_000)
    committed = seed_individuals(pop, 2)
    out = tmp_path / "launcher.out"
    with open(out, "ab") as out_f:  # the launcher's and its workers' stderr, for failure messages
        launcher = subprocess.Popen([PYTHON, "-m", "lse.launch", "--pop", str(pop), "--workers", "2", "--threads", "1",
                                     "--no-progress"], stdout=out_f, stderr=out_f,
                                    env=worker_env(), cwd=REPO, start_new_session=True)
    workers: list[psutil.Process] = []
    try:
        wait_for(lambda: sum("training " in f.read_text() for f in pop.glob("logs/*.log")) >= 2, 90,
                 "both workers training", show=output_of(out, pop=pop))
        workers = [k for k in psutil.Process(launcher.pid).children() if "worker.py" in " ".join(k.cmdline())]
        assert len(workers) == 2
        launcher.kill()
        launcher.wait(timeout=10)
        gone, alive = psutil.wait_procs(workers, timeout=60)  # a bound against a hang
        assert not alive, "workers kept running without their launcher"
    finally:
        kill_group(launcher)
        for w in workers:
            try:
                w.kill()
            except psutil.Error:
                pass
    text = logs_text(pop)
    assert text.count("stops: the launcher is gone") == 2 and text.count("discarded, nothing published") == 2, text
    assert births(pop) == set(committed)
    check_individuals(pop)
    assert os.listdir(Store(pop).paths.workers) == []
