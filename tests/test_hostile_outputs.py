"""Issue 29: events bounded and retried, plans validated before anything applies, read-only
commands that stay read-only, and terminal output of population text escaped."""

from __future__ import annotations

import json
import os

import pytest
from pydantic import ValidationError

from lse.core import events as ev
from lse.core.records import new_id
from lse.core.text import terminal_safe
from lse.store.events import EventLog
from lse.store.generations import GenerationPlan

from _store_helpers import make_record, make_weights, new_store

T0 = 1_700_000_000.0
NASTY = "ok\x1b]0;pwned\x07\x1b[2J\u202edesrever\u2066x\x9b31m"


def _assert_inert(text: str) -> None:
    for c in ("\x1b", "\x07", "\u202e", "\u2066", "\x9b"):
        assert c not in text, repr(text)


def test_terminal_safe_spells_out_escapes():
    out = terminal_safe(NASTY + "\nline")
    _assert_inert(out)
    assert "\\x1b]0;pwned" in out and "\\u202e" in out and "\n" not in out
    assert terminal_safe("a\nb", newlines=True) == "a\nb"
    assert terminal_safe("héllo 中文") == "héllo 中文"


# ---- events --------------------------------------------------------------------------------


@pytest.mark.parametrize("kw", [
    dict(kind="mutations", at=-1e308, mutations_per_child=100),
    dict(kind="mutations", at=1e308, mutations_per_child=3),
    dict(kind="mutations", at=T0, until=T0 + 1e12, mutations_per_child=3),
    dict(kind="reset", at=T0, note="x" * (ev.MAX_NOTE + 1)),
])
def test_out_of_range_events_are_refused(kw):
    with pytest.raises(ValidationError):
        ev.Event(id=new_id(T0), **kw)


def test_a_planted_event_at_minus_1e308_changes_nothing(tmp_path):
    store = new_store(tmp_path / "pop")
    bad = {"id": new_id(T0), "kind": "mutations", "at": -1e308, "until": None, "mutations_per_child": 100,
           "source": "command", "note": ""}
    (store.paths.events).mkdir(exist_ok=True)
    (store.paths.events / f"{bad['id']}.mutations.json").write_text(json.dumps(bad))
    assert ev.mutations_per_child(EventLog(store).read(), 1, T0) == 1


def test_an_event_that_failed_to_read_is_read_again(tmp_path):
    """Cached as nothing, an event once unreadable stayed invisible to that worker for good,
    and workers disagreed on the weight epoch."""
    store = new_store(tmp_path / "pop")
    log = EventLog(store)
    e = ev.Event(id=new_id(T0), kind="reset", at=T0)
    store.paths.events.mkdir(exist_ok=True)
    path = store.paths.events / e.file_name()
    os.mkfifo(path)  # a hostile (or half-written) file: refused without blocking
    assert log.read() == []
    os.unlink(path)
    path.write_text(e.model_dump_json())
    assert log.read() == [e]


def test_a_duration_past_ten_years_is_a_one_line_error():
    with pytest.raises(ValueError, match="longer than ten years"):
        ev.parse_duration("99999999999h")
    from typer.testing import CliRunner

    from lse.cli import app

    res = CliRunner().invoke(app, ["mutations", "3", "--pop", "/nonexistent-pop", "--for", "99999999999h"])
    assert res.exit_code != 0 and "Traceback" not in res.output


def test_lse_events_prints_notes_escaped(tmp_path):
    from typer.testing import CliRunner

    from lse.cli import app

    store = new_store(tmp_path / "pop")
    EventLog(store).reset(note=NASTY)
    res = CliRunner().invoke(app, ["events", "--pop", str(store.root)])
    assert res.exit_code == 0, res.output
    assert "desrever" in res.output
    _assert_inert(res.output)


# ---- plans ---------------------------------------------------------------------------------


