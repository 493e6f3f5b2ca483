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
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from lse.config import ExperimentConfig
from lse.errors import ConfigError, CorruptIndividual, DiskFull, LostRace, StoreError
from lse.store.durable import (
    dumps,
    fsync_dir,
    listdir_sorted,
    path_exists,
    remove_tree,
    safetensors_error,
    save_weights,
    scandir_entries,
    unlink_quiet,
    weights_from_bytes,
    write_file,
)
from lse.store.paths import HEARTBEAT_FILE, RECORD_FILE, WEIGHTS_FILE, PopulationPaths, checked_wid, parse_gc_name
from lse.store.recordio import (
    LISTED,
    PID_NAMESPACE,
    foreign_reason,
    heartbeat_fields,
    killer,
    parse_record,
    read_death,
    structure_problem,
    validate_dna,
    warn_foreign,
    warn_once,
)
from lse.store.saferead import UnsafeFile, read_bytes, read_json
from lse.core.records import (
    IndividualName,
    IndividualRecord,
    State,
    format_fitness,
    is_id,
    is_worker_id,
    new_id,
)

__all__ = [
    "Entry",
    "GCReport",
    "IndividualRecord",
    "PopulationPaths",
    "RecoverReport",
    "Store",
    "WorkerHandle",
    "new_id",
]

log = logging.getLogger("lse.store.population")

# ESTALE: NFS file handle of a directory that another client renamed or removed.
_GONE = frozenset({errno.ENOENT, errno.ESTALE})
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_DENIED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


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


@dataclass
class GCReport:
    collected: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    lost: int = 0  # entries another collector took first


@dataclass
class RecoverReport:
    workers_reclaimed: list[str] = field(default_factory=list)
    gc_finished: list[str] = field(default_factory=list)


