"""Random I/O faults in live workers (libfiu): three real workers run under ``fiu-run -x``;
once each is past start-up (Python's own imports read files), ``fiu-ctrl`` makes 2% of its
reads, writes, fsyncs, renames, unlinks and opens fail for a minute of real evolution, while
this test restarts crashed workers (as the launcher does).  Then faults go off.  Afterwards the
store's invariants hold, nothing partial is visible, nothing committed before the fault window
is lost, and births resume."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from lse.core.records import id_time
from lse.store import Store
from lse.runners.worker import list_claims

from _reliability_helpers import (
    births, check_alive_evaluate, check_history, check_individuals, kill_group, make_pop, output_of,
    start_worker, wait_for, write_data,
)

FAULT_SECONDS = float(os.environ.get("LSE_FIU_SECONDS", "60"))
WORKERS = 3
POINTS = ("posix/io/rw/*", "posix/io/sync/*", "posix/io/dir/rename", "posix/io/dir/unlink", "posix/io/oc/open")
PROBABILITY = 0.02


def _ctrl(pid: int, verb: str) -> bool:
    cmds = []
    for name in POINTS:
        cmds += ["-c", f"enable_random name={name},probability={PROBABILITY}" if verb == "on" else f"disable name={name}"]
    try:
        r = subprocess.run(["fiu-ctrl", *cmds, str(pid)], capture_output=True, timeout=10)
    except subprocess.TimeoutExpired:  # the process died while we talked to it
        return False
    return r.returncode == 0


def _started(pop, pid: int) -> bool:
    """Past start-up: its log shows it training (imports and data loading done)."""
    for f in pop.glob("logs/*.log"):
        head = f.read_text(errors="replace")
        if f"pid {pid}," in head and "training " in head:
            return True
    return False


@pytest.mark.slow
def test_random_io_faults_in_live_workers(tmp_path):
    if shutil.which("fiu-run") is None or shutil.which("fiu-ctrl") is None:
        pytest.skip("libfiu's fiu-run/fiu-ctrl are not installed (Debian package fiu-utils)")
    data = write_data(tmp_path / "data")
    pop = tmp_path / "pop"
    make_pop(pop, data, population_size=6)
    outs = [tmp_path / f"worker{i}.out" for i in range(WORKERS)]
    procs: list[subprocess.Popen | None] = [None] * WORKERS
    faulty: set[int] = set()
    all_procs: list[subprocess.Popen] = []
    crashes = 0
    enabled = 0

    def start(i: int) -> None:
        procs[i] = start_worker(pop, outs[i], prefix=("fiu-run", "-x"))
        all_procs.append(procs[i])

    try:
        for i in range(WORKERS):
            start(i)
        wait_for(lambda: len(births(pop)) >= 8, 180, "births before the fault window", show=output_of(pop=pop))
        committed = births(pop)

        t0 = time.time()
        while time.time() - t0 < FAULT_SECONDS:
            for i, p in enumerate(procs):
                if p.poll() is not None:  # crashed under faults (or exited): restart, like the launcher
                    crashes += p.returncode != 0
                    start(i)
                elif p.pid not in faulty and _started(pop, p.pid) and _ctrl(p.pid, "on"):
                    faulty.add(p.pid)
                    enabled += 1
            time.sleep(0.5)
        for p in procs:
            if p.poll() is None and p.pid in faulty:
                _ctrl(p.pid, "off")
        t1 = time.time()
        # Faults off.  Workers that crashed meanwhile restart without faults.
        for i, p in enumerate(procs):
            if p.poll() is not None:
                crashes += p.returncode != 0
                start(i)
        wait_for(lambda: sum(id_time(b) > t1 for b in births(pop)) >= 3, 180,
                 "births after the faults were turned off", show=output_of(pop=pop))
        after = sum(id_time(b) > t1 for b in births(pop))
        Store(pop).request_stop()
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
    finally:
        for p in all_procs:
            kill_group(p)

    during = sum(t0 <= id_time(b) <= t1 for b in births(pop))
    errors = sum(o.read_text(errors="replace").count("Error") for o in outs)
    io_lines = sum(f.read_text(errors="replace").count("rrno") for f in [*outs, *pop.glob("logs/*.log")])

    check_individuals(pop)
    alive = check_alive_evaluate(pop)
    recs = {r.id for r in check_history(pop)}
    assert committed <= recs, f"lost: {sorted(committed - recs)}"
    # A worker that died mid-write left private scratch; recovery (two passes: a folder without
    # a heartbeat is judged on the recoverer's clock) reclaims all of it.
    store = Store(pop, stale_after=1.0).open()
    store.register_worker("recoverer", auto_heartbeat=False)
    store.recover()
    time.sleep(1.2)
    store.recover()
    assert [n for n in os.listdir(store.paths.workers) if n != "recoverer"] == []
    assert list_claims(store) == [] and os.listdir(store.paths.gc) == []
    store.close()
    quarantined = len([n for n in os.listdir(store.paths.quarantine) if not n.endswith(".reason.txt")])
    print(f"\nI/O FAULTS: {FAULT_SECONDS:.0f} s at p={PROBABILITY} on {', '.join(POINTS)}; faults enabled in "
          f"{enabled} worker processes, {crashes} crashed and were restarted, {io_lines} errno lines and "
          f"{errors} 'Error' lines logged; {len(committed)} committed before, {during} births during the "
          f"window, {after} after; {alive} alive all evaluated; {quarantined} quarantined; 0 lost")
    assert enabled >= WORKERS
