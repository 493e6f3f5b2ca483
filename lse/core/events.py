"""Changes made to a running experiment (paper section 5, "escaping local optima"), and what
they mean at any moment: a pure fold over a list of events.

Two kinds of event, each one small JSON file in the population's ``events/`` folder
(:mod:`lse.store.events` writes it privately and publishes it by one rename):

* ``mutations`` -- from ``at`` (unix s) until ``until`` (None: for good), every child gets
  ``mutations_per_child`` mutations instead of the experiment's ``mutations_per_child``.  A
  burst scheduled at launch (``--mutation-burst 5@30m-45m``), a command on a running
  experiment (``lse mutations``) and a resume that changes the setting are all such events.
  When several are in force, the one that *began* last wins (ties: the one written last), so
  a command during a scheduled burst overrides it, and the burst's end does not undo a
  permanent setting made before it.
* ``reset`` -- a population-wide weight reset at ``at``.  The experiment's *epoch* at time t is
  the number of resets at or before t.  An individual belongs to the epoch of its birth stamp
  (the time in its id, drawn when its worker claimed it); a child whose parent belongs to an
  older epoch starts from fresh weights, and an individual of an older epoch has no valid
  fitness any more (its trained weights are, by the reset, discarded): in selection it loses
  to every individual of the current epoch.  Within ``population_size`` steps the whole
  population has been retrained from scratch, as in the paper's Figure 4 (bottom).

Why events, not a counter in experiment.json: a counter must be read, incremented and written
back, and two commands at once lose one increment unless they lock.  An event is written once
and never changed; two resets at once are two files, and the epoch is their count.  Workers
list ``events/`` each step (one listing; a file is read once and cached by name), so a change
reaches every worker within one step, on every host, with no lock and no coordinator.

Pure: no torch, no filesystem.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lse.core.records import id_time, is_id

EVENT_KINDS = ("mutations", "reset")
#: where an event came from (for the reports; no behaviour depends on it)
EVENT_SOURCES = ("command", "launch", "resume")
#: mutations per child accepted (a burst of more would rewrite a small net beyond recognition)
MAX_MUTATIONS_PER_CHILD = 100


#: the times an event may name (unix s: 2000-01-01 and 2200-01-01) and the longest note
EARLIEST, LATEST = 946684800.0, 7258118400.0
MAX_NOTE = 2000


class Event(BaseModel):
    """One change to a running experiment, as saved in ``events/<id>.<kind>.json``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="new_id() of the event: sorts by the time it was written")
    kind: Literal["mutations", "reset"]
    at: float = Field(description="unix s when it takes effect")
    until: float | None = Field(None, description="mutations: unix s when it ends; None: for good")
    mutations_per_child: int | None = Field(None, ge=1, le=MAX_MUTATIONS_PER_CHILD,
                                            description="mutations: the number of mutations per child")
    source: Literal["command", "launch", "resume"] = "command"
    note: str = Field("", max_length=MAX_NOTE, description="why (free text; escaped when printed)")

    @model_validator(mode="after")
    def _check(self) -> "Event":
        if not is_id(self.id):
            raise ValueError(f"event id {self.id!r} is not an id (see lse.core.records.new_id)")
        if not EARLIEST <= self.at <= LATEST or (self.until is not None and not EARLIEST <= self.until <= LATEST):
            # -1e308 passed as "finite" and put every child under a burst of 100 mutations
            raise ValueError("at and until must be times between 2000 and 2200")
        if self.kind == "mutations":
            if self.mutations_per_child is None:
                raise ValueError("a mutations event needs mutations_per_child")
            if self.until is not None and self.until <= self.at:
                raise ValueError(f"until ({self.until}) must come after at ({self.at})")
        elif self.mutations_per_child is not None or self.until is not None:
            raise ValueError("a reset event has no mutations_per_child and no until")
        return self

    def file_name(self) -> str:
        return f"{self.id}.{self.kind}.json"


