"""Section 5, escaping local optima: mutation bursts and weight resets on a running experiment.

The fold (lse.core.events) is tested as a table; the commands against a real worker training
real (tiny) networks on a synthetic data set, then `lse report` on the result.
"""

from __future__ import annotations

import json
import random
import threading

import pytest

from lse.algorithms.base import Member, PopulationView
from lse.config import ExperimentConfig, WorkerOptions
from lse.core import events as ev
from lse.core.records import new_id
from lse.core.selection import tournament
from lse.errors import ConfigError
from lse.store import Store
from lse.store.events import EventLog

T0 = 1_700_000_000.0


def _id(t: float) -> str:
    return new_id(t)


def _mut(n: int, at: float, until: float | None = None, written: float | None = None) -> ev.Event:
    return ev.Event(id=_id(written if written is not None else at), kind="mutations", at=at, until=until,
                    mutations_per_child=n)


def _reset(at: float) -> ev.Event:
    return ev.Event(id=_id(at), kind="reset", at=at)


@pytest.mark.parametrize("t, expected", [
    (T0 + 10, 1),      # before anything: experiment.json's value
    (T0 + 100, 2),     # a permanent setting
    (T0 + 200, 5),     # a burst that began later overrides it
    (T0 + 299.9, 5),
    (T0 + 300, 2),     # the burst ended: the permanent setting again
    (T0 + 410, 7),     # a command written during a later burst began later: it wins
    (T0 + 600, 7),     # and outlives the burst's end
])
def test_mutations_per_child_is_the_setting_that_began_last(t, expected):
    events = [
        _mut(2, T0 + 100),
        _mut(5, T0 + 200, T0 + 300, written=T0),  # scheduled at launch, long before
        _mut(3, T0 + 400, T0 + 500, written=T0),
        _mut(7, T0 + 410),
    ]
    assert ev.mutations_per_child(events, 1, t) == expected


def test_epoch_counts_resets_and_decides_inheritance():
    events = [_reset(T0 + 100), _reset(T0 + 200)]
    assert [ev.epoch(events, T0 + dt) for dt in (0, 100, 150, 200, 900)] == [0, 1, 1, 2, 2]
    old, mid, new = _id(T0 + 50), _id(T0 + 150), _id(T0 + 250)
    assert ev.inherits([old], _id(T0 + 60), events)       # same epoch
    assert not ev.inherits([old], _id(T0 + 160), events)  # a reset between parent and child
    assert not ev.inherits([new, mid], _id(T0 + 260), events)  # every parent must be current
    assert ev.stale(mid, events, 2) and not ev.stale(new, events, 2) and not ev.stale(old, [], 0)


def test_stale_individuals_lose_every_tournament_after_a_reset():
    """A reset discards the weights an older epoch's fitness was measured with: such an
    individual loses to any of the current epoch, whatever its old fitness."""
    view = PopulationView([Member("old", 0.99), Member("new", 0.10)]).unrated({"old"})
    for seed in range(20):
        d = tournament([(m.id, m.fitness) for m in view.members], random.Random(seed))
        assert (d.parent, d.kill) == ("new", "old")


@pytest.mark.parametrize("text, expected", [
    ("5@30m-45m", ev.Burst(5, 1800.0, 2700.0)),
    ("2@90s-2h", ev.Burst(2, 90.0, 7200.0)),
    ("3@0-1.5", ev.Burst(3, 0.0, 90.0)),
])
def test_burst_schedule_parses(text, expected):
    assert ev.parse_burst(text) == expected


@pytest.mark.parametrize("text, says", [
    ("5", "write N@START-END"), ("5@30m", "write N@START-END"), ("0@1m-2m", "N must be 1..100"),
    ("5@45m-30m", "END must come after START"), ("5@1x-2m", "is not a duration"),
])
def test_bad_burst_is_one_line_saying_the_format(text, says):
    with pytest.raises(ValueError, match=says) as e:
        ev.parse_burst(text)
    assert "\n" not in str(e.value) and "5@30m-45m" in str(e.value)


def test_events_are_published_once_and_junk_is_ignored(tmp_path):
    store = Store(tmp_path / "pop")
    store.create(ExperimentConfig(population_size=4))
    log = EventLog(store.open())
    a = log.schedule_mutations(4, T0 + 60, T0 + 120)
    assert not log.publish(a)  # the same schedule again: recorded once
    log.reset(note="trapped")
    (store.paths.events / "20240101T000000000000Z-00000000.reset.json").write_text("{not json")
    (store.paths.events / "notes.txt").write_text("hello")
    events = EventLog(store).read()
    assert [e.kind for e in events] == ["mutations", "reset"] and events[1].note == "trapped"
    assert not [p for p in store.paths.events.iterdir() if p.name.startswith(".tmp-")]


