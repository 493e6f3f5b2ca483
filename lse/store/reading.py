"""Reading a population's individuals: a parent (record and weights), one record, every record.

What cannot be trusted is quarantined by a writable store, skipped by a read-only one
(:meth:`lse.store.population.Store.quarantine` decides), and never raises out of a listing: a
parent that is gone or malformed is a :class:`~lse.errors.LostRace`, a record that is, is left
out.  One :class:`Reader` per store (``store.reader``); the store's reading methods call it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from lse.core.records import IndividualName, IndividualRecord, is_id
from lse.errors import CorruptIndividual, LostRace
from lse.store.durable import listdir_sorted, path_exists, safetensors_error, weights_from_bytes
from lse.store.paths import RECORD_FILE, WEIGHTS_FILE, parse_gc_name
from lse.store.recordio import killer, parse_record, read_death, structure_problem, warn_foreign, warn_once
from lse.store.saferead import read_bytes

if TYPE_CHECKING:
    from lse.store.population import Entry, Store

__all__ = ["Reader"]

# ESTALE: NFS file handle of a directory that another client renamed or removed.
_GONE = frozenset({errno.ENOENT, errno.ESTALE})


class Reader:
    """The record and weight readers of one store."""

    def __init__(self, store: "Store") -> None:
        self.store = store

    def read_parent(self, entry: Entry) -> tuple[IndividualRecord, dict]:
        """Record and weights of ``entry``.  LostRace if it was killed or collected meanwhile,
        or if it was malformed (then it is quarantined with a warning and the caller retries), or
        unreadable (an I/O error: a warning, left in place)."""
        try:
            record = self.read_record(entry.path)
            wf = self.store.paths.weights_file(entry.path)
            weights = weights_from_bytes(read_bytes(wf, "weights"))  # no symlink, FIFO or sparse giant
            os.lstat(entry.path)  # still alive and in place?  Else the parent changed under us.
        except OSError as e:
            if e.errno in _GONE and not path_exists(entry.path):
                raise LostRace(f"{entry.id} was killed or collected while being read") from None
            # Quarantine only what a second look proves malformed: under libfiu, EISDIR/ENOENT
            # from a failing read() or open() got sound individuals quarantined.
            problem = structure_problem(entry.path, (RECORD_FILE, WEIGHTS_FILE))
            if problem is not None:
                self.store.quarantine(entry.path, problem)
                raise LostRace(f"{entry.id} was malformed and has been quarantined") from None
            # EIO, or a file another user left unreadable: that individual's problem, not the
            # population's.  Skip it like a lost race (the caller draws another tournament); a
            # StoreError here made the worker exit as if misconfigured and the launcher stop.
            why = os.strerror(e.errno or 0)
            warn_once(f"unreadable:{entry.path}", f"cannot read {entry.path} ({why}); skipping it as a parent")
            raise LostRace(f"{entry.id} could not be read ({why})") from None
        except CorruptIndividual as e:
            self.store.quarantine(entry.path, e.message)
            raise LostRace(f"{entry.id} was malformed and has been quarantined") from None
        except safetensors_error() as e:
            self.store.quarantine(entry.path, f"weights are not valid safetensors ({e})")
            raise LostRace(f"{entry.id} was malformed and has been quarantined") from None
        return record, weights

    def read_record(self, individual_dir: Path) -> IndividualRecord:
        """Parse and validate record.json (raises CorruptIndividual, OSError)."""
        st = os.lstat(individual_dir)
        if not stat.S_ISDIR(st.st_mode):
            raise CorruptIndividual(f"{individual_dir.name!r} is not a folder")
        rf = self.store.paths.record_file(individual_dir)
        if stat.S_ISLNK(os.lstat(rf).st_mode):
            raise CorruptIndividual(f"{rf} is a symlink")
        return parse_record(read_bytes(rf, "record"), str(rf), IndividualName.parse(individual_dir.name))

    def records(self) -> list[IndividualRecord]:
        """Every individual that ever lived (alive, dead, collected), one per id, sorted by id.

        Unreadable individuals are quarantined with a warning and left out.
        """
        by_id: dict[str, IndividualRecord] = {}
        deaths: dict[str, dict] = {}
        foreign: list[str] = []
        for name, path in listdir_sorted(self.store.paths.history):
            if name.endswith(".death.json") and is_id(name[: -len(".death.json")]):
                death = read_death(path)
                if death is not None:
                    deaths[name[: -len(".death.json")]] = death
            elif name.endswith(".weights.safetensors") and is_id(name[: -len(".weights.safetensors")]):
                continue  # weights kept for reports (Store.gc)
            elif name.endswith(".json") and is_id(name[:-5]):
                rec = self._read_history_record(path)
                if rec is not None:
                    by_id[name[:-5]] = rec
            elif not name.startswith("."):
                foreign.append(name)
        if foreign:
            warn_foreign(self.store.paths.history, foreign, "not a record")
        # A folder mid-collection (gc/<id>.<wid>) still holds the record if history lacks it.
        for name, path in listdir_sorted(self.store.paths.gc):
            parsed = parse_gc_name(name)
            if parsed and parsed[0] == "individual" and parsed[1] not in by_id:
                rec = self._read_gc_record(path)
                if rec is not None:
                    by_id[rec.id] = rec
        for e in self.store.entries():
            rec = self.read_entry_record(e)
            if rec is not None:
                by_id[e.id] = rec
        out = []
        for i in sorted(by_id):
            rec = by_id[i]
            if i in deaths and rec.state == "dead":
                rec = rec.model_copy(update=deaths[i])
            out.append(rec)
        return out

    def record(self, individual_id: str) -> IndividualRecord | None:
        """One individual's record by id, as :meth:`records` gives it (alive, dead, collected),
        reading only that individual's files: a worker checking ``max_flops`` asks for each new
        birth, and records() would read all 20k of them each step.

        history/<id>.json first (one open: most individuals of a long run are collected), then
        individuals/ (one listing), gc/, history/ again: the order an individual moves in, so one
        collected during the look is still found.  None: no such individual, or unreadable
        (malformed ones are quarantined, as by records()).
        """
        if not is_id(individual_id):
            return None
        history = self.store.paths.history_record(individual_id)
        rec = self._read_history_record(history)
        if rec is None:
            entry = self.store.find(individual_id)
            if entry is not None:
                rec = self.read_entry_record(entry)
        if rec is None:
            for name, path in listdir_sorted(self.store.paths.gc):
                parsed = parse_gc_name(name)
                if parsed and parsed[0] == "individual" and parsed[1] == individual_id:
                    rec = self._read_gc_record(path)
        if rec is None:
            rec = self._read_history_record(history)
        if rec is None or rec.state != "dead":
            return rec
        death = read_death(self.store.paths.history_death(individual_id))
        return rec if death is None else rec.model_copy(update=death)

    def read_entry_record(self, e: Entry) -> IndividualRecord | None:
        """The record of an individual listed in individuals/, with the state and killer its
        name gives; None if it moved on during the listing, or is unreadable or malformed
        (then quarantined)."""
        try:
            rec = self.read_record(e.path)
        except FileNotFoundError:
            return None  # killed/collected during the listing; seen in history next time
        except CorruptIndividual as err:
            self.store.quarantine(e.path, err.message)
            return None
        except OSError as err:  # quarantined only if a second look proves it malformed
            problem = structure_problem(e.path, (RECORD_FILE,))
            if problem is not None:
                self.store.quarantine(e.path, problem)
            else:
                warn_once(f"unreadable:{e.path}", f"cannot read {e.path} ({os.strerror(err.errno or 0)}); left out")
            return None
        if rec.id != e.id:
            self.store.quarantine(e.path, f"record id {rec.id} does not match the folder name")
            return None
        return rec.model_copy(update={"state": e.state, "killed_by": killer(rec, e.by)})

    def _read_gc_record(self, gc_dir: Path) -> IndividualRecord | None:
        """The record in a folder being collected (gc/<id>.<wid>); None once it is gone."""
        try:
            return self.read_record(gc_dir).model_copy(update={"state": "dead", "collected": True})
        except (OSError, CorruptIndividual):
            return None  # being collected right now; history will have it

    def _read_history_record(self, path: Path) -> IndividualRecord | None:
        """history/<id>.json; None if absent, quarantined if malformed."""
        try:
            return parse_record(read_bytes(path, "record"), str(path), None).model_copy(
                update={"collected": True, "state": "dead"}
            )
        except FileNotFoundError:
            return None
        except CorruptIndividual as e:
            self.store.quarantine(path, e.message)
            return None

    def load_weights(self, individual_id: str) -> dict | None:
        """The weights of an individual wherever they are (alive, dead, or kept by GC);
        None when they were collected.  Only reports read dead individuals' weights."""
        entry = self.store.find(individual_id)
        candidates = [self.store.paths.weights_file(entry.path)] if entry is not None else []
        candidates.append(self.store.paths.history_weights(individual_id))
        for path in candidates:
            try:
                return weights_from_bytes(read_bytes(path, "weights"))
            except FileNotFoundError:
                continue  # killed and collected meanwhile: look in history/
            except safetensors_error() as e:
                raise CorruptIndividual(f"{path}: weights are not valid safetensors ({e})") from None
        return None
