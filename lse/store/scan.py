"""One read-only scan of a population's names: who was ever born, and where each one is now.

An individual moves ``individuals/`` -> ``gc/`` -> ``history/`` (lse.store.population), each step
one rename, and its state is in its names.  :class:`PopulationScan` lists the three folders in
that order (one that moves during the scan is still seen), from names only -- no file is read --
and parses each name once: a scan kept between calls parses only the names that appeared since
the last one (history/ grows by two files per kill, forever; parsing 50k names every step cost a
worker 1.6 s on a loaded 2-core machine).  Its answer is exactly that of a fresh scan.

Birth counting (every worker's stop and initial-population decisions, the launcher's progress,
``lse status``) and the dashboard's reader use it, so they agree on what a name means: a symlink
is never an individual, a foreign name is nobody's.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from lse.core.records import IndividualName, is_id, is_worker_id
from lse.store.paths import PopulationPaths

__all__ = ["PopulationScan", "ScanChanges", "history_entry"]

FOLDERS = ("individuals", "gc", "history")


def history_entry(name: str) -> tuple[str, str] | None:
    """history/<id>.json -> ("record", id); <id>.death.json -> ("death", id);
    <id>.weights.safetensors -> ("weights", id); anything else None."""
    for suffix, kind in ((".death.json", "death"), (".weights.safetensors", "weights"), (".json", "record")):
        if name.endswith(suffix) and is_id(name[: -len(suffix)]):
            return kind, name[: -len(suffix)]
    return None


def _is_link(path: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False  # gone meanwhile: the next listing drops it


def _listing(path: Path, known: dict, grows: bool) -> dict[str, bool]:
    """The folder's names, each with whether it is a symlink.  Folders of about the population's
    size are read with scandir (the entry's type comes with its name); history/ only grows, so it
    is listed by name and only the names not seen before are checked, one lstat each.  Measured
    on this project's 2-core machine: scandir of 1,000 names 0.65 ms against listdir's 0.60, one
    lstat per new name 2.7 us (7 us through Path); with 100 workers every worker sees about
    four new names per birth."""
    try:
        if not grows:
            with os.scandir(path) as it:
                return {e.name: e.is_symlink() for e in it}
        base = os.fspath(path) + os.sep
        return {n: (_is_link(base + n) if n not in known else False) for n in os.listdir(path)}
    except (FileNotFoundError, NotADirectoryError):
        return {}


def _gc_entry(name: str) -> str | None:
    """gc/<id>.<collector> -> id (an individual being collected); anything else None."""
    head, _, collector = name.partition(".")
    return head if is_id(head) and is_worker_id(collector) else None


@dataclass
class ScanChanges:
    """Names that appeared in, and left, each folder since the previous scan, each with what the
    scan parsed it as (None: foreign, or a symlink), so no reader parses a name twice."""

    added: dict[str, dict] = field(default_factory=lambda: {f: {} for f in FOLDERS})
    removed: dict[str, dict] = field(default_factory=lambda: {f: {} for f in FOLDERS})


class PopulationScan:
    """The names of one population, parsed (``None``: foreign, or a symlink, which is never an
    individual).  Not thread-safe: one per reader."""

    def __init__(self, paths: PopulationPaths) -> None:
        self.paths = paths
        self.individuals: dict[str, IndividualName | None] = {}
        self.gc: dict[str, str | None] = {}
        self.history: dict[str, tuple[str, str] | None] = {}
        self._history_records: set[str] = set()

    def refresh(self) -> ScanChanges:
        """List individuals/, gc/ and history/ (in that order) and parse the new names."""
        changes = ScanChanges()
        self._update("individuals", self.individuals, self.paths.individuals, changes, IndividualName.parse)
        self._update("gc", self.gc, self.paths.gc, changes, _gc_entry)
        self._update("history", self.history, self.paths.history, changes, history_entry)
        for v in changes.removed["history"].values():  # kept up to date, never rebuilt: history/
            if v is not None and v[0] == "record":    # grows by two names per kill
                self._history_records.discard(v[1])
        for v in changes.added["history"].values():
            if v is not None and v[0] == "record":
                self._history_records.add(v[1])
        return changes

    @staticmethod
    def _update(folder: str, known: dict, path: Path, changes: ScanChanges, parse) -> None:
        """One listing; a new name is parsed, and checked for a symlink, once."""
        current = _listing(path, known, grows=folder == "history")
        for name in known.keys() - current.keys():
            changes.removed[folder][name] = known.pop(name)
        for name in current.keys() - known.keys():
            known[name] = changes.added[folder][name] = None if current[name] else parse(name)

    def births(self) -> set[str]:
        """Ids of every individual ever published (alive, dead, being collected, collected), as
        the last :meth:`refresh` saw them."""
        ids = {p.id for p in self.individuals.values() if p is not None}
        ids.update(i for i in self.gc.values() if i is not None)
        ids |= self._history_records
        return ids
