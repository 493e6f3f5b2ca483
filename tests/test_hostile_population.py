"""Issue 29: a hostile-population fuzzer.

For every kind of file lse reads from a population (records, weights, heartbeats, history,
deaths, GC entries, events, generation and plan files, eval cache, reference curves) and every
attack an intruder with write access could try (a FIFO, a sparse huge file, deep JSON, a
directory, a symlink out of the population, out-of-range numbers, a non-date id, garbage bytes),
plant it and check that:

- a worker's readers (recovery, GC, records, parent reads, events) neither raise nor hang;
- ``lse status``, ``lse pop ls``, a light ``lse report`` (load_experiment, the progress curve,
  the eval cache) and the dashboard's API answer;
- nothing outside the population is read, checked twice: every open of the process is
  audited (``sys.addaudithook``), and none may reach the folder outside, through a link, without
  ``O_NOFOLLOW``; and every symlink points at a file outside holding a marker that no output may
  contain, or at a FIFO outside that would hang whoever opened it.

One real worker (``worker.py``) then meets one attack of every kind at once and keeps giving
birth.  Every call runs under a hang guard (a thread with a timeout), never a timing.

The default suite runs a representative subset (every kind once, every attack at least once);
the full matrix is ``@pytest.mark.slow``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from lse.cli import app
from lse.core.records import new_id
from lse.errors import LostRace, LseError
from lse.store import Store
from lse.store.events import EventLog

from _store_helpers import make_record, make_weights, new_store, plant_attack, run_within

MARKER = "OUTSIDE-THE-POPULATION-7f3a"
MONTH_13 = "20241301T000000000000Z-0badda7e"
KINDS = ["record", "weights", "heartbeat", "history", "death", "gc", "event", "generation", "plan", "eval",
         "reference", "classes", "retrained"]
ATTACKS = ["fifo", "sparse", "deep", "dir", "symlink", "range", "nondate", "garbage", "linkdir"]
#: kinds that live in a folder of their own, which "linkdir" replaces by a link to a folder outside
#: (O_NOFOLLOW guards a path's last component only); for the rest, linkdir is a plain symlink
FOLDERED = {"record", "weights", "gc", "retrained", "plan"}
HANG = 60.0  # seconds: the hang guard of each call (a blocked read never returns at all)


def guarded(fn, what: str):
    """fn() under the hang guard; its value, or its exception re-raised."""
    out = run_within(fn, HANG, what)
    if "error" in out:
        raise out["error"]
    return out.get("value")


# ---- every open of this process, audited ------------------------------------------------------

_WATCHED: list[str] = []  # folders no open may reach while a check runs
_OPENED: list[str] = []  # what reached one
_IN_HOOK = threading.local()


def _audit(event: str, args: tuple) -> None:
    """Records an open (``open()``, ``os.open``, ``os.scandir``/``listdir``) whose target, links
    followed, lies in a watched folder.  An ``os.open`` with O_NOFOLLOW cannot follow a link
    out, so it does not count (it fails with ELOOP: the safe read's refusal)."""
    if not _WATCHED or event not in ("open", "os.scandir", "os.listdir") or getattr(_IN_HOOK, "on", False):
        return
    path = args[0] if args else None
    if not isinstance(path, (str, bytes, os.PathLike)):
        return  # a file descriptor: its open was audited already
    if event == "open" and len(args) > 2 and isinstance(args[2], int) and args[2] & os.O_NOFOLLOW:
        return
    _IN_HOOK.on = True
    try:
        real = os.path.realpath(os.fsdecode(path))
        if any(real == w or real.startswith(w + os.sep) for w in _WATCHED):
            _OPENED.append(f"{event} {os.fsdecode(path)} -> {real}")
    except (OSError, ValueError):
        pass
    finally:
        _IN_HOOK.on = False


sys.addaudithook(_audit)  # hooks cannot be removed: it is idle while _WATCHED is empty


@contextlib.contextmanager
def nothing_opened_in(folder: Path):
    """Fails when anything in the block opened a file or listed a folder under ``folder``."""
    _OPENED.clear()
    _WATCHED[:] = [os.path.realpath(folder)]
    try:
        yield
    finally:
        _WATCHED.clear()
    assert not _OPENED, f"a file outside the population was opened: {_OPENED[:5]}"


def test_the_audit_sees_a_read_through_a_link(tmp_path):
    """The audit above can fail: a plain read through a link out of the population is caught."""
    world = outside(tmp_path)
    link = tmp_path / "link.json"
    os.symlink(world["secret"], link)
    with pytest.raises(AssertionError, match="opened"):
        with nothing_opened_in(world["secret"].parent):
            link.read_text()


# ---- the population and the outside world -----------------------------------------------------


def outside(tmp_path: Path) -> dict[str, Path]:
    """A secret file (valid JSON of any kind, carrying MARKER) and a FIFO, both outside."""
    d = tmp_path / "outside"
    d.mkdir()
    secret = d / "secret.json"
    rec = make_record(0.99, id=new_id()).model_dump(mode="json")
    rec.update(host=MARKER, worker="w0")
    secret.write_text(json.dumps({**rec, "note": MARKER, "test_accuracy": 0.5, "host": MARKER, "pid": 1,
                                  "create_time": 1.0, "counter": 1, "killed_at": 1.0, "killed_by": "w0"}))
    fifo = d / "fifo"
    os.mkfifo(fifo)
    return {"secret": secret, "fifo": fifo}


def population(tmp_path: Path) -> Store:
    """Two alive individuals, one collected (history + death), an open generation 0 with a plan,
    an eval entry, a reference curve, an event: every kind of file exists somewhere."""
    store = new_store(tmp_path / "pop")
    store.register_worker("w0", auto_heartbeat=False)
    store.publish(make_record(0.6), make_weights(1))
    store.publish(make_record(0.7), make_weights(2))
    dead = store.publish(make_record(0.2), make_weights(3))
    assert store.kill(dead)
    store.gc()
    EventLog(store).reset(note="fine")
    return store


def _json(obj) -> bytes:
    return json.dumps(obj).encode()


def _range_body(kind: str, store: Store) -> bytes:
    rec = make_record(0.5).model_dump(mode="json")
    return {
        "record": lambda: _json({**rec, "age": 10**400, "born_at": -1e308}),
        "history": lambda: _json({**rec, "born_at": 1e308, "steps": 10**30}),
        "gc": lambda: _json({**rec, "killed_at": float("inf")}),
        "weights": lambda: (2**63).to_bytes(8, "little") + b"{}",  # a header "length" of 8 EiB
        "heartbeat": lambda: _json({"host": store.host, "pid": -1, "create_time": "x", "counter": -5}),
        "death": lambda: _json({"id": rec["id"], "killed_at": -1e308, "killed_by": "../../x"}),
        "event": lambda: _json({"id": new_id(), "kind": "mutations", "at": -1e308, "until": None,
                                "mutations_per_child": 100, "source": "command", "note": "x" * 20_000_000}),
        "generation": lambda: _json({"generation": 0, "slots": 10**12}),
        "plan": lambda: _json({"generation": 0, "slots": 1, "parents": [], "kill": [new_id()],
                               "children": [], "planned_by": "../../etc", "planned_at": -1e308}),
        "eval": lambda: _json({"test_accuracy": 1e308, "test_fingerprint": "x"}),
        "reference": lambda: _json({"name": "anchor", "architecture": "x", "params": -1, "learning_rate": -1,
                                    "batch_size": 0, "seed": 10**400, "threads": 0}),
        "classes": lambda: _json({"classes": ["a"] * 3, "input_shape": [10**9, -1, 0], "mean": [1e400],
                                  "std": [0.0]}),
        "retrained": lambda: _json(_retrained_body(rec["id"], steps=-5, flops=float("inf"), finished_at="soon",
                                                   test_accuracy=7.0)),
    }[kind]()


def _retrained_body(iid: str, **kw) -> dict:
    """result.json as `lse retrain` writes it (lse.runners.retrain), with ``kw`` changed."""
    return {"id": iid, "from": "weights", "steps": 100, "train_seconds": 3.0, "val_accuracy": 0.5,
            "test_accuracy": 0.5, "flops": 1e9, "finished_at": 1.7e9, **kw}


def target(kind: str, store: Store, attack: str) -> Path:
    """Where a file of ``kind`` lives (made ready: parents exist, the name is free)."""
    p = store.paths
    iid = MONTH_13 if attack == "nondate" else new_id()
    if kind in ("record", "weights"):
        name = f"{iid}.alive.0.500000"
        folder = p.individuals / name
        folder.mkdir()
        other = "weights.safetensors" if kind == "record" else "record.json"
        body = make_record(0.5, id=new_id()).model_dump(mode="json")
        if attack == "nondate":
            body["id"] = MONTH_13
        (folder / other).write_bytes(_json(body) if other == "record.json" else b"\0" * 16)
        return folder / ("record.json" if kind == "record" else "weights.safetensors")
    if kind == "heartbeat":
        (p.workers / "intruder").mkdir(exist_ok=True)
        return p.heartbeat("intruder")
    if kind == "history":
        return p.history / f"{iid}.json"
    if kind == "death":
        return p.history / f"{iid}.death.json"
    if kind == "gc":
        folder = p.gc / f"{iid}.ghost"
        folder.mkdir()
        return folder / "record.json"
    if kind == "event":
        p.events.mkdir(exist_ok=True)
        return p.events / f"{iid}.reset.json"
    if kind in ("generation", "plan"):
        g0 = p.generation(0)
        (g0 / "children").mkdir(parents=True, exist_ok=True)
        if kind == "plan":
            (g0 / "generation.json").write_text(json.dumps({"generation": 0, "slots": 1}))
            p.generation_plan(0).mkdir()
            return p.generation_plan(0) / "plan.json"
        return g0 / "generation.json"
    if kind == "eval":
        p.eval.mkdir(exist_ok=True)
        return p.eval / f"{iid}.json"
    if kind == "reference":
        p.reference.mkdir(exist_ok=True)
        return p.reference / "anchor.json"
    if kind == "classes":
        return store.root / "classes.json"
    if kind == "retrained":
        folder = store.root / "retrained" / f"{iid}-1"
        folder.mkdir(parents=True)
        (folder / "weights.safetensors").write_bytes(b"\0" * 16)
        return folder / "result.json"
    raise AssertionError(kind)


def _sound_body(kind: str, store: Store) -> bytes:
    """A valid file of ``kind``, as lse writes it (planted outside, behind a linked folder)."""
    rec = make_record(0.5).model_dump(mode="json")
    if kind == "retrained":
        return _json({**_retrained_body(rec["id"]), "note": MARKER})
    if kind == "plan":
        return _json({"generation": 0, "slots": 1, "parents": [], "kill": [], "children": [], "planned_by": "w0",
                      "planned_at": 1.7e9, "note": MARKER})
    if kind == "weights":
        return b"\0" * 16
    return _json({**rec, "host": MARKER})


def plant(kind: str, attack: str, store: Store, world: dict[str, Path]) -> Path:
    path = target(kind, store, attack)
    if attack == "linkdir" and kind not in FOLDERED:
        attack = "symlink"
    if attack == "linkdir":
        # the entry's own folder is a link to a folder outside holding sound files of its kind
        folder = path.parent
        away = world["secret"].parent / f"{kind}-folder"
        away.mkdir()
        for f in folder.iterdir():
            (away / f.name).write_bytes(f.read_bytes())
            f.unlink()
        (away / path.name).write_bytes(_sound_body(kind, store))
        folder.rmdir()
        os.symlink(away, folder)
        return path
    if attack in ("fifo", "sparse", "deep", "dir", "garbage", "symlink"):
        # records, events... link to the secret; weights, heartbeats and plans to the FIFO outside
        plant_attack(path, attack, link_to=world["fifo"] if kind in ("weights", "heartbeat", "plan") else world["secret"])
        if attack == "dir":
            (path / "x").mkdir()
    elif attack == "range":
        path.write_bytes(_range_body(kind, store))
    elif attack == "nondate":  # the name carries MONTH_13 (see target); the content is sound JSON
        body = make_record(0.5, id=new_id()).model_dump(mode="json")
        body.update(id=MONTH_13, parents=[MONTH_13])
        if kind == "retrained":
            body = _retrained_body(MONTH_13)
        elif kind == "event":
            body = {"id": MONTH_13, "kind": "reset", "at": 1.7e9, "source": "command", "note": ""}
        elif kind == "plan":
            body = {"generation": 0, "slots": 1, "parents": [MONTH_13], "kill": [MONTH_13], "children": [],
                    "planned_by": "w0", "planned_at": 1.7e9}
        elif kind == "weights":
            body = {}
        path.write_bytes(_json(body))
    return path


# ---- what must keep working ------------------------------------------------------------------


def worker_reads(store: Store) -> None:
    """What a worker's step and maintenance read (lse.runners.worker)."""
    store.recover()
    store.gc()
    store.records()
    for e in store.list_alive():
        try:
            store.read_parent(e)
        except LostRace:
            pass
    EventLog(store).read()
    for iid in [r.id for r in store.records()][:5]:
        store.record(iid)


def light_report(pop: Path) -> int:
    from lse.reports import curves as cv
    from lse.reports.report import Evaluator, load_experiment, load_weights

    from lse.reports.models import data_info, retrained_results

    exp = load_experiment(pop)
    cv.progress_curve(exp.inds, {}, start=exp.start, label="fuzz")
    for r in retrained_results(pop):  # what `lse report` shows of `lse retrain`'s models
        assert MARKER not in json.dumps(r)
        "{:.3g} {:.3g}".format(r["flops"], r["test_accuracy"] or 0)
    try:
        info = data_info(pop, exp.config)  # what lse export / predict / retrain / lse.load read first
        assert MARKER not in json.dumps(info)
    except LseError:
        pass  # classes.json refused, and the data set is not installed: a message, never a crash
    stub = SimpleNamespace(fingerprint="x")
    for r in exp.records:
        Evaluator.cached(stub, pop, r.id)  # type: ignore[arg-type]
        try:
            load_weights(pop, r.id)
        except LseError:
            pass  # a refused weights file is an lse error with a message, never a crash
    return len(exp.records)


def dashboard_state(pop: Path) -> dict:
    from lse.dashboard.server import Dashboard

    dash = Dashboard([pop], interval=0.0)
    st = dash.state(0)
    rows = st["pops"][0]["rows"]
    for r in rows[:3]:
        dash.individual(0, r[0])
    return st


def check_everything(store: Store, world: dict[str, Path]) -> None:
    with nothing_opened_in(world["secret"].parent):
        _check_everything(store, world)


def _check_everything(store: Store, world: dict[str, Path]) -> None:
    pop = store.root
    outputs = []
    for args in (["status"], ["pop", "ls", "--json"], ["events"]):
        res = guarded(lambda: CliRunner().invoke(app, [*args, "--pop", str(pop)]), f"lse {' '.join(args)}")
        assert res.exit_code == 0, (args, res.output, res.exception)
        outputs.append(res.output)
    st = guarded(lambda: dashboard_state(pop), "the dashboard's API")
    outputs.append(json.dumps(st))
    guarded(lambda: worker_reads(store), "a worker's readers")
    assert guarded(lambda: light_report(pop), "lse report (light)") >= 3
    outputs.append(json.dumps([r.model_dump(mode="json") for r in store.records()]))
    for text in outputs:
        assert MARKER not in text, "a file outside the population was read"
    assert (world["secret"]).exists()


def _case(tmp_path: Path, kind: str, attack: str) -> None:
    world = outside(tmp_path)
    store = population(tmp_path)
    try:
        plant(kind, attack, store, world)
        check_everything(store, world)
    finally:
        store.close()


#: every kind once, and every attack at least once, in the default suite
FAST = [(k, ATTACKS[i % len(ATTACKS)]) for i, k in enumerate(KINDS)] + [
    ("record", "deep"), ("heartbeat", "range"), ("event", "garbage"), ("gc", "dir"), ("plan", "symlink"),
    ("record", "linkdir"), ("retrained", "fifo"), ("classes", "symlink")]


@pytest.mark.parametrize("kind,attack", FAST)
def test_hostile_file(tmp_path, kind, attack):
    _case(tmp_path, kind, attack)


@pytest.mark.slow
@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("kind", KINDS)
def test_hostile_file_full_matrix(tmp_path, kind, attack):
    _case(tmp_path, kind, attack)


def test_a_real_worker_keeps_giving_birth_among_hostile_files(tmp_path):
    """worker.py on a population where one attack of every kind is planted (the attacks rotate
    so that each appears): it goes on giving birth, and every reader still answers."""
    from _reliability_helpers import logs_text, make_pop, output_of, reaped, start_worker, wait_for, write_data

    from _reliability_seed import seed_individuals

    world = outside(tmp_path)
    data = write_data(tmp_path / "data")
    pop = tmp_path / "pop"
    make_pop(pop, data, population_size=4)
    seed_individuals(pop, 4)
    store = Store(pop).open()
    store.register_worker("planter", auto_heartbeat=False)
    # a steady-state worker never reads generations/ (lse status does, below; a generational
    # worker meets them in test_hostile_generations.py); every attack appears once
    kinds = [k for k in KINDS if k not in ("generation", "plan")]
    for j, kind in enumerate(kinds):
        plant(kind, ATTACKS[(j - 1) % len(ATTACKS)], store, world)
    plant("plan", "range", store, world)
    out = tmp_path / "worker.out"
    with reaped(start_worker(pop, out)) as procs:
        wait_for(lambda: logs_text(pop).count("born ") >= 4, 240, "4 births among the hostile files",
                 show=output_of(out, pop=pop))
        assert procs[0].poll() is None, output_of(out, pop=pop)()  # still running
        store.request_stop("the test has seen enough")
        wait_for(lambda: procs[0].poll() is not None, 120, "the worker to stop", show=output_of(out, pop=pop))
        assert procs[0].returncode == 0, output_of(out, pop=pop)()
    assert "Traceback" not in logs_text(pop)
    check_everything(store, world)
    # the real `lse report` (test accuracies, figures, HTML) answers, reads nothing outside, and
    # moves nothing: it is a reader (only its test-accuracy cache, eval/, is written)
    before = sorted(str(p.relative_to(pop)) for p in pop.rglob("*") if "eval" not in p.relative_to(pop).parts)
    rep = tmp_path / "report"
    with nothing_opened_in(world["secret"].parent):
        res = guarded(lambda: CliRunner().invoke(app, ["report", "--pop", str(pop), "--out", str(rep),
                                                       "--device", "cpu"]), "lse report")
    assert res.exit_code == 0, (res.output, res.exception)
    after = sorted(str(p.relative_to(pop)) for p in pop.rglob("*") if "eval" not in p.relative_to(pop).parts)
    assert after == before, "lse report changed the population"
    for f in rep.rglob("*"):
        if f.is_file():
            assert MARKER.encode() not in f.read_bytes(), f"{f.name} holds what a file outside the population held"
    store.close()
