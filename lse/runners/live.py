"""Changing a running experiment (paper section 5, "escaping local optima"): ``lse mutations``
(a burst of mutations per child, or a new rate for good), ``lse reset`` (a population-wide
weight reset), ``lse events`` (what was changed, when), and the schedule a launch gives
(``--mutation-burst 5@30m-45m``, ``--weight-reset 20m``).

Every change is one event in ``events/`` (:mod:`lse.store.events`); workers fold them every
step (:mod:`lse.core.events`), so they reach every worker on every host within one step, with
no lock.  Nothing here needs the workers to be running, or stopped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from lse.core.events import Event, parse_burst, parse_duration
from lse.errors import ConfigError, LseError
from lse.store import Store
from lse.store import clock
from lse.store.events import EventLog

Echo = Callable[[str], None]


def created_at(store: Store) -> float:
    """The experiment's time zero (lse.store.clock)."""
    return clock.created_at(store)


def set_mutations(pop_dir: str | os.PathLike, n: int, duration: str | None = None) -> Event:
    """From now (for ``duration``, e.g. "15m"; None: for good) every child gets ``n`` mutations."""
    store = Store(pop_dir).open()
    seconds = None
    if duration is not None:
        try:
            seconds = parse_duration(duration)
        except ValueError as e:
            raise ConfigError(f"--for: {e}", "e.g. --for 15m") from None
        if seconds <= 0:
            raise ConfigError("--for must be positive", "e.g. --for 15m, or leave it out for good")
    if not 1 <= n <= 100:
        raise ConfigError(f"mutations per child must be 1..100, got {n}", "the paper's rate is 1; a burst is a few")
    return EventLog(store).set_mutations(n, duration=seconds)


def reset_weights(pop_dir: str | os.PathLike, note: str = "") -> Event:
    """A population-wide weight reset now: children of today's individuals start from fresh
    weights, and today's fitnesses no longer count in selection (lse.core.events)."""
    return EventLog(Store(pop_dir).open()).reset(note=note)


def schedule(store: Store, bursts: Sequence[str] = (), resets: Sequence[str] = (), echo: Echo = print) -> list[Event]:
    """Record a launch's schedule as events, times counted from the experiment's creation.
    Given again on a resume, the same schedule is recorded once."""
    t0 = created_at(store)
    log = EventLog(store)
    out = []
    for text in bursts:
        try:
            b = parse_burst(text)
        except ValueError as e:
            raise ConfigError(str(e), "fix --mutation-burst") from None
        out.append(log.schedule_mutations(b.mutations_per_child, t0 + b.start, t0 + b.end))
        echo(f"scheduled {b.mutations_per_child} mutations per child from {b.start / 60:g} to {b.end / 60:g} min")
    for text in resets:
        try:
            at = parse_duration(text)
        except ValueError as e:
            raise ConfigError(f"--weight-reset: {e}", "e.g. --weight-reset 20m") from None
        out.append(log.reset(at=t0 + at, source="launch"))
        echo(f"scheduled a weight reset at {at / 60:g} min")
    return out


def describe(event: Event, t0: float) -> str:
    """One line: when (minutes from the start), what, from where."""
    when = f"{(event.at - t0) / 60:+8.2f} min"
    if event.kind == "reset":
        what = "weight reset"
    else:
        until = "for good" if event.until is None else f"until {(event.until - t0) / 60:.2f} min"
        what = f"{event.mutations_per_child} mutation(s) per child {until}"
    return f"{when}  {what}  ({event.source}{': ' + event.note if event.note else ''})  {event.id}"


def register_cli(app) -> None:
    """``lse mutations``, ``lse reset``, ``lse events``."""
    import typer

    def _fail(err: LseError) -> None:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None

    @app.command("mutations")
    def mutations_cmd(
        n: int = typer.Argument(..., help="mutations per child from now on (paper: 1)"),
        pop: Path = typer.Option(Path("population"), "--pop", help="population folder"),
        duration: str = typer.Option(None, "--for", help="only for this long (e.g. 15m, 1h); default: for good"),
    ) -> None:
        """Set the mutations per child of a running experiment (a burst, section 5); recorded in events/."""
        try:
            e = set_mutations(pop, n, duration)
        except LseError as err:
            _fail(err)
        typer.echo(f"recorded {e.file_name()}: workers apply {n} mutation(s) per child from their next step"
                   + ("" if e.until is None else f" for {duration}"))

    @app.command("reset")
    def reset_cmd(
        pop: Path = typer.Option(Path("population"), "--pop", help="population folder"),
        note: str = typer.Option("", "--note", help="a word on why (kept in the event)"),
    ) -> None:
        """Reset the weights of the whole population (section 5): children start from fresh weights."""
        try:
            e = reset_weights(pop, note)
        except LseError as err:
            _fail(err)
        typer.echo(f"recorded {e.file_name()}: from their next step, workers train every child from fresh "
                   "weights until the population is retrained")

    @app.command("events")
    def events_cmd(pop: Path = typer.Option(Path("population"), "--pop", help="population folder")) -> None:
        """List the changes made to an experiment while it ran (bursts, resets), oldest first."""
        try:
            store = Store(pop).open()
        except LseError as err:
            _fail(err)
        t0 = created_at(store)
        events = EventLog(store).read()
        if not events:
            typer.echo("no events")
        for e in events:
            typer.echo(describe(e, t0))
