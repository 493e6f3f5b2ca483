"""Full disk: a population on a real size-limited tmpfs that fills up while a real worker
trains.  The worker says so in one clear line, publishes nothing partial, keeps its trained
child, and births resume once space returns.  Needs root (mount); skipped, saying why, elsewhere."""

from __future__ import annotations

import errno
import os
import re

import pytest

from lse.store import Store

from _reliability_helpers import (
    births, check_alive_evaluate, check_history, check_individuals, logs_text, make_pop, output_of, reaped, start_worker,
    tmpfs, wait_for, write_data,
)
from _reliability_seed import digest


@pytest.fixture
def small_fs(tmp_path):
    with tmpfs(tmp_path / "small", "4m") as mnt:
        yield mnt


def _fill(path) -> int:
    """Write a ballast file until the filesystem is full; return its size."""
    size = 0
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                n = f.write(chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC
                break
            if not n:
                break
            size += n
    # the last pages: another worker write may have freed a few meanwhile
    return size


def test_full_disk_reported_nothing_partial_then_resumes(tmp_path, small_fs):
    data = write_data(tmp_path / "data")  # the data set lives elsewhere; only the population is small
    pop = small_fs / "pop"
    make_pop(pop, data)
    out = tmp_path / "worker.err"  # outside the full filesystem
    p = start_worker(pop, out)
    with reaped(p):
        wait_for(lambda: len(births(pop)) >= 3, 90, "first births", show=output_of(out, pop=pop))
        ballast = small_fs / "ballast"
        _fill(ballast)
        # The worker meets ENOSPC at its next birth and says so on stderr (its log file is on
        # the full disk).
        wait_for(lambda: "no space left" in out.read_text(errors="replace"), 60, "a DiskFull message", show=output_of(out, pop=pop))
        before = births(pop)
        committed = {e.id: digest(e.path) for e in Store(pop).entries()}
        _fill(small_fs / "ballast2")  # top up: pages freed meanwhile must not let births through
        # a retry of the publish: its own line ("keeping X in memory"), not another write that met
        # the full disk meanwhile (a kill's death record, a heartbeat)
        wait_for(lambda: out.read_text(errors="replace").count(" in memory, retrying") >= 2, 60, "a retry",
                 show=output_of(out, pop=pop))
        check_individuals(pop)  # nothing partial visible while full
        assert births(pop) == before  # nothing published while full
        assert p.poll() is None, "the worker died on a full disk:\n" + out.read_text(errors="replace")
        os.unlink(ballast)
        os.unlink(small_fs / "ballast2")
        wait_for(lambda: len(births(pop) - before) >= 3, 120, "births after space returned",
                 show=output_of(out, pop=pop))
        Store(pop).request_stop()
        rc = p.wait(timeout=60)
    err = out.read_text(errors="replace")
    assert rc == 0, err + logs_text(pop)
    full_lines = [ln for ln in err.splitlines() if "no space left" in ln]
    # one line per retry (backoff 1, 2, 4 ... s), no traceback, no per-log-line spam
    assert full_lines and all("DiskFull" not in ln and "Traceback" not in ln for ln in full_lines)
    assert "Traceback" not in err, err[-3000:]
    publish_lines = [ln for ln in full_lines if " in memory, retrying" in ln]
    assert publish_lines and "nothing was published" in publish_lines[0]
    kept = re.search(r"keeping (\S+) in memory", publish_lines[0])[1]
    assert kept in births(pop)  # the child trained before the disk filled was published, not lost
    check_individuals(pop)
    check_alive_evaluate(pop)
    recs = {r.id for r in check_history(pop)}
    assert set(committed) <= recs  # nothing committed lost
    store = Store(pop)
    for e in store.entries():
        if e.id in committed and e.state == "alive":
            assert digest(e.path) == committed[e.id]
    print(f"\nFULL DISK: {len(full_lines)} DiskFull retries logged, {len(before)} births before, "
          f"{len(births(pop) - before)} after space returned, 0 partial, 0 lost")
