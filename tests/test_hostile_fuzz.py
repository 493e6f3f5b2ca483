"""A hostile population (issue 29): for each kind of file lse reads from a population, each way an
attacker with write access to the folder can plant it, a real worker loop keeps giving birth,
and `lse status`, `lse pop ls` and the dashboard's reader still answer.  Nothing outside the
population is opened: every symlink points at a FIFO outside it, which a followed open would
block on (the worker runs under a deadline).

The default suite runs the whole matrix (a fraction of a second a case); `-m slow` adds a full
`lse report` on one attack of each kind."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from lse.config import ExperimentConfig, WorkerOptions
from lse.core.records import new_id
from lse.runners.simulate import StandInTrainer
from lse.runners.worker import run_worker
from lse.store import Store

ATTACKS = ["fifo", "huge", "deep", "directory", "symlink", "range", "nondate", "garbage"]
KINDS = ["record", "weights", "heartbeat", "history", "death", "gc", "event", "eval", "curve"]
BAD_ID = "20241301T000000000000Z-0badbad0"  # the pattern of an id, but month 13


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A population with a few births (stand-in trainer: real weights, no training)."""
    pop = tmp_path_factory.mktemp("hostile") / "pop"
    Store(pop).create(ExperimentConfig(population_size=4, max_individuals=6, validation_size=100))
    run_worker(pop, WorkerOptions(threads=1), StandInTrainer(time_scale=0), worker_id="w0",
               handle_signals=False, log_to_file=False)
    return pop


def _payload(attack: str, kind: str, path: Path, outside: Path) -> None:
    """Put ``attack`` at ``path`` (whose parent exists)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    if attack == "fifo":
        os.mkfifo(path)
    elif attack == "huge":
        with open(path, "wb") as f:
            f.truncate(3 * 1024**3)  # sparse: 3 GiB of holes
    elif attack == "deep":
        path.write_text("[" * 100_000 + "]" * 100_000)
    elif attack == "directory":
        path.mkdir()
        fd = os.open(path, os.O_RDONLY)
        for _ in range(1200):  # deeper than the recursion limit (and than PATH_MAX allows to name)
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        os.close(fd)
    elif attack == "symlink":
        path.symlink_to(outside)
    elif attack == "garbage":
        path.write_bytes(os.urandom(512))
    elif attack in ("range", "nondate"):
        path.write_text(json.dumps(_bad_numbers(kind) if attack == "range" else _bad_id(kind)))


def _bad_numbers(kind: str) -> object:
    return {
        "heartbeat": {"host": "x", "pid": -1, "create_time": "soon", "counter": 10**400},
        "event": {"id": new_id(), "kind": "mutations", "at": -1e308, "mutations_per_child": 100},
        "death": {"killed_at": 1e308, "killed_by": "../../etc"},
        "eval": {"test_accuracy": 1e400, "test_fingerprint": None},
        "curve": {"minutes": [-1e308], "test_accuracy": [10**400]},
    }.get(kind, {"schema_version": 2, "id": new_id(), "age": 10**400, "val_accuracy": 7, "dna": {}})


def _bad_id(kind: str) -> object:
    return {"schema_version": 2, "id": BAD_ID, "parent_id": BAD_ID, "kind": "reset", "at": 1e9,
            "killed_at": 1.0, "killed_by": "w0", "host": "x", "pid": 1}


def _target(pop: Path, kind: str) -> Path:
    """Where a file of ``kind`` lives; an individual of the population is reused or a new
    well-named entry made."""
    store = Store(pop).open()
    alive = store.list_alive()
    p = store.paths
    iid = new_id()
    if kind == "record":
        return alive[0].path / "record.json"
    if kind == "weights":
        return alive[0].path / "weights.safetensors"
    if kind == "heartbeat":
        (p.workers / "intruder").mkdir(parents=True, exist_ok=True)
        return p.workers / "intruder" / "heartbeat.json"
    if kind == "history":
        return p.history / f"{iid}.json"
    if kind == "death":
        return p.history / f"{alive[0].id}.death.json"
    if kind == "gc":
        d = p.gc / f"{iid}.intruder"
        d.mkdir(parents=True, exist_ok=True)
        return d / "record.json"
    if kind == "event":
        p.events.mkdir(exist_ok=True)
        return p.events / f"{iid}.reset.json"
    if kind == "eval":
        p.root.joinpath("eval").mkdir(exist_ok=True)
        return p.root / "eval" / f"{alive[0].id}.json"
    if kind == "curve":
        p.root.joinpath("reference").mkdir(exist_ok=True)
        return p.root / "reference" / "textbook-cnn.json"
    raise AssertionError(kind)


def _with_deadline(fn, seconds: float = 90.0):
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{getattr(fn, '__name__', fn)} hung (a blocking read?)"
    if "error" in out:
        raise out["error"]
    return out.get("value")


def _attack_and_check(base: Path, tmp_path: Path, kind: str, attack: str, full_report: bool = False) -> None:
    pop = tmp_path / "pop"
    shutil.copytree(base, pop, symlinks=True)
    outside = tmp_path / "outside-fifo"
    os.mkfifo(outside)
    _payload(attack, kind, _target(pop, kind), outside)
    store = Store(pop).open()
    born = len(store.records())
    cfg = store.config.model_copy(update={"max_individuals": born + 2})
    store.paths.experiment.write_text(cfg.to_json())

    summary = _with_deadline(lambda: run_worker(pop, WorkerOptions(threads=1), StandInTrainer(time_scale=0),
                                                worker_id="w1", handle_signals=False, log_to_file=False))
    assert summary.births >= 1 and summary.stop_reason.startswith("max_individuals"), summary

    from lse.dashboard.reader import PopulationReader
    from lse.reports import pop as pop_cli
    from lse.reports import status

    st = _with_deadline(lambda: status.snapshot(Store(pop).open()))
    assert st is not None
    assert json.loads(_with_deadline(lambda: pop_cli.ls(pop, as_json=True)))
    reader = PopulationReader(pop, "p")
    _with_deadline(reader.refresh)
    assert _with_deadline(lambda: reader.changes(0)) is not None
    if full_report:
        from lse.reports.report import make_report

        _with_deadline(lambda: make_report([pop], tmp_path / "report", device="cpu"), 240)


# every attack once, every kind once: a diagonal through the matrix (the full report is slow)
DIAGONAL = [(KINDS[i % len(KINDS)], ATTACKS[i % len(ATTACKS)]) for i in range(max(len(KINDS), len(ATTACKS)))]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("attack", ATTACKS)
def test_a_worker_and_the_readers_survive_a_hostile_file(base, tmp_path, kind, attack):
    _attack_and_check(base, tmp_path, kind, attack)


@pytest.mark.slow
@pytest.mark.parametrize("kind,attack", DIAGONAL, ids=[f"{k}-{a}" for k, a in DIAGONAL])
def test_lse_report_on_a_hostile_population(base, tmp_path, kind, attack):
    _attack_and_check(base, tmp_path, kind, attack, full_report=True)
