"""Helpers shared by the store tests (importable from subprocesses started by the tests)."""

from __future__ import annotations

import threading

import torch

from lse.config import ExperimentConfig
from lse.core.records import IndividualRecord, new_id
from lse.store import Store


def make_dna() -> dict:
    from lse.core.dna import initial_dna

    return initial_dna().model_dump(mode="json")


def make_record(acc: float | None = 0.5, parent: IndividualRecord | None = None, **kw) -> IndividualRecord:
    return IndividualRecord(
        id=kw.pop("id", None) or new_id(),
        parent_id=None if parent is None else parent.id,
        generation=0 if parent is None else parent.generation + 1,
        dna=make_dna(),
        mutation=None if parent is None else {"name": "identity", "details": {}},
        val_accuracy=acc,
        steps=10,
        examples=500,
        flops={"train_per_batch": 1e6, "eval_per_batch": 3e5, "total": 1.3e7},
        params=1234,
        **kw,
    )


def make_weights(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"fc.weight": torch.randn(4, 3, generator=g), "fc.bias": torch.zeros(4)}


def new_store(root, **kw) -> Store:
    s = Store(root, **kw)
    s.create(ExperimentConfig(population_size=4, steps=10))
    return s


def run_within(fn, timeout: float, what: str = "the call") -> dict:
    """``fn()`` in a daemon thread: ``{"value": ...}`` or ``{"error": exception}``.  Fails the
    test, never hangs it, when ``fn`` has not returned within ``timeout`` seconds (a blocked read
    never returns at all)."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{what} hung"
    return out


def run_workers_in_threads(pop, n: int, *, prefix: str = "w", trainer_factory=None, timeout: float = 300.0,
                           **options) -> None:
    """``n`` workers (``run_worker``, the real loop) as threads of this process on ``pop``, until
    their stop condition; re-raises the first exception any of them raised (a hang fails the
    join timeout).  ``trainer_factory()``: a trainer per worker (default: the algorithm's)."""
    from lse.config import WorkerOptions
    from lse.runners.worker import run_worker

    opts = WorkerOptions(**{"threads": 1, "heartbeat_seconds": 0.5, **options})
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            run_worker(pop, opts, trainer_factory() if trainer_factory else None, worker_id=f"{prefix}{i}",
                       handle_signals=False, log_to_file=False)
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), f"a worker thread still runs after {timeout:.0f} s"
    if errors:
        raise errors[0]


def plant_attack(path, attack: str, *, link_to=None) -> None:
    """Put at ``path`` (which must not exist) what an intruder with write access could: a FIFO
    with no writer, a sparse 3 GiB file, JSON nested 200,000 deep, a folder, a symlink to
    ``link_to``, or garbage bytes (with a terminal escape)."""
    import os

    if attack == "fifo":
        os.mkfifo(path)
    elif attack == "sparse":
        with open(path, "wb") as f:
            f.truncate(3 << 30)  # costs no disk
    elif attack == "deep":
        path.write_bytes(b"[" * 200_000 + b"]" * 200_000)
    elif attack == "dir":
        path.mkdir()
    elif attack == "symlink":
        os.symlink(link_to, path)
    elif attack == "garbage":
        path.write_bytes(bytes(range(256)) * 64 + b"\x1b]0;pwned\x07")
    else:
        raise ValueError(f"unknown attack {attack!r}")
