"""Shared fixtures.  Tests run with one torch thread: this machine has 2 cores and the suite
runs beside other processes, where oversubscription made training 6x slower (NOTES.md)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # the pure-core tests do not need torch
    pass


@pytest.fixture
def weird_tmp_path(tmp_path):
    """A temporary folder whose path has spaces and quotes (submitit's habit): code that
    builds shell lines or parses paths by hand breaks here first."""
    p = tmp_path / "we ird 'dir' \"x\""
    p.mkdir()
    return p


@pytest.fixture
def store(weird_tmp_path):
    """A fresh population (tests/_store_helpers.new_store) with worker "w0" registered, no
    heartbeat thread; closed after the test.  A module may define its own ``store``."""
    from _store_helpers import new_store

    s = new_store(weird_tmp_path / "pop")
    s.register_worker("w0", auto_heartbeat=False)
    yield s
    s.close()
