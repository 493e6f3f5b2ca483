"""The population view: records parsed once per folder name; a version-1 population (written
by lse before the algorithm seam, tests/data/population-v1.tar.gz) still opens, lists, reports."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import torch
from typer.testing import CliRunner

from lse.cli import app
from lse.core.records import IndividualRecord, new_id
from lse.reports import curves
from lse.store import Store
from lse.store.view import ViewCache

DATA = Path(__file__).parent / "data"


def _publish(store: Store, fitness: float) -> None:
    from lse.core.dna import initial_dna

    rec = IndividualRecord(id=new_id(), dna=initial_dna().model_dump(mode="json"), val_accuracy=fitness)
    store.publish(rec, {"w": torch.zeros(1)})


def test_view_reads_each_record_once(tmp_path):
    from lse.config import ExperimentConfig

    store = Store(tmp_path / "pop")
    store.create(ExperimentConfig(population_size=4))
    store.open().register_worker("w", auto_heartbeat=False)
    for f in (0.1, 0.2, 0.3):
        _publish(store, f)
    cache = ViewCache(store)
    v = cache.view(store.list_alive(), with_records=True)
    assert cache.reads == 3 and all(v.record(m.id).fitness == m.fitness for m in v.members)
    cache.view(store.list_alive(), with_records=True)
    assert cache.reads == 3  # nothing new: nothing read
    victim = store.list_alive()[0]
    assert store.kill(victim)
    _publish(store, 0.4)
    v = cache.view(store.list_alive(), with_records=True)
    assert cache.reads == 4  # only the newborn
    assert victim.id not in {m.id for m in v.members} and len(cache._by_name) == 3
    assert cache.view(store.list_alive(), with_records=False).record(v.members[0].id) is None  # names only
    store.close()


def _v1(tmp_path) -> Path:
    with tarfile.open(DATA / "population-v1.tar.gz") as t:
        t.extractall(tmp_path)
    return tmp_path / "pop"


def test_version_1_population_opens_lists_and_reports(tmp_path):
    pop = _v1(tmp_path)
    assert json.loads((pop / "experiment.json").read_text())["schema_version"] == 1
    store = Store(pop).open()
    assert store.config.algorithm.name == "real2017"
    recs = store.records()
    assert len(recs) == 14 and all(json.loads(p.read_text())["schema_version"] == 1 for p in pop.glob("history/*Z-*[0-9a-f].json"))
    for r in recs:  # version-2 fields, derived from version 1
        assert r.fitness == r.val_accuracy
        assert r.parents == ([r.parent_id] if r.parent_id else [])
        assert r.objectives == ({"val_accuracy": r.val_accuracy} if r.val_accuracy is not None else {})
    assert len(store.list_alive()) == 4
    out = CliRunner().invoke(app, ["pop", "ls", "--pop", str(pop), "--json"])
    assert out.exit_code == 0, out.output
    assert len(json.loads(out.output)) == 14
    inds = [curves.from_record(r) for r in recs]
    best = curves.best_so_far(inds)
    assert len(best) == 14 and best[-1] == max(recs, key=lambda r: r.val_accuracy or 0).id
    out = CliRunner().invoke(app, ["status", "--pop", str(pop)])
    assert out.exit_code == 0, out.output


def test_version_1_population_reports(tmp_path):
    """The full report (test accuracies on real Fashion-MNIST) of the version-1 population."""
    import pytest

    from lse.errors import DataError
    from lse.nn.data import load_dataset

    try:
        load_dataset("fashion-mnist", validation_size=5000, seed=3, cache=False)
    except DataError as e:
        pytest.skip(f"Fashion-MNIST is not installed here ({e}); .ci/run installs it")
    pop = _v1(tmp_path)
    out = CliRunner().invoke(app, ["report", "--pop", str(pop), "--out", str(tmp_path / "rep")])
    assert out.exit_code == 0, out.output
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert (tmp_path / "rep" / "progress.png").stat().st_size > 0
    assert summary["experiments"][0]["individuals"] == 14 and summary["experiments"][0]["best"]["test_accuracy"] is not None
