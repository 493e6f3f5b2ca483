"""The population's ``events/`` folder: changes made to a running experiment (mutation bursts,
weight resets; their meaning is the pure fold of :mod:`lse.core.events`).

Each event is one small JSON file, written privately (``events/.tmp-<hex>``, dot-prefixed so
no reader takes it), fsynced, then published by ONE ``link`` to ``events/<id>.<kind>.json``
(``link`` fails when the name exists: an event scheduled at launch has an id derived from its
content, so launching again with the same schedule records it once).  Events are never changed
or removed; a reader lists the folder and reads each file once, caching it by name.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import time
from datetime import datetime, timezone

from lse.core.events import Event, parse_event_name
from lse.core.records import new_id
from lse.errors import CorruptIndividual, StoreError
from lse.store.durable import fsync_dir, unlink_quiet, write_file
from lse.store.population import Store
from lse.store.saferead import read_json

log = logging.getLogger("lse.store.events")


def content_id(kind: str, at: float, until: float | None, value: int | None) -> str:
    """A deterministic event id for a scheduled event: its start time (sorts like new_id) and
    8 hex digits of its content, so the same schedule given twice names the same file."""
    stamp = datetime.fromtimestamp(at, tz=timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    digest = hashlib.sha256(json.dumps([kind, at, until, value]).encode()).hexdigest()[:8]
    return f"{stamp}-{digest}"


class EventLog:
    """Read and publish the events of one population."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.paths = store.paths
        self._cache: dict[str, Event] = {}  # file name -> event; a failed read is not cached
        self._warned: set[str] = set()

    def read(self) -> list[Event]:
        """Every event, sorted by id (one listing; files not seen before are read once).  A
        malformed file is skipped with one warning: it changes nothing, as if never written.
        A file that failed is read again next time (a read that failed once, on an I/O error or
        mid-write, was cached as nothing, and workers then disagreed on the weight epoch)."""
        try:
            names = os.listdir(self.paths.events)
        except (FileNotFoundError, NotADirectoryError):
            return []
        out = []
        for name in names:
            if parse_event_name(name) is None:
                continue
            ev = self._cache.get(name)
            if ev is None:
                ev = self._load(name)
                if ev is not None:
                    self._cache[name] = ev
            if ev is not None:
                out.append(ev)
        return sorted(out, key=lambda e: e.id)

    def _load(self, name: str) -> Event | None:
        path = self.paths.event(name)
        try:
            # no symlink, no FIFO, at most CAPS["event"] bytes, bounded nesting
            ev = Event.model_validate(read_json(path, "event"))
            if ev.file_name() != name:
                raise ValueError(f"its content says {ev.file_name()}")
            return ev
        except FileNotFoundError:
            return None
        except (OSError, ValueError, CorruptIndividual) as e:  # ValidationError is a ValueError
            if name not in self._warned:  # one warning per file, however often it is retried
                self._warned.add(name)
                log.warning("ignoring event %s: %s", path, (str(e).splitlines() or [""])[0][:300])
            return None

    def publish(self, event: Event) -> bool:
        """Write ``event`` privately and publish it by one link; False when an event of that
        name already exists (a schedule given again)."""
        try:
            self.paths.events.mkdir(exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create {self.paths.events}: {e.strerror}",
                             "check the population's permissions and free space") from None
        tmp = self.paths.event_tmp()
        dst = self.paths.event(event.file_name())
        try:
            write_file(tmp, (event.model_dump_json(indent=1) + "\n").encode())
            try:
                os.link(tmp, dst)
            except FileExistsError:
                return False
            fsync_dir(self.paths.events)
            return True
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StoreError(f"no space left to record the event in {self.paths.events}", "free some space and run the command again") from None
            raise StoreError(f"cannot write {dst}: {e.strerror}", "check the population's permissions") from None
        finally:
            unlink_quiet(tmp)

    # -- the commands ------------------------------------------------------------------------
    def set_mutations(self, n: int, *, duration: float | None = None, source: str = "command",
                      now: float | None = None, note: str = "") -> Event:
        """From now (for ``duration`` seconds, or for good) every child gets ``n`` mutations."""
        now = time.time() if now is None else now
        ev = Event(id=new_id(), kind="mutations", at=now, until=None if duration is None else now + duration,
                   mutations_per_child=n, source=source, note=note)
        self.publish(ev)
        return ev

    def schedule_mutations(self, n: int, start: float, end: float, *, source: str = "launch") -> Event:
        """A burst at absolute times (unix s); recorded once however often it is scheduled."""
        ev = Event(id=content_id("mutations", start, end, n), kind="mutations", at=start, until=end,
                   mutations_per_child=n, source=source)
        self.publish(ev)
        return ev

    def reset(self, *, at: float | None = None, source: str = "command", note: str = "") -> Event:
        """A population-wide weight reset now (or at ``at``, scheduled: recorded once)."""
        if at is None:
            ev = Event(id=new_id(), kind="reset", at=time.time(), source=source, note=note)
        else:
            ev = Event(id=content_id("reset", at, None, None), kind="reset", at=at, source=source, note=note)
        self.publish(ev)
        return ev