class WorkerHandle:
    """A registered worker: its private folder ``workers/<wid>/`` and heartbeat.

    The heartbeat lets workers on *other* hosts tell that this one is alive: a counter it bumps
    every ``heartbeat_seconds`` (a daemon thread does it unless ``auto_heartbeat=False``).
    Readers judge staleness on their own monotonic clock, never by comparing clocks.
    """

    def __init__(self, store: "Store", worker_id: str, host: str, pid: int, create_time: float) -> None:
        self.store = store
        self.id = worker_id
        self.host = host
        self.pid = pid
        self.create_time = create_time
        self.counter = 0
        self.dir = store.paths.worker(worker_id)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def heartbeat(self) -> None:
        """Bump the counter and publish heartbeat.json (private-then-rename)."""
        with self._lock:
            self.counter += 1
            body = {
                "host": self.host,
                "pid": self.pid,
                "create_time": self.create_time,
                "counter": self.counter,
                "wall_time": time.time(),  # informational only: never compared across hosts
                # Two containers with host networking share a host name but not a pid space:
                # the pid namespace tells readers whether the process table is comparable.
                "pid_namespace": PID_NAMESPACE,
            }
            tmp = self.store.paths.private_file(self.id, "heartbeat")
            try:
                write_file(tmp, dumps(body))
                os.rename(tmp, self.dir / HEARTBEAT_FILE)
            except OSError as e:
                unlink_quiet(tmp)
                raise self.store.os_error(e, "write the heartbeat") from None

    def start_heartbeat(self, every_seconds: float) -> None:
        def beat() -> None:
            while not self._stop.wait(every_seconds):
                try:
                    self.heartbeat()
                except (OSError, StoreError) as e:  # keep beating; the main loop reports errors
                    warn_once(f"heartbeat:{self.id}", f"worker {self.id}: heartbeat failed: {e}")

        self._thread = threading.Thread(target=beat, name=f"heartbeat-{self.id}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the heartbeat and remove the private folder (rename into gc/, then delete)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.store._reclaim_worker(self.id, collector=self.id)
        if self.store._worker is self:
            self.store._worker = None


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
        # worker id -> (heartbeat token, monotonic time this reader first saw that token)
        self._observations: dict[str, tuple[object, float]] = {}

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
        if e.errno in _FULL:
            return DiskFull(
                f"no space left in {self.root} while trying to {what}; nothing was published",
                "free space (or raise the quota) and the workers resume",
            )
        if e.errno in _DENIED:
            return StoreError(
                f"cannot write to the population {self.root} ({os.strerror(e.errno)}) while trying to {what}",
                "check the folder's permissions and that its filesystem is mounted read-write",
            )
        return e

    # ---- experiment ---------------------------------------------------------------------

    def create(self, config: ExperimentConfig) -> ExperimentConfig:
        """Create the layout and write experiment.json once.

        Two launchers racing both call this; exactly one ``link`` succeeds (link never replaces
        an existing name, unlike rename) and the loser returns the winner's configuration.
        The caller compares it with its own (ExperimentConfig.differences).
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            for d in self.paths.folders:
                d.mkdir(exist_ok=True)
            if not self.paths.experiment.exists():
                tmp = self.paths.experiment_tmp()
                try:
                    write_file(tmp, config.to_json().encode())
                    try:
                        os.link(tmp, self.paths.experiment)
                    except FileExistsError:
                        pass  # another launcher won: read its configuration below
                finally:
                    unlink_quiet(tmp)
                fsync_dir(self.root)
        except OSError as e:
            raise self.os_error(e, "create the population") from None
        self._config = None
        return self.config

    def replace_config(self, config: ExperimentConfig, *, force: bool = False) -> None:
        """Replace experiment.json with ``config`` (private file, fsync, one rename).

        Without ``force`` only the stop conditions (``STOP_FIELDS``) may change: a difference in
        what is searched raises ConfigError listing it.  The file's mtime -- the experiment's
        creation time, which ``max_hours`` counts from -- is carried over, so raising
        ``max_hours`` on resume extends the run instead of restarting its clock.
        """
        diffs = self.config.differences(config)
        if diffs and not force:
            raise ConfigError(
                f"{self.root} holds a different experiment ({'; '.join(diffs)})",
                "only max_individuals, max_hours, max_flops and mutations_per_child change on resume; pass force to replace the rest",
            )
        dst = self.paths.experiment
        tmp = self.paths.experiment_tmp()
        try:
            st = os.stat(dst)
            write_file(tmp, config.to_json().encode())
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
            os.rename(tmp, dst)
            fsync_dir(self.root)
        except OSError as e:
            unlink_quiet(tmp)
            err = self.os_error(e, "update experiment.json")
            if isinstance(err, OSError):
                err = StoreError(f"cannot update {dst}: {e.strerror}", "check the population's permissions and free space")
            raise err from None
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
        if self._config is None:
            try:
                text = read_bytes(self.paths.experiment, "config").decode("utf-8", "replace")
            except UnsafeFile as e:
                raise StoreError(e.message, "restore experiment.json from a copy (it must be a small regular file)") from None
            except FileNotFoundError:
                raise StoreError(
                    f"{self.paths.experiment} does not exist", "create the experiment with `python -m lse.runners.launch`"
                ) from None
            except OSError as e:
                raise StoreError(f"cannot read {self.paths.experiment}: {os.strerror(e.errno or 0)}") from None
            self._config = ExperimentConfig.from_json(text, str(self.paths.experiment))
        return self._config

    # ---- workers ------------------------------------------------------------------------

    @property
    def worker(self) -> WorkerHandle:
        """This process's registered worker (registered on first use)."""
        if self._worker is None:
            self.register_worker(auto_heartbeat=True)
        assert self._worker is not None
        return self._worker

    def register_worker(
        self, worker_id: str | None = None, *, auto_heartbeat: bool = True, heartbeat_seconds: float = 5.0
    ) -> WorkerHandle:
        """Create ``workers/<wid>/`` with a first heartbeat; ``wid`` defaults to host-pid-random.

        A given ``worker_id`` whose folder exists is taken over only if its owner is provably
        dead (same host, process gone); otherwise StoreError.
        """
        if self.read_only:
            raise StoreError("this store was opened read-only; it cannot register a worker")
        proc = psutil.Process()
        if worker_id is None:
            host = "".join(c if c.isalnum() or c == "-" else "-" for c in self.host)[:40].strip("-") or "host"
            worker_id = f"{host}-{os.getpid()}-{secrets.token_hex(3)}"
        checked_wid(worker_id)
        wdir = self.paths.worker(worker_id)
        try:
            try:
                wdir.mkdir()
            except FileExistsError:
                if self.is_dead_worker(worker_id) is not True:
                    raise StoreError(
                        f"worker id {worker_id!r} is in use by a live worker ({wdir})",
                        "choose another worker id, or stop the other worker",
                    ) from None
                self._reclaim_worker(worker_id, collector=worker_id)
                wdir.mkdir()
        except FileNotFoundError:
            raise StoreError(
                f"{self.paths.workers} does not exist", "is this a population? create it first (Store.create)"
            ) from None
        except OSError as e:
            raise self.os_error(e, "register a worker") from None
        handle = WorkerHandle(self, worker_id, self.host, proc.pid, proc.create_time())
        handle.heartbeat()
        if auto_heartbeat:
            handle.start_heartbeat(heartbeat_seconds)
        self._worker = handle
        return handle

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
            self._publish_file(
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

    def _publish_file(self, dst: Path, obj: object, label: str) -> None:
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

    # ---- reading ------------------------------------------------------------------------

    def read_parent(self, entry: Entry) -> tuple[IndividualRecord, dict]:
        """Record and weights of ``entry``.  LostRace if it was killed or collected meanwhile,
        or if it was malformed (then it is quarantined with a warning and the caller retries), or
        unreadable (an I/O error: a warning, left in place)."""
        try:
            record = self.read_record(entry.path)
            wf = self.paths.weights_file(entry.path)
            weights = weights_from_bytes(read_bytes(wf, "weights"))  # no symlink, FIFO or sparse giant
            os.lstat(entry.path)  # still alive and in place?  Else the parent changed under us.
        except OSError as e:
            if e.errno in _GONE and not path_exists(entry.path):
                raise LostRace(f"{entry.id} was killed or collected while being read") from None
            # Quarantine only what a second look proves malformed: under libfiu, EISDIR/ENOENT
            # from a failing read() or open() got sound individuals quarantined.
            problem = structure_problem(entry.path, (RECORD_FILE, WEIGHTS_FILE))
            if problem is not None:
                self.quarantine(entry.path, problem)
                raise LostRace(f"{entry.id} was malformed and has been quarantined") from None
            # EIO, or a file another user left unreadable: that individual's problem, not the
            # population's.  Skip it like a lost race (the caller draws another tournament); a
            # StoreError here made the worker exit as if misconfigured and the launcher stop.
            why = os.strerror(e.errno or 0)
            warn_once(f"unreadable:{entry.path}", f"cannot read {entry.path} ({why}); skipping it as a parent")
            raise LostRace(f"{entry.id} could not be read ({why})") from None
        except CorruptIndividual as e:
            self.quarantine(entry.path, e.message)
            raise LostRace(f"{entry.id} was malformed and has been quarantined") from None
        except safetensors_error() as e:
            self.quarantine(entry.path, f"weights are not valid safetensors ({e})")
            raise LostRace(f"{entry.id} was malformed and has been quarantined") from None
        return record, weights

    def read_record(self, individual_dir: Path) -> IndividualRecord:
        """Parse and validate record.json (raises CorruptIndividual, OSError)."""
        st = os.lstat(individual_dir)
        if not stat.S_ISDIR(st.st_mode):
            raise CorruptIndividual(f"{individual_dir.name!r} is not a folder")
        rf = self.paths.record_file(individual_dir)
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
        for name, path in listdir_sorted(self.paths.history):
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
            warn_foreign(self.paths.history, foreign, "not a record")
        # A folder mid-collection (gc/<id>.<wid>) still holds the record if history lacks it.
        for name, path in listdir_sorted(self.paths.gc):
            parsed = parse_gc_name(name)
            if parsed and parsed[0] == "individual" and parsed[1] not in by_id:
                rec = self._read_gc_record(path)
                if rec is not None:
                    by_id[rec.id] = rec
        for e in self.entries():
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
        history = self.paths.history_record(individual_id)
        rec = self._read_history_record(history)
        if rec is None:
            entry = self.find(individual_id)
            if entry is not None:
                rec = self.read_entry_record(entry)
        if rec is None:
            for name, path in listdir_sorted(self.paths.gc):
                parsed = parse_gc_name(name)
                if parsed and parsed[0] == "individual" and parsed[1] == individual_id:
                    rec = self._read_gc_record(path)
        if rec is None:
            rec = self._read_history_record(history)
        if rec is None or rec.state != "dead":
            return rec
        death = read_death(self.paths.history_death(individual_id))
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
            self.quarantine(e.path, err.message)
            return None
        except OSError as err:  # quarantined only if a second look proves it malformed
            problem = structure_problem(e.path, (RECORD_FILE,))
            if problem is not None:
                self.quarantine(e.path, problem)
            else:
                warn_once(f"unreadable:{e.path}", f"cannot read {e.path} ({os.strerror(err.errno or 0)}); left out")
            return None
        if rec.id != e.id:
            self.quarantine(e.path, f"record id {rec.id} does not match the folder name")
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
            self.quarantine(path, e.message)
            return None

    # ---- garbage collection ------------------------------------------------------------

    def gc(self) -> GCReport:
        """Collect dead individuals: rename into gc/ (two collectors never both get one), keep
        the record in history/<id>.json, delete the weights.  Quarantines foreign entries."""
        report = GCReport()
        me = self.worker.id
        keep = None  # the weight-keeping policy lists two folders: only when there is a dead one
        unlisted = 0
        for de in scandir_entries(self.paths.individuals):
            parsed = IndividualName.parse(de.name)
            if parsed is None or de.is_symlink():
                quiet = len(report.quarantined) >= LISTED  # the reason file still says why
                if self.quarantine(Path(de.path), foreign_reason(de), quiet=quiet):
                    report.quarantined.append(de.name)
                    unlisted += quiet
                continue
            if parsed.state != "dead":
                continue
            if keep is None:  # before the first rename: the dead still count as rivals
                keep = self._keep_policy()
            dst = self.paths.gc_individual(parsed.id, me)
            try:
                won = self.rename(Path(de.path), dst)
            except OSError as e:
                raise self.os_error(e, f"collect {parsed.id}") from None
            if not won:
                report.lost += 1
                continue
            if self._finish_gc_individual(dst, parsed.id, parsed.by, keep_weights=keep):
                report.collected.append(parsed.id)
            else:
                report.quarantined.append(parsed.id)
        if unlisted:
            log.warning("quarantined %d more foreign entries (reasons in %s/*.reason.txt)",
                        unlisted, self.paths.quarantine)
        return report

    def _keep_policy(self) -> Callable[[IndividualRecord], bool]:
        """Which dead individuals keep their weights (moved to history/) when collected.

        Reports need the test accuracy of the best-so-far individual at every time (Figure 2)
        and of the validation top-2 (the ensemble, section 3.7), long after those individuals
        died.  So an individual keeps its weights when it beat every individual born before it
        (a "record holder": O(log n) of n births for noisy fitness), or it is in the current
        top-2.  Known rivals come from listings (names in individuals/ carry fitness; kept
        weights are in history/); one in flight in gc/ is unknown, which can only make us keep
        more, never less.

        Ids are drawn when a child's training starts, so id order is not birth order: a
        rival with an earlier id and a better accuracy may have been born *after* this one.
        Id order decides the clear cases; for the others the rivals' birth times are read
        from their records (the oldest rival first: usually the first read settles it).
        """
        fit: dict[str, float] = {}
        paths: dict[str, Path] = {}
        for e in self.entries():
            if e.fitness is not None:
                fit[e.id] = e.fitness
                paths[e.id] = self.paths.record_file(e.path)
        suffix = ".weights.safetensors"
        for name, _path in listdir_sorted(self.paths.history):
            if name.endswith(suffix) and is_id(name[: -len(suffix)]):
                i = name[: -len(suffix)]
                if i not in fit:
                    acc = self._history_fitness(i)
                    if acc is not None:
                        fit[i] = acc
                        paths[i] = self.paths.history_record(i)
        top2 = set(sorted(fit, key=lambda i: (-fit[i], i))[:2])

        def born_at(i: str) -> float | None:
            for path in (paths[i], self.paths.history_record(i)):  # killed+collected meanwhile
                try:
                    return parse_record(read_bytes(path, "record"), str(path), None).born_at
                except (OSError, CorruptIndividual):
                    continue
            return None

        def keep(rec: IndividualRecord) -> bool:
            if rec.val_accuracy is None:
                return False
            if rec.id in top2:
                return True
            for i in sorted(r for r in fit if r < rec.id and fit[r] >= rec.val_accuracy):
                b = born_at(i)
                if b is not None and rec.born_at is not None and b <= rec.born_at:
                    return False  # an older, at-least-as-good rival: not a record holder
            return True

        return keep

    def _history_fitness(self, individual_id: str) -> float | None:
        try:
            path = self.paths.history_record(individual_id)
            rec = parse_record(read_bytes(path, "record"), str(path), None)
        except (OSError, CorruptIndividual):
            return None
        return rec.val_accuracy

    def load_weights(self, individual_id: str) -> dict | None:
        """The weights of an individual wherever they are (alive, dead, or kept by GC);
        None when they were collected.  Only reports read dead individuals' weights."""
        entry = self.find(individual_id)
        candidates = [self.paths.weights_file(entry.path)] if entry is not None else []
        candidates.append(self.paths.history_weights(individual_id))
        for path in candidates:
            try:
                return weights_from_bytes(read_bytes(path, "weights"))
            except FileNotFoundError:
                continue  # killed and collected meanwhile: look in history/
            except safetensors_error() as e:
                raise CorruptIndividual(f"{path}: weights are not valid safetensors ({e})") from None
        return None

    def _finish_gc_individual(
        self,
        gc_dir: Path,
        individual_id: str,
        killed_by: str | None,
        keep_weights: Callable[[IndividualRecord], bool] | None = None,
    ) -> bool:
        """history/<id>.json from gc/<…>/record.json (and the weights, when reports need them:
        :meth:`_keep_policy`), then delete.  False: it was quarantined."""
        try:
            rec = self.read_record(gc_dir)
        except FileNotFoundError:
            rec = None
        except CorruptIndividual as e:
            self.quarantine(gc_dir, e.message)
            return False
        except OSError as e:  # an I/O error: left in gc/ for recovery unless provably malformed
            problem = structure_problem(gc_dir, (RECORD_FILE,))
            if problem is not None:
                self.quarantine(gc_dir, problem)
            else:
                warn_once(f"unreadable:{gc_dir}", f"cannot read {gc_dir} ({os.strerror(e.errno or 0)}); left for recovery")
            return False
        if rec is None:
            # No record: either a crash left it, or a recoverer finished it already.
            if not self.paths.history_record(individual_id).exists():
                self.quarantine(gc_dir, "collected folder without record.json")
                return False
        else:
            rec = rec.model_copy(
                update={"state": "dead", "collected": True, "killed_by": killer(rec, killed_by)}
            )
            if keep_weights is not None and keep_weights(rec):
                try:  # same filesystem: one rename, the data is already fsynced
                    self.rename(self.paths.weights_file(gc_dir), self.paths.history_weights(individual_id))
                except OSError as e:
                    warn_once(f"keep:{individual_id}", f"could not keep weights of {individual_id}: {e}")
            self._publish_file(self.paths.history_record(individual_id), rec.model_dump(mode="json"), "history")
        self._remove_or_quarantine(gc_dir)
        return True

    def _remove_or_quarantine(self, path: Path) -> None:
        """Delete a tree in gc/; what cannot be deleted is quarantined, so that no worker meets
        it again on its next pass (a chain of nested folders once stayed in gc/ for every
        worker's recursive delete to die on)."""
        if not remove_tree(path) and path_exists(path):
            self.quarantine(path, "could not be deleted (contents refused removal)")

    # ---- recovery ----------------------------------------------------------------------

    def heartbeat_of(self, worker_id: str) -> dict | None:
        """The heartbeat as a dict whose fields have the types and ranges a worker writes
        (``heartbeat_fields``); None when absent, unreadable or malformed (a worker with no
        readable heartbeat is judged by the other-host rule: it must show a beat in time)."""
        try:
            data = read_json(self.paths.heartbeat(worker_id), "heartbeat")
        except (OSError, CorruptIndividual):
            return None
        return heartbeat_fields(data)

    def is_dead_worker(self, worker_id: str) -> bool | None:
        """Whether worker ``worker_id`` is dead, by the rules recovery acts on.

        True: provably dead (same host: its process is gone or its pid was reused; other host:
        its heartbeat counter has not moved for ``stale_after`` seconds of our clock).
        False: alive.  None: not known yet -- a first look at another host's heartbeat, keep
        observing (each call is one observation; the Store remembers the previous one).
        """
        hb = self.heartbeat_of(worker_id)
        if hb is not None and hb["host"] == self.host and hb["pid_namespace"] in (None, PID_NAMESPACE):
            # Same host: the process table is the truth.  create_time guards against pid reuse.
            try:
                proc = psutil.Process(hb["pid"])
                ct = proc.create_time()
                if abs(ct - hb["create_time"]) > 0.01:
                    return True  # the pid was reused
                # A killed process its parent has not reaped yet is a zombie: dead all the same.
                return proc.status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True
            except psutil.AccessDenied:
                return False
            except (psutil.Error, OSError, ValueError, OverflowError) as e:  # never fatal to recovery
                warn_once(f"liveness:{worker_id}", f"cannot check worker {worker_id}'s process ({e}); judging it by its heartbeat")
        # Other host (or no readable heartbeat yet): the counter must move within stale_after
        # seconds of *our* monotonic clock.
        token = None if hb is None else (hb["host"], hb["pid"], hb["counter"])
        now = time.monotonic()
        seen = self._observations.get(worker_id)
        if seen is None or seen[0] != token:
            self._observations[worker_id] = (token, now)
            return None if seen is None else False
        return True if now - seen[1] >= self.stale_after else None

    def recover(self) -> RecoverReport:
        """Reclaim leftovers of crashed workers (scratch, half-collected folders)."""
        report = RecoverReport()
        mine = self._worker.id if self._worker is not None else None
        for name, _path in listdir_sorted(self.paths.workers):
            if name == mine or not is_worker_id(name):
                continue
            if self.is_dead_worker(name) is True:
                if self._reclaim_worker(name, collector=self.worker.id):
                    report.workers_reclaimed.append(name)
                self._observations.pop(name, None)
        live_workers = {n for n, _ in listdir_sorted(self.paths.workers)}
        for name, path in listdir_sorted(self.paths.gc):
            parsed = parse_gc_name(name)
            if parsed is None:
                continue
            kind, what, collector = parsed
            if collector in live_workers:
                continue  # its collector is still at work
            # Claim the leftover by one rename so that two recoverers never finish it twice.
            me = self.worker.id
            claim = self.paths.gc_individual(what, me) if kind == "individual" else self.paths.gc_worker(what, me)
            if claim == path or not self.rename(path, claim):
                continue
            if kind == "individual":
                self._finish_gc_individual(claim, what, None)
            else:
                self._remove_or_quarantine(claim)
            report.gc_finished.append(name)
        return report

    def _reclaim_worker(self, worker_id: str, collector: str) -> bool:
        src = self.paths.worker(worker_id)
        dst = self.paths.gc_worker(worker_id, collector)
        try:
            if not self.rename(src, dst):
                return False
        except OSError as e:
            raise self.os_error(e, f"reclaim worker {worker_id}") from None
        self._remove_or_quarantine(dst)
        return True

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


