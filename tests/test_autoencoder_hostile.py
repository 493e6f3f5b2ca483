"""Hostile autoencoder records in a shared population (seed 000): a genome that breaks the
validity rule, or a DNA graph posing as an autoencoder, is quarantined with one line, and the
Pareto tournament goes on over the others."""

from __future__ import annotations

import json
import logging
import os
import random

import pytest

from lse.core.autoencoder import initial_autoencoder
from lse.errors import LostRace
from lse.store import Store

from _store_helpers import make_record, make_weights


def _ae(store: Store, fitness: float, genome: dict | None = None):
    rec = make_record(fitness).model_copy(update={
        "genome": "autoencoder", "dna": genome or initial_autoencoder((1, 28, 28)).model_dump(mode="json"),
        "objectives": {"compression": 0.5, "reconstruction": fitness}, "val_accuracy": None})
    return store.publish(rec, make_weights())


@pytest.mark.parametrize("damage, words", [
    ("no-compression", "not smaller than the input"),
    ("dna-graph", "autoencoder"),
    ("layer-too-big", "does not fit"),
])
def test_malformed_autoencoder_genomes_are_quarantined(store, caplog, damage, words):
    caplog.set_level(logging.WARNING, logger="lse.store.population")
    good = _ae(store, 0.4)
    e = _ae(store, 0.6)
    rec = json.loads((e.path / "record.json").read_text())
    if damage == "no-compression":
        rec["dna"]["layers"][0]["stride"] = 1  # 2x28x28 codes of a 1x28x28 input
    elif damage == "dna-graph":
        rec["dna"] = json.loads((good.path / "record.json").read_text())["dna"] | {"vertices": [], "edges": []}
    else:
        pool = {"id": "L1", "kind": "pool", "size": 4}
        rec["dna"]["layers"] += [pool, pool | {"id": "L2"}]  # 14 -> 3 -> a 4x4 pool on 3x3
        rec["dna"]["next_id"] = 3
    (e.path / "record.json").write_text(json.dumps(rec))
    with pytest.raises(LostRace, match="quarantined"):
        store.read_parent(e)
    reasons = [n for n in os.listdir(store.paths.quarantine) if n.endswith(".reason.txt")]
    assert len(reasons) == 1
    msgs = [r.getMessage() for r in caplog.records if "quarantined" in r.getMessage()]
    assert len(msgs) == 1 and "\n" not in msgs[0]
    assert [x.id for x in store.list_alive()] == [good.id]


def test_tournament_skips_an_unreadable_member(store):
    """The view drops what it cannot read; selection ranks the rest and never picks it."""
    from lse.algorithms import make_algorithm
    from lse.store.view import ViewCache

    a, b = _ae(store, 0.3), _ae(store, 0.7)
    bad = _ae(store, 0.9)
    (bad.path / "record.json").write_text("{not json")
    algo = make_algorithm(store.config.model_copy(update={"algorithm": store.config.algorithm.model_copy(
        update={"name": "autoencoder", "options": {}})}))
    view = ViewCache(store).view(store.list_alive(), with_records=True)
    rng = random.Random(0)
    for _ in range(20):
        sel = algo.select(view, rng, full=True)
        assert set(sel.parents) | set(sel.kills) <= {a.id, b.id}  # the unreadable one takes no part