def _plan(**kw):
    a, b, c = new_id(T0), new_id(T0 + 1), new_id(T0 + 2)
    body = dict(generation=1, slots=2, parents=[a, b], kill=[a],
                children=[dict(slot=0, id=c, name=f"{c}.alive.0.500000")], planned_by="w0", planned_at=T0)
    body.update(kw)
    return body


@pytest.mark.parametrize("change", [
    dict(planned_by="../../etc"),
    dict(kill=[new_id(T0 + 9)]),  # not a parent of the generation
    dict(children=[dict(slot=0, id=new_id(T0 + 2), name="../../x")]),
    dict(children=[dict(slot=5, id=new_id(T0 + 2), name=f"{new_id(T0 + 2)}.alive.0.500000")]),
    dict(slots=10**12),
    dict(planned_at=float("inf")),
])
def test_a_plan_is_validated_before_anything_applies(change):
    GenerationPlan.model_validate(_plan())
    with pytest.raises(ValidationError):
        GenerationPlan.model_validate(_plan(**change))


def test_generation_json_with_a_trillion_slots_is_refused(tmp_path, caplog):
    from lse.store.generations import Generations

    store = new_store(tmp_path / "pop")
    store.register_worker("w0", auto_heartbeat=False)
    gens = Generations(store, slots=2)
    g = gens.current()
    meta = store.paths.generation_meta(g)
    os.unlink(meta)
    meta.write_text(json.dumps({"generation": g, "slots": 10**12}))
    assert gens.slots(g) == 2  # this worker's own count; the file is left where it is
    assert "unusable" in caplog.text and meta.exists()
    store.close()


# ---- read-only commands --------------------------------------------------------------------


def test_status_and_pop_ls_move_nothing(tmp_path):
    from typer.testing import CliRunner

    from lse.cli import app

    store = new_store(tmp_path / "pop")
    store.register_worker("w0", auto_heartbeat=False)
    store.publish(make_record(0.7, host=NASTY), make_weights())
    bad = store.publish(make_record(0.5), make_weights())
    (bad.path / "record.json").write_text("{broken")
    (store.paths.generations).mkdir(exist_ok=True)
    (store.paths.generations / "junk").mkdir()
    (store.paths.individuals / "foreign").write_text("x")
    hb = store.paths.heartbeat("w0")
    hb.write_text(json.dumps({"host": "\x1b]0;T\x07\u202eH", "pid": 1, "create_time": 1.0, "counter": 1}))
    before = sorted(p.name for p in store.root.rglob("*"))
    for args in (["status"], ["pop", "ls"]):
        res = CliRunner().invoke(app, [*args, "--pop", str(store.root)])
        assert res.exit_code == 0, res.output
        _assert_inert(res.output)
        assert args == ["pop", "ls"] or "\\x1b]0;T" in res.output  # the host was shown, escaped
    assert sorted(p.name for p in store.root.rglob("*")) == before
    assert not any(store.paths.quarantine.iterdir())
    res = CliRunner().invoke(app, ["pop", "show", store.list_alive()[0].id, "--pop", str(store.root)])
    assert res.exit_code == 0 and "desrever" in res.output, res.output
    _assert_inert(res.output)
    store.close()


def test_the_report_readers_move_nothing(tmp_path):
    """`lse report`, `lse export`, `lse retrain` and `lse.load` read through a read-only store: a
    malformed entry is skipped, not quarantined (moving files is the workers' job)."""
    from lse.reports.report import load_experiment, load_weights

    store = new_store(tmp_path / "pop")
    store.register_worker("w0", auto_heartbeat=False)
    good = store.publish(make_record(0.7), make_weights())
    bad = store.publish(make_record(0.5), make_weights())
    (bad.path / "record.json").write_text("{broken")
    before = sorted(p.name for p in store.root.rglob("*"))
    exp = load_experiment(store.root)
    assert [r.id for r in exp.records] == [good.id]
    assert load_weights(store.root, good.id) is not None
    assert sorted(p.name for p in store.root.rglob("*")) == before
    assert not any(store.paths.quarantine.iterdir())
    store.close()