class _Paused:
    """A real TorchTrainer that pauses before given calls until the test lets it go on."""

    def __init__(self, inner, pause_at: dict[int, threading.Event]) -> None:
        self.inner, self.pause_at, self.calls = inner, pause_at, 0
        self.reached = {k: threading.Event() for k in pause_at}

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def prepare(self, config):
        self.inner.prepare(config)

    def train_child(self, child, parent_states, recipe, **kw):
        self.calls += 1
        if self.calls in self.pause_at:
            self.reached[self.calls].set()
            assert self.pause_at[self.calls].wait(120)
        return self.inner.train_child(child, parent_states, recipe, **kw)


def test_burst_and_reset_from_the_command_line_reach_a_running_worker_and_the_report(tmp_path):
    from typer.testing import CliRunner

    from lse.cli import app
    from lse.nn.synthetic import write_synthetic
    from lse.runners.worker import TorchTrainer, run_worker

    data = write_synthetic(tmp_path / "data", "cifar10", n_train=400, n_test=100, seed=3)
    pop = tmp_path / "pop"
    Store(pop).create(ExperimentConfig(dataset="cifar10", data_dir=str(data), validation_size=100, population_size=4,
                                       steps=3, eval_batch_size=100, max_individuals=16, seed=2))
    go = {8: threading.Event(), 12: threading.Event()}
    trainer = _Paused(TorchTrainer(WorkerOptions(threads=1, device="cpu")), go)
    done: list = []
    worker = threading.Thread(target=lambda: done.append(run_worker(
        pop, WorkerOptions(threads=1, device="cpu"), trainer, worker_id="w", handle_signals=False, log_to_file=False)))
    worker.start()
    cli = CliRunner()
    try:
        assert trainer.reached[8].wait(120), "the worker never reached its 8th child"
        res = cli.invoke(app, ["mutations", "3", "--pop", str(pop)])
        assert res.exit_code == 0 and "mutations.json" in res.output, res.output
        go[8].set()
        assert trainer.reached[12].wait(120)
        res = cli.invoke(app, ["reset", "--pop", str(pop), "--note", "test"])
        assert res.exit_code == 0 and "reset.json" in res.output, res.output
        go[12].set()
        worker.join(300)
    finally:
        for g in go.values():
            g.set()
    assert done and done[0].births == 16

    events = EventLog(Store(pop)).read()
    burst, reset = events
    assert (burst.kind, burst.mutations_per_child, reset.kind) == ("mutations", 3, "reset")
    recs = sorted(Store(pop).open().records(), key=lambda r: r.id)
    # the 8th child was varied before the command: it and all before have one mutation each
    children = [r for r in recs if r.parents]
    before = [r for r in children if r.id < burst.id]
    after = [r for r in children if r.id > burst.id]
    assert before and all("+" not in r.mutation_name and r.extra["mutations_per_child"] == 1 for r in before)
    assert after and all(r.mutation_name.count("+") == 2 and r.extra["mutations_per_child"] == 3 for r in after)
    # after the reset: children of older-epoch parents start fresh, of current ones inherit
    by_id = {r.id: r for r in recs}
    post = [r for r in children if r.id > reset.id]
    assert post and all(r.extra["epoch"] == 1 for r in post)
    for r in post:
        parent_epoch = by_id[r.parent_id].extra.get("epoch", 0)
        assert r.extra["inherited"] == (parent_epoch == 1), (r.id, parent_epoch)
        if parent_epoch == 0:
            assert r.inheritance.kept == 0
    assert all(r.extra["epoch"] == 0 for r in recs if r.id < reset.id)

    out = tmp_path / "report"
    res = cli.invoke(app, ["report", "--pop", str(pop), "--out", str(out)])
    assert res.exit_code == 0, res.output
    page = (out / "report.html").read_text()
    assert "3 mutation(s) per child" in page and "weight reset" in page
    summary = json.loads((out / "summary.json").read_text())
    assert any(k.startswith("individuals:") for k in summary["files"])
    res = cli.invoke(app, ["events", "--pop", str(pop)])
    assert "weight reset" in res.output and "3 mutation(s) per child for good" in res.output


def test_launch_schedule_and_resume_record_events_once(tmp_path):
    from lse.runners.launch import prepare_experiment

    pop = tmp_path / "pop"
    given = {"population_size": 4, "mutation_bursts": ["5@1m-2m"], "weight_resets": ["3m"]}
    prepare_experiment(pop, dict(given), check_data=False, echo=lambda s: None)
    prepare_experiment(pop, dict(given), check_data=False, echo=lambda s: None)  # resume: same schedule
    kinds = [e.kind for e in EventLog(Store(pop)).read()]
    assert kinds == ["mutations", "reset"]
    prepare_experiment(pop, {"mutations_per_child": 2}, check_data=False, echo=lambda s: None)
    assert Store(pop).open().config.mutations_per_child == 2
    resumed = [e for e in EventLog(Store(pop)).read() if e.source == "resume"]
    assert [e.mutations_per_child for e in resumed] == [2]
    with pytest.raises(ConfigError, match="write N@START-END"):
        prepare_experiment(tmp_path / "other", {"mutation_bursts": ["5@x"]}, check_data=False)
    assert not (tmp_path / "other").exists()
