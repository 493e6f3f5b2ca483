"""Hostile or malformed entries in a shared population: each gets a clear one-line message, is
quarantined, and never stops other work."""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil

import pytest

from lse.errors import LostRace
from lse.core.records import IndividualName, new_id
from lse.store import Store

from _store_helpers import make_record, make_weights


@pytest.fixture
def warnings_(caplog):
    caplog.set_level(logging.WARNING, logger="lse.store.population")
    return caplog


def _good(store: Store):
    return store.publish(make_record(0.9), make_weights())


def _tamper(store: Store, file: str, data: bytes):
    e = store.publish(make_record(0.5), make_weights())
    (e.path / file).write_bytes(data)
    return e


class Boom:
    """A pickle that runs code when loaded (what torch.load of an untrusted file would do)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def _assert_quarantined(store: Store, e, warnings_, words: str) -> None:
    with pytest.raises(LostRace, match="quarantined"):
        store.read_parent(e)
    assert not e.path.exists()
    reasons = [n for n in os.listdir(store.paths.quarantine) if n.endswith(".reason.txt")]
    assert len(reasons) == 1
    text = (store.paths.quarantine / reasons[0]).read_text()
    assert words in text
    msgs = [r.getMessage() for r in warnings_.records if "quarantined" in r.getMessage()]
    assert len(msgs) == 1 and "\n" not in msgs[0] and words in msgs[0]


@pytest.mark.parametrize(
    "file,data,words",
    [
        ("record.json", b"{not json", "not valid JSON"),
        ("record.json", b"[]", "record"),
        ("weights.safetensors", b"", "safetensors"),
    ],
)
def test_malformed_files_are_quarantined(store, warnings_, file, data, words):
    good = _good(store)
    e = _tamper(store, file, data)
    _assert_quarantined(store, e, warnings_, words)
    assert store.read_parent(good)[0].id == good.id  # other work continues
    assert [x.id for x in store.list_alive()] == [good.id]


def test_malformed_dna_is_quarantined(store, warnings_):
    e = _good(store)
    rec = json.loads((e.path / "record.json").read_text())
    rec["dna"]["edges"][0]["dst"] = "v99"  # an edge into a vertex that does not exist
    (e.path / "record.json").write_text(json.dumps(rec))
    _assert_quarantined(store, e, warnings_, "invalid DNA")


def test_unknown_genome_kind_is_quarantined(store, warnings_):
    """A record of a genome kind this lse does not know (a newer lse, or a forgery)."""
    e = _good(store)
    rec = json.loads((e.path / "record.json").read_text())
    rec["genome"] = "quantum-foam"
    (e.path / "record.json").write_text(json.dumps(rec))
    _assert_quarantined(store, e, warnings_, "unknown genome kind 'quantum-foam'")


def test_truncated_weights_are_quarantined(store, warnings_):
    e = _good(store)
    w = e.path / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:-10])
    _assert_quarantined(store, e, warnings_, "safetensors")


def test_pickle_payload_never_runs(store, warnings_, tmp_path):
    marker = tmp_path / "pwned"
    e = _tamper(store, "weights.safetensors", pickle.dumps({"fc.weight": Boom(str(marker))}))
    _assert_quarantined(store, e, warnings_, "safetensors")
    assert not marker.exists()


def test_missing_weights_are_quarantined(store, warnings_):
    e = _good(store)
    os.unlink(e.path / "weights.safetensors")
    _assert_quarantined(store, e, warnings_, "missing")


def test_record_of_another_id_is_quarantined(store, warnings_):
    e = _good(store)
    rec = json.loads((e.path / "record.json").read_text())
    rec["id"] = new_id()
    (e.path / "record.json").write_text(json.dumps(rec))
    _assert_quarantined(store, e, warnings_, "does not match")


def test_symlinked_individual_is_never_followed(store, warnings_, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    # A complete, valid-looking individual outside the population, linked in under a valid name.
    src = store.publish(make_record(0.99), make_weights())
    shutil.copytree(src.path, outside / "ind")
    shutil.rmtree(src.path)
    link = store.paths.individuals / IndividualName(new_id(), "alive", 0.99).render()
    os.symlink(outside / "ind", link)
    good = _good(store)

    assert [x.id for x in store.list_alive()] == [good.id]
    assert [x.id for x in store.list_alive()] == [good.id]
    assert sum("symlink" in r.getMessage() for r in warnings_.records) == 1  # one warning per name
    rep = store.gc()
    assert len(rep.quarantined) == 1
    assert not os.path.lexists(link)
    assert (outside / "ind" / "record.json").exists()  # the target was not touched
    assert [r.id for r in store.records()] == [good.id]


def test_symlinked_record_file_is_quarantined(store, warnings_, tmp_path):
    e = _good(store)
    secret = tmp_path / "secret.json"
    secret.write_text((e.path / "record.json").read_text())
    os.unlink(e.path / "record.json")
    os.symlink(secret, e.path / "record.json")
    _assert_quarantined(store, e, warnings_, "symlink")
    assert secret.exists()


@pytest.mark.parametrize(
    "name",
    [
        "back\\slash",
        "new\nline",
        f"{new_id()}.alive.0.500000\n",
        f"{new_id()}.alive.0.500000.extra",
        "..hidden",
        " ",
    ],
)
def test_foreign_names_are_ignored_then_quarantined(store, warnings_, name):
    good = _good(store)
    (store.paths.individuals / name).mkdir()
    assert [x.id for x in store.list_alive()] == [good.id]
    store.list_alive()
    foreign = [r.getMessage() for r in warnings_.records if "foreign" in r.getMessage()]
    assert len(foreign) == 1 and repr(name) in foreign[0]
    rep = store.gc()
    assert rep.quarantined == [name]
    assert sorted(os.listdir(store.paths.individuals)) == [good.path.name]
    reasons = [n for n in os.listdir(store.paths.quarantine) if n.endswith(".reason.txt")]
    assert repr(name) in (store.paths.quarantine / reasons[0]).read_text()
    assert all("\n" not in n and "\\" not in n for n in os.listdir(store.paths.quarantine))


def test_records_skips_and_quarantines_malformed(store, warnings_):
    good = _good(store)
    bad = _tamper(store, "record.json", b"\x00\x01")
    dead = store.publish(make_record(0.1), make_weights())
    store.kill(dead)
    store.gc()
    (store.paths.history / f"{new_id()}.json").write_text('{"id": "../../etc"}')
    recs = store.records()
    assert sorted(r.id for r in recs) == sorted([good.id, dead.id])
    assert not bad.path.exists()
    assert len([n for n in os.listdir(store.paths.quarantine) if n.endswith(".reason.txt")]) == 2


def test_record_from_newer_lse_is_refused_clearly(store, warnings_):
    e = _good(store)
    rec = json.loads((e.path / "record.json").read_text())
    rec["schema_version"] = 99
    (e.path / "record.json").write_text(json.dumps(rec))
    _assert_quarantined(store, e, warnings_, "newer lse")