_NAME = re.compile(r"^(?P<id>[0-9]{8}T[0-9]{12}Z-[0-9a-f]{8})\.(?P<kind>mutations|reset)\.json$")


def parse_event_name(name: str) -> tuple[str, str] | None:
    """``(id, kind)`` of an event file name; None for anything else (temporary files, junk)."""
    m = _NAME.fullmatch(name)
    return (m["id"], m["kind"]) if m else None


# ------------------------------------------------------------------------------------ the fold
@dataclass(frozen=True)
class Live:
    """The settings in force at one moment."""

    mutations_per_child: int
    epoch: int


def mutations_per_child(events: Iterable[Event], base: int, t: float) -> int:
    """Mutations per child at time ``t``: the in-force ``mutations`` event that began last
    (ties: the one written last), else ``base`` (experiment.json)."""
    live = [e for e in events if e.kind == "mutations" and e.at <= t and (e.until is None or t < e.until)]
    if not live:
        return base
    return max(live, key=lambda e: (e.at, e.id)).mutations_per_child or base


def reset_times(events: Iterable[Event]) -> list[float]:
    return sorted(e.at for e in events if e.kind == "reset")


def epoch(events: Iterable[Event], t: float) -> int:
    """Resets at or before ``t``."""
    return sum(1 for at in reset_times(events) if at <= t)


def epoch_of(individual_id: str, events: Iterable[Event]) -> int:
    """The epoch an individual belongs to: that of its birth stamp (the time in its id)."""
    return epoch(events, id_time(individual_id))


def live(events: Sequence[Event], base: int, t: float) -> Live:
    return Live(mutations_per_child(events, base, t), epoch(events, t))


def inherits(parent_ids: Iterable[str], child_id: str, events: Sequence[Event]) -> bool:
    """False when a reset came between a parent's birth and the child's: the child starts
    from fresh weights (every parent must be of the child's epoch)."""
    e = epoch_of(child_id, events)
    return all(epoch_of(p, events) >= e for p in parent_ids)


def stale(individual_id: str, events: Sequence[Event], current_epoch: int) -> bool:
    """True when the individual belongs to an epoch before ``current_epoch``: a reset since
    discarded the weights its fitness was measured with."""
    return current_epoch > 0 and epoch_of(individual_id, events) < current_epoch


# ---------------------------------------------------------------------------- the schedule
_DURATION = re.compile(r"^(?P<n>[0-9]+(?:\.[0-9]+)?)(?P<unit>s|m|h)?$")
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0, None: 60.0}


def parse_duration(text: str) -> float:
    """``"90s"``, ``"30m"``, ``"1.5h"`` (a bare number is minutes) -> seconds."""
    m = _DURATION.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not a duration; write e.g. 90s, 30m or 1.5h (a bare number is minutes)")
    return float(m["n"]) * _UNIT[m["unit"]]


@dataclass(frozen=True)
class Burst:
    """``N@START-END``: N mutations per child from START to END after the experiment began."""

    mutations_per_child: int
    start: float  # seconds after the experiment was created
    end: float


def parse_burst(text: str) -> Burst:
    """``"5@30m-45m"`` -> Burst(5, 1800, 2700).  ValueError saying the format otherwise."""
    hint = "write N@START-END, e.g. 5@30m-45m (5 mutations per child from minute 30 to minute 45)"
    try:
        count, window = text.split("@", 1)
        start, end = window.split("-", 1)
        burst = Burst(int(count), parse_duration(start), parse_duration(end))
    except ValueError as e:
        raise ValueError(f"--mutation-burst {text!r}: {e if 'duration' in str(e) else 'not understood'}; {hint}") from None
    if not 1 <= burst.mutations_per_child <= MAX_MUTATIONS_PER_CHILD:
        raise ValueError(f"--mutation-burst {text!r}: N must be 1..{MAX_MUTATIONS_PER_CHILD}; {hint}")
    if burst.end <= burst.start:
        raise ValueError(f"--mutation-burst {text!r}: END must come after START; {hint}")
    return burst
