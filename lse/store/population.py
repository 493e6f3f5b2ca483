"""The population directory: paths, atomic transitions, records, garbage collection, recovery.

The paper's workers never talk to each other (section 3.1): the population is a directory on a
shared filesystem, each individual a directory whose *name* carries its id, state and fitness
(footnote 2), and every transition is ONE atomic ``rename``:

    birth  workers/<wid>/child-<id>/       -> individuals/<id>.alive.<acc>/
           (a failed child is born dead:   -> individuals/<id>.dead.none.<wid>/)
    kill   individuals/<id>.alive.<acc>/   -> individuals/<id>.dead.<acc>.<killer-wid>/
    GC     individuals/<id>.dead.<acc>.*/  -> gc/<id>.<collector-wid>/   then history/<id>.json,
                                                                          then rmtree

A rename whose source is gone (``ENOENT``/``ESTALE``) lost a race to another worker: an ordinary
outcome (``False`` / :class:`LostRace`), never an error.  Every destination name is unique to
the worker doing the rename (the killer's id is in a dead name, the collector's in a GC name),
so when NFS loses a rename's reply and the retransmission fails, "destination exists and source
is gone" proves that *this* worker won.

Files are written privately (inside ``workers/<wid>/``), fsynced with their directory, then
published by rename: a reader never sees a partial individual, and a crash at any point leaves
either the old or the new state plus private leftovers that :meth:`Store.recover` reclaims.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


from lse.config import ExperimentConfig
from lse.errors import LostRace, StoreError
from lse.store import experiment
from lse.store.collect import Collector, GCReport
from lse.store.durable import (
    write_error,
    dumps,
    fsync_dir,
    path_exists,
    remove_tree,
    save_weights,
    unlink_quiet,
    write_file,
)
from lse.store.reading import Reader
from lse.store.liveness import Liveness, RecoverReport, WorkerHandle
from lse.store.paths import RECORD_FILE, WEIGHTS_FILE, PopulationPaths
from lse.store.recordio import (
    validate_dna,
    warn_foreign,
    warn_once,
)
from lse.core.records import (
    IndividualName,
    IndividualRecord,
    State,
    format_fitness,
    is_id,
    new_id,
)

__all__ = [
    "RECORD_FILE",
    "WEIGHTS_FILE",
    "Entry",
    "GCReport",
    "IndividualRecord",
    "PopulationPaths",
    "RecoverReport",
    "Store",
    "WorkerHandle",
    "new_id",
    "remove_tree",
    "save_weights",
]

log = logging.getLogger("lse.store.population")

# ESTALE: NFS file handle of a directory that another client renamed or removed.
_GONE = frozenset({errno.ENOENT, errno.ESTALE})


# --------------------------------------------------------------------------------------------
# paths


# --------------------------------------------------------------------------------------------
# low-level durable writes


# --------------------------------------------------------------------------------------------
# public value types


@dataclass(frozen=True)
class Entry:
    """One individual as seen in a directory listing (no file was read)."""

    id: str
    fitness: float | None
    state: State
    path: Path
    by: str | None = None

    @property
    def name(self) -> IndividualName:
        return IndividualName(self.id, self.state, self.fitness, self.by)


# --------------------------------------------------------------------------------------------
# the store


class Store:
    """A population directory shared by many workers on many hosts, without locks.

    ``rename`` is injectable so tests can simulate an NFS rename that succeeded but reported
    failure.  ``stale_after`` is how long (reader's monotonic seconds) a heartbeat of a worker on
    another host may stay unchanged before its leftovers are reclaimed.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        stale_after: float = 120.0,
        rename: Callable[[os.PathLike, os.PathLike], None] = os.rename,
        host: str | None = None,
        read_only: bool = False,
    ) -> None:
        self.paths = PopulationPaths(root)
        self.root = self.paths.root
        self.stale_after = stale_after
        self._rename_fn = rename
        self.host = host or socket.gethostname()
        #: a reader that must change nothing (``lse status``, the dashboard): malformed entries
        #: are skipped with a warning instead of quarantined, and no worker can be registered
        self.read_only = read_only
        self._worker: WorkerHandle | None = None
        self._config: ExperimentConfig | None = None
        #: the store's jobs beside listing, transitions and reading (one module each)
        self.collector = Collector(self)
        self.liveness = Liveness(self)
        self.reader = Reader(self)

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()

    # ---- errors -------------------------------------------------------------------------

    def os_error(self, e: OSError, what: str) -> Exception:
        """Map an OSError met while writing to the typed error a user can act on."""
        return write_error(self.root, e, what)

    # ---- experiment (lse.store.experiment) ----------------------------------------------

    def create(self, config: ExperimentConfig) -> ExperimentConfig:
        """Create the layout and write experiment.json once; the configuration in force (the
        winner's, when two launchers race: :func:`lse.store.experiment.create`)."""
        experiment.create(self.paths, config)
        self._config = None
        return self.config

    def replace_config(self, config: ExperimentConfig, *, force: bool = False) -> None:
        """Replace experiment.json with ``config``; without ``force`` only the stop conditions
        may change (:func:`lse.store.experiment.replace`)."""
        experiment.replace(self.paths, self.config, config, force=force)
        self._config = None

    def open(self) -> "Store":
        """Check that ``root`` is a population (raises StoreError saying what to do)."""
        if not self.root.is_dir():
            raise StoreError(f"no population at {self.root}", "create one with `python -m lse.runners.launch --pop DIR`")
        missing = [p.name for p in (self.paths.experiment, self.paths.individuals) if not p.exists()]
        if missing:
            raise StoreError(
                f"{self.root} is not a population (missing {', '.join(missing)})",
                "pass the folder that holds experiment.json and individuals/",
            )
        for d in self.paths.folders:  # folders added by newer layouts; harmless when read-only
            if not d.exists() and not self.read_only:
                try:
                    d.mkdir(exist_ok=True)
                except OSError:
                    pass
        _ = self.config
        return self

    @property
    def config(self) -> ExperimentConfig:
        """experiment.json, read once (:func:`lse.store.experiment.read_config`)."""
        if self._config is None:
            self._config = experiment.read_config(self.paths)
        return self._config

    # ---- workers ------------------------------------------------------------------------

    @property
    def worker(self) -> WorkerHandle:
        """This process's registered worker (registered on first use)."""
        if self._worker is None:
            self.register_worker(auto_heartbeat=True)
        assert self._worker is not None
        return self._worker

    @property
    def current_worker(self) -> WorkerHandle | None:
        """This process's registered worker, None before one registers (never registers one)."""
        return self._worker

    def worker_closed(self, handle: WorkerHandle) -> None:
        """Called by ``handle.close()``: this store has no registered worker any more."""
        if self._worker is handle:
            self._worker = None

    def register_worker(
        self, worker_id: str | None = None, *, auto_heartbeat: bool = True, heartbeat_seconds: float = 5.0
    ) -> WorkerHandle:
        """This process's worker: ``workers/<wid>/`` with a first heartbeat
        (:meth:`lse.store.liveness.Liveness.register`)."""
        if self.read_only:
            raise StoreError("this store was opened read-only; it cannot register a worker")
        self._worker = self.liveness.register(worker_id, auto_heartbeat=auto_heartbeat,
                                              heartbeat_seconds=heartbeat_seconds)
        return self._worker

    # ---- listing ------------------------------------------------------------------------

    def entries(self, state: State | None = None) -> list[Entry]:
        """Individuals in ``individuals/`` from ONE directory listing, no file reads, sorted by id.

        Foreign names are ignored with one warning each (gc() quarantines them); symlinks are
        never individuals (a link could point out of the population).
        """
        out: list[Entry] = []
        foreign: list[str] = []
        try:
            it = os.scandir(self.paths.individuals)
        except FileNotFoundError:
            raise StoreError(f"{self.paths.individuals} does not exist", "is --pop a population folder?") from None
        except OSError as e:
            raise StoreError(f"cannot list {self.paths.individuals}: {os.strerror(e.errno or 0)}") from None
        with it:
            for de in it:
                parsed = IndividualName.parse(de.name)
                if parsed is None:
                    foreign.append(de.name)
                    continue
                if de.is_symlink():  # d_type from the listing: no extra syscall on local disks
                    warn_once(f"symlink:{de.path}", f"ignoring symlink {de.name!r} (`lse gc` quarantines it)")
                    continue
                if state is not None and parsed.state != state:
                    continue
                out.append(Entry(parsed.id, parsed.fitness, parsed.state, Path(de.path), parsed.by))
        if foreign:
            warn_foreign(self.paths.individuals, foreign, "`lse gc` quarantines it")
        out.sort(key=lambda e: e.id)
        return out

    def list_alive(self) -> list[Entry]:
        """Alive individuals: one ``scandir`` of individuals/, no per-entry reads (250 workers
        list this every step)."""
        return self.entries("alive")

    def find(self, individual_id: str) -> Entry | None:
        for e in self.entries():
            if e.id == individual_id:
                return e
        return None

    # ---- transitions --------------------------------------------------------------------

    def rename(self, src: Path, dst: Path) -> bool:
        """One atomic rename.  True: we did it.  False: the source was gone (lost race).

        NFS: if the reply to a successful rename is lost, the client retransmits and the
        retransmission fails (ENOENT).  Destinations are unique to this worker, so "destination
        exists and source gone" after an error means the first transmission won.
        """
        try:
            self._rename_fn(src, dst)
            return True
        except OSError as e:
            if path_exists(dst) and not path_exists(src):
                return True
            if e.errno in _GONE:
                return False
            raise

    def kill(self, entry: Entry) -> bool:
        """alive -> dead by one rename.  False when another worker killed (or collected) it first.

        The winner then records when and by whom in history/<id>.death.json so that the
        death time survives garbage collection.
        """
        if entry.state != "alive":
            return False
        me = self.worker.id
        dst = self.paths.individual(IndividualName(entry.id, "dead", entry.fitness, me))
        if path_exists(dst):
            # We killed it before (from a stale listing).  Checked first, or the lost-reply rule
            # in rename would count this second attempt as a second win.
            return False
        try:
            if not self.rename(entry.path, dst):
                return False
        except OSError as e:
            raise self.os_error(e, f"kill {entry.id}") from None
        try:  # a kill the killer acts on (its child takes the slot) must survive a crash
            fsync_dir(self.paths.individuals)
        except OSError as e:  # the rename stands: only its durability is in doubt
            warn_once(f"fsync-kill:{entry.id}", f"killed {entry.id} but could not fsync {self.paths.individuals}: {e}")
        try:
            self.publish_file(
                self.paths.history_death(entry.id),
                {"id": entry.id, "killed_at": time.time(), "killed_by": me},
                "death",
            )
        except (OSError, StoreError, LostRace) as e:  # the kill itself stands; only its time is lost
            warn_once(f"death:{entry.id}", f"killed {entry.id} but could not record its death time: {e}")
        return True

    def publish(self, record: IndividualRecord, state_dict: dict | None, alive: bool = True) -> Entry:
        """Birth by one rename from this worker's scratch into individuals/.

        ``alive=False`` publishes a failed child dead (record.failed_reason says why).  Files are
        written and fsynced privately first; on ENOSPC/EDQUOT nothing is published, the scratch
        is removed and DiskFull is raised.
        """
        w = self.worker
        if alive and record.fitness is None:
            raise ValueError("an alive individual needs a fitness (publish a failed child with alive=False)")
        rec = record.model_copy(
            update={
                "state": "alive" if alive else "dead",
                "worker": record.worker or w.id,
                "host": record.host or self.host,
                "born_at": record.born_at if record.born_at is not None else time.time(),
            }
        )
        IndividualRecord.model_validate(rec.model_dump(mode="json"))  # validators on updated fields
        validate_dna(rec.dna, rec.genome)  # never publish what every reader would quarantine
        fitness = None if rec.fitness is None else float(format_fitness(rec.fitness))
        name = IndividualName(rec.id, "alive", fitness) if alive else IndividualName(rec.id, "dead", fitness, w.id)
        child = self.paths.child(w.id, rec.id)
        dst = self.paths.individual(name)
        try:
            if path_exists(child) and not remove_tree(child):
                raise StoreError(f"cannot remove the old scratch {child}", "check this worker's folder permissions")
            w.dir.mkdir(exist_ok=True)  # recreated if a recoverer wrongly took our folder
            child.mkdir()
            if state_dict is not None:
                write_file(self.paths.weights_file(child), save_weights(state_dict))
            write_file(self.paths.record_file(child), dumps(rec.model_dump(mode="json")))
            fsync_dir(child)
            if not self.rename(child, dst):
                raise LostRace(f"scratch of {rec.id} vanished before its birth (this worker was reclaimed?)")
            fsync_dir(self.paths.individuals)
        except OSError as e:
            remove_tree(child)
            raise self.os_error(e, f"publish {rec.id}") from None
        except BaseException:
            remove_tree(child)
            raise
        return Entry(name.id, name.fitness, name.state, dst, name.by)

    def adopt(self, folder: Path, name: IndividualName) -> bool:
        """Move a complete individual folder written elsewhere in the population (a child of a
        generation, lse.generations) into individuals/ as ``name``: one rename, then fsync.

        True: it is in individuals/ now (moved by us or by another worker).  False: the source
        is gone and the destination is not there (moved and since collected, or quarantined).  The
        destination is the same for every worker that moves this folder (the caller takes it
        from a plan), so after a lost NFS reply "destination exists, source gone" may also be
        another worker's win: both outcomes are the same state, which is what makes the move
        idempotent.  The caller has checked that the folder's record id is ``name.id``.
        """
        dst = self.paths.individual(name)
        try:
            if not self.rename(folder, dst):
                return path_exists(dst)
            fsync_dir(self.paths.individuals)
        except OSError as e:
            raise self.os_error(e, f"move {name.id} into individuals/") from None
        return True

    def publish_file(self, dst: Path, obj: object, label: str) -> None:
        """Write a small JSON file privately, fsync, rename into place (overwrites)."""
        tmp = self.paths.private_file(self.worker.id, label)
        try:
            write_file(tmp, dumps(obj))
            if not self.rename(tmp, dst):  # our private file vanished: folder reclaimed
                raise LostRace(f"private copy of {dst.name} vanished (was this worker reclaimed as dead?)")
            fsync_dir(dst.parent)
        except OSError as e:
            unlink_quiet(tmp)
            raise self.os_error(e, f"write {dst.name}") from None

    # ---- reading (lse.store.reading) ------------------------------------------------------

    def read_parent(self, entry: Entry) -> tuple[IndividualRecord, dict]:
        """Record and weights of an alive ``entry``; LostRace if it is gone or malformed."""
        return self.reader.read_parent(entry)

    def read_record(self, individual_dir: Path) -> IndividualRecord:
        """Parse and validate an individual folder's record.json (CorruptIndividual, OSError)."""
        return self.reader.read_record(individual_dir)

    def records(self) -> list[IndividualRecord]:
        """Every individual that ever lived, one per id, sorted by id."""
        return self.reader.records()

    def record(self, individual_id: str) -> IndividualRecord | None:
        """One individual's record wherever it is (alive, dead, collected); None if unknown."""
        return self.reader.record(individual_id)

    def read_entry_record(self, e: Entry) -> IndividualRecord | None:
        """The record of a listed entry; None when it moved or was quarantined."""
        return self.reader.read_entry_record(e)

    def load_weights(self, individual_id: str) -> dict | None:
        """An individual's weights wherever they are; None when they were collected."""
        return self.reader.load_weights(individual_id)


    # ---- garbage collection and recovery (lse.store.collect, lse.store.liveness) -----------

    def gc(self) -> GCReport:
        """Collect dead individuals into history/ (:meth:`lse.store.collect.Collector.gc`)."""
        return self.collector.gc()

    def recover(self) -> RecoverReport:
        """Reclaim leftovers of crashed workers (:meth:`lse.store.liveness.Liveness.recover`)."""
        return self.liveness.recover()

    def is_dead_worker(self, worker_id: str) -> bool | None:
        """True: provably dead; False: alive; None: not known yet (lse.store.liveness)."""
        return self.liveness.is_dead_worker(worker_id)

    def heartbeat_of(self, worker_id: str) -> dict | None:
        """A worker's heartbeat, checked and bounded; None when absent or malformed."""
        return self.liveness.heartbeat_of(worker_id)

    # ---- quarantine --------------------------------------------------------------------

    def quarantine(self, path: Path, reason: str, quiet: bool = False) -> bool:
        """Move a malformed entry aside (one rename; the rename never follows a symlink) and
        write a reason file.  False when someone else moved it first, or when this store is
        read-only (then the entry is only skipped: a worker or `lse gc` quarantines it)."""
        if self.read_only:
            warn_once(f"skip:{path}", f"skipping malformed {path.name!r} ({reason.replace(chr(10), ' ')}); "
                       "a worker or `lse gc` quarantines it")
            return False
        label = path.name if (is_id(path.name.split(".")[0]) and "\n" not in path.name) else "foreign"
        label = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)[:120]
        dst = self.paths.quarantined(label)
        try:
            if not self.rename(path, dst):
                return False
        except OSError as e:
            warn_once(f"quarantine:{path}", f"could not quarantine {path.name!r} ({reason}): {e}")
            return False
        if not quiet:
            log.warning("quarantined %r: %s (moved to %s)", path.name, reason.replace("\n", " "), dst)
        try:
            write_file(Path(f"{dst}.reason.txt"), f"original name: {path.name!r}\nreason: {reason}\n".encode())
        except OSError:
            pass  # the move is what matters; the reason is also in the log
        return True

    # ---- stop file ---------------------------------------------------------------------

    def request_stop(self, reason: str = "stop requested") -> None:
        tmp = self.root / f".STOP.{secrets.token_hex(6)}.tmp"
        try:
            write_file(tmp, (reason + "\n").encode())
            os.rename(tmp, self.paths.stop)
            fsync_dir(self.root)  # "stop requested" must not vanish in a crash after it was said
        except OSError as e:
            unlink_quiet(tmp)
            raise self.os_error(e, "write the STOP file") from None

    def stop_requested(self) -> bool:
        """One stat: cheap enough to poll between training steps."""
        return os.path.lexists(self.paths.stop)

    def clear_stop(self) -> None:
        unlink_quiet(self.paths.stop)


# --------------------------------------------------------------------------------------------
# helpers


