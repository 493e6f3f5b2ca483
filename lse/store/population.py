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
import json
import logging
import math
import os
import secrets
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from pydantic import ValidationError

from lse.config import ExperimentConfig
from lse.errors import ConfigError, CorruptIndividual, DiskFull, DNAError, LostRace, StoreError
from lse.store.saferead import UnsafeFile, parse_json, read_bytes, read_json
from lse.core.records import (
    IndividualName,
    IndividualRecord,
    State,
    TIME_LIMIT,
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

RECORD_FILE = "record.json"
WEIGHTS_FILE = "weights.safetensors"
HEARTBEAT_FILE = "heartbeat.json"

_warned: set[str] = set()
_warned_lock = threading.Lock()


#: foreign names listed one by one per listing (or quarantined one by one per GC pass); the
#: rest are counted in one line.  5,000 stray files once gave 10,000 warning lines.
LISTED = 10


def _warn_foreign(folder: Path, names: list[str], then: str) -> None:
    """One warning per foreign name (once per process), at most LISTED names per call, the rest
    summarised in one line."""
    with _warned_lock:
        new = [n for n in names if f"foreign:{folder / n}" not in _warned]
        _warned.update(f"foreign:{folder / n}" for n in new)
    for n in new[:LISTED]:
        log.warning(f"ignoring foreign entry {n!r} in {folder} ({then})")
    if len(new) > LISTED:
        log.warning(f"ignoring {len(new) - LISTED} more foreign entries in {folder} (not listed one by one; {then})")


def _warn_once(key: str, message: str) -> None:
    """One warning per key per process: 250 workers listing the same foreign file every few
    seconds must not flood the logs."""
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning(message)


# --------------------------------------------------------------------------------------------
# paths


class PopulationPaths:
    """Every path of a population directory; nobody else concatenates paths (STYLE 4)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.experiment = self.root / "experiment.json"
        self.individuals = self.root / "individuals"
        self.history = self.root / "history"
        self.workers = self.root / "workers"
        self.gc = self.root / "gc"
        self.quarantine = self.root / "quarantine"
        self.logs = self.root / "logs"
        self.eval = self.root / "eval"
        self.stop = self.root / "STOP"
        # Generational algorithms only (lse.generations); created on first use, so populations
        # of steady-state algorithms do not grow an empty folder.
        self.generations = self.root / "generations"
        # Changes made to the running experiment (lse.store.events): mutation bursts, resets.
        self.events = self.root / "events"
        # Hand-designed anchors of the reports (lse reference); created on first use.
        self.reference = self.root / "reference"

    @property
    def folders(self) -> tuple[Path, ...]:
        return (self.individuals, self.history, self.workers, self.gc, self.quarantine, self.logs, self.eval,
                self.events)

    def individual(self, name: IndividualName) -> Path:
        return self.individuals / name.render()

    @staticmethod
    def record_file(individual_dir: Path) -> Path:
        return individual_dir / RECORD_FILE

    @staticmethod
    def weights_file(individual_dir: Path) -> Path:
        return individual_dir / WEIGHTS_FILE

    def experiment_tmp(self) -> Path:
        """A fresh private name beside experiment.json (same folder: link/rename cannot cross
        mounts); launchers write there first, workers have no folder yet."""
        return self.root / f".experiment.json.{secrets.token_hex(6)}.tmp"

    def history_record(self, individual_id: str) -> Path:
        return self.history / f"{_checked_id(individual_id)}.json"

    def history_death(self, individual_id: str) -> Path:
        return self.history / f"{_checked_id(individual_id)}.death.json"

    def history_weights(self, individual_id: str) -> Path:
        """Weights GC kept because reports need them (see :meth:`Store.gc`)."""
        return self.history / f"{_checked_id(individual_id)}.weights.safetensors"

    def claim(self, worker_id: str, individual_id: str) -> Path:
        """A worker's claim of a birth slot for ``individual_id`` (see lse.runners.worker)."""
        return self.worker(worker_id) / f"claim-{_checked_id(individual_id)}"

    def worker(self, worker_id: str) -> Path:
        return self.workers / _checked_wid(worker_id)

    def heartbeat(self, worker_id: str) -> Path:
        return self.worker(worker_id) / HEARTBEAT_FILE

    def child(self, worker_id: str, individual_id: str) -> Path:
        """Private scratch where a worker assembles a child before its birth rename."""
        return self.worker(worker_id) / f"child-{_checked_id(individual_id)}"

    def private_file(self, worker_id: str, label: str) -> Path:
        """A fresh private temporary file name inside the worker's folder."""
        return self.worker(worker_id) / f"tmp-{label}-{secrets.token_hex(6)}"

    def gc_individual(self, individual_id: str, collector: str) -> Path:
        return self.gc / f"{_checked_id(individual_id)}.{_checked_wid(collector)}"

    def gc_worker(self, worker_id: str, collector: str) -> Path:
        return self.gc / f"worker.{_checked_wid(worker_id)}.{_checked_wid(collector)}"

    def quarantined(self, label: str) -> Path:
        return self.quarantine / f"{label}.{secrets.token_hex(4)}"

    def log(self, worker_id: str) -> Path:
        return self.logs / f"{_checked_wid(worker_id)}.log"

    def eval_record(self, individual_id: str) -> Path:
        return self.eval / f"{_checked_id(individual_id)}.json"

    def reference_curve(self, name: str) -> Path:
        """reference/<name>.json: one hand-designed anchor's curve (lse.runners.reference)."""
        return self.reference / f"{_checked_wid(name)}.json"

    def event(self, file_name: str) -> Path:
        """events/<id>.<kind>.json (lse.store.events); ``file_name`` from Event.file_name()."""
        from lse.core.events import parse_event_name

        if parse_event_name(file_name) is None:
            raise ValueError(f"not an event file name: {file_name!r}")
        return self.events / file_name

    def event_tmp(self) -> Path:
        """A fresh private name inside events/ (dot-prefixed: readers skip it; same folder, so
        the publishing link cannot cross mounts).  Commands have no worker folder of their own."""
        return self.events / f".tmp-{secrets.token_hex(8)}"

    # ---- generations (lse.generations) ---------------------------------------------------

    def generation(self, g: int) -> Path:
        """generations/<g>/: exists iff generation ``g`` was opened."""
        return self.generations / str(_checked_generation(g))

    def generation_meta(self, g: int) -> Path:
        """generations/<g>/generation.json: the generation's slot count, written by its opener."""
        return self.generation(g) / "generation.json"

    def generation_children(self, g: int) -> Path:
        """generations/<g>/children/: slot k's child is children/<k>, until the generation is sealed."""
        return self.generation(g) / "children"

    def generation_child(self, g: int, slot: int) -> Path:
        return self.generation_children(g) / str(_checked_generation(slot))

    def generation_sealed(self, g: int) -> Path:
        """generations/<g>/sealed/: children/ renamed once every slot is filled (no more entries)."""
        return self.generation(g) / "sealed"

    def generation_sealed_child(self, g: int, slot: int) -> Path:
        return self.generation_sealed(g) / str(_checked_generation(slot))

    def generation_plan(self, g: int, version: int = 0) -> Path:
        """generations/<g>/plan/: a folder holding plan.json (a folder: rename never replaces a
        non-empty one, whereas renaming a file onto plan.json would replace a plan in use).
        ``version`` k > 0: plan.<k>/, the re-plan written when every earlier one is unreadable
        (lse.store.generations: a plan is never moved or replaced, only superseded)."""
        return self.generation(g) / ("plan" if version == 0 else f"plan.{_checked_generation(version)}")

    def generation_claim(self, worker_id: str, g: int, slot: int) -> Path:
        """A worker's claim of slot ``slot`` of generation ``g`` (a hint that spreads work)."""
        return self.worker(worker_id) / f"gen-{_checked_generation(g)}-{_checked_generation(slot)}"


def _checked_id(individual_id: str) -> str:
    if not is_id(individual_id):
        raise ValueError(f"not an individual id: {individual_id!r}")
    return individual_id


def _checked_wid(worker_id: str) -> str:
    if not is_worker_id(worker_id):
        raise ValueError(f"not a worker id: {worker_id!r} (letters, digits, '-', '_'; at most 80)")
    return worker_id


def _checked_generation(n: int) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"not a generation or slot number: {n!r}")
    return n


def _parse_gc_name(name: str) -> tuple[str, str, str] | None:
    """gc/<id>.<collector> -> ("individual", id, collector);
    gc/worker.<wid>.<collector> -> ("worker", wid, collector); anything else None."""
    parts = name.split(".")
    if len(parts) == 2 and is_id(parts[0]) and is_worker_id(parts[1]):
        return "individual", parts[0], parts[1]
    if len(parts) == 3 and parts[0] == "worker" and is_worker_id(parts[1]) and is_worker_id(parts[2]):
        return "worker", parts[1], parts[2]
    return None


# --------------------------------------------------------------------------------------------
# low-level durable writes


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as e:  # some filesystems refuse fsync on directories; nothing more to do
        if e.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    """Create ``path`` (private, must not exist), write all of ``data``, fsync.

    A short write continues where it stopped; a write that makes no progress is a full disk
    (some filesystems report ENOSPC that way).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            if n <= 0:
                raise OSError(errno.ENOSPC, "write made no progress (disk full?)", str(path))
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _dumps(obj: object) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()


def save_weights(state_dict: dict) -> bytes:
    """safetensors bytes: a format that cannot run code when read (never pickle)."""
    from safetensors.torch import save

    # Contiguous private copies: safetensors refuses shared or strided storage.
    tensors = {str(k): v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    return save(tensors, metadata={"format": "pt"})


def _load_weights(data: bytes) -> dict:
    from safetensors.torch import load

    return load(data)


def _validate_dna(dna: dict, kind: str = "dna") -> None:
    """Validate a record's genome by its kind (lse.core.genomes; raises DNAError, ValidationError,
    ValueError for anything malformed or of an unknown kind)."""
    from lse.core.genomes import parse_genome

    parse_genome(kind, dna)


def _safetensors_error() -> type[Exception]:
    from safetensors import SafetensorError

    return SafetensorError


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
                "pid_namespace": _PID_NAMESPACE,
            }
            tmp = self.store.paths.private_file(self.id, "heartbeat")
            try:
                _write_file(tmp, _dumps(body))
                os.rename(tmp, self.dir / HEARTBEAT_FILE)
            except OSError as e:
                _unlink_quiet(tmp)
                raise self.store._os_error(e, "write the heartbeat") from None

    def start_heartbeat(self, every_seconds: float) -> None:
        def beat() -> None:
            while not self._stop.wait(every_seconds):
                try:
                    self.heartbeat()
                except (OSError, StoreError) as e:  # keep beating; the main loop reports errors
                    _warn_once(f"heartbeat:{self.id}", f"worker {self.id}: heartbeat failed: {e}")

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

    def _os_error(self, e: OSError, what: str) -> Exception:
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
                    _write_file(tmp, config.to_json().encode())
                    try:
                        os.link(tmp, self.paths.experiment)
                    except FileExistsError:
                        pass  # another launcher won: read its configuration below
                finally:
                    _unlink_quiet(tmp)
                _fsync_dir(self.root)
        except OSError as e:
            raise self._os_error(e, "create the population") from None
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
            _write_file(tmp, config.to_json().encode())
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
            os.rename(tmp, dst)
            _fsync_dir(self.root)
        except OSError as e:
            _unlink_quiet(tmp)
            err = self._os_error(e, "update experiment.json")
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
        _checked_wid(worker_id)
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
            raise self._os_error(e, "register a worker") from None
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
                    _warn_once(f"symlink:{de.path}", f"ignoring symlink {de.name!r} (`lse gc` quarantines it)")
                    continue
                if state is not None and parsed.state != state:
                    continue
                out.append(Entry(parsed.id, parsed.fitness, parsed.state, Path(de.path), parsed.by))
        if foreign:
            _warn_foreign(self.paths.individuals, foreign, "`lse gc` quarantines it")
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

    def _rename(self, src: Path, dst: Path) -> bool:
        """One atomic rename.  True: we did it.  False: the source was gone (lost race).

        NFS: if the reply to a successful rename is lost, the client retransmits and the
        retransmission fails (ENOENT).  Destinations are unique to this worker, so "destination
        exists and source gone" after an error means the first transmission won.
        """
        try:
            self._rename_fn(src, dst)
            return True
        except OSError as e:
            if _exists(dst) and not _exists(src):
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
        if _exists(dst):
            # We killed it before (from a stale listing).  Checked first, or the lost-reply rule
            # in _rename would count this second attempt as a second win.
            return False
        try:
            if not self._rename(entry.path, dst):
                return False
        except OSError as e:
            raise self._os_error(e, f"kill {entry.id}") from None
        try:  # a kill the killer acts on (its child takes the slot) must survive a crash
            _fsync_dir(self.paths.individuals)
        except OSError as e:  # the rename stands: only its durability is in doubt
            _warn_once(f"fsync-kill:{entry.id}", f"killed {entry.id} but could not fsync {self.paths.individuals}: {e}")
        try:
            self._publish_file(
                self.paths.history_death(entry.id),
                {"id": entry.id, "killed_at": time.time(), "killed_by": me},
                "death",
            )
        except (OSError, StoreError, LostRace) as e:  # the kill itself stands; only its time is lost
            _warn_once(f"death:{entry.id}", f"killed {entry.id} but could not record its death time: {e}")
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
        _validate_dna(rec.dna, rec.genome)  # never publish what every reader would quarantine
        fitness = None if rec.fitness is None else float(format_fitness(rec.fitness))
        name = IndividualName(rec.id, "alive", fitness) if alive else IndividualName(rec.id, "dead", fitness, w.id)
        child = self.paths.child(w.id, rec.id)
        dst = self.paths.individual(name)
        try:
            if _exists(child) and not remove_tree(child):
                raise StoreError(f"cannot remove the old scratch {child}", "check this worker's folder permissions")
            w.dir.mkdir(exist_ok=True)  # recreated if a recoverer wrongly took our folder
            child.mkdir()
            if state_dict is not None:
                _write_file(self.paths.weights_file(child), save_weights(state_dict))
            _write_file(self.paths.record_file(child), _dumps(rec.model_dump(mode="json")))
            _fsync_dir(child)
            if not self._rename(child, dst):
                raise LostRace(f"scratch of {rec.id} vanished before its birth (this worker was reclaimed?)")
            _fsync_dir(self.paths.individuals)
        except OSError as e:
            remove_tree(child)
            raise self._os_error(e, f"publish {rec.id}") from None
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
            if not self._rename(folder, dst):
                return _exists(dst)
            _fsync_dir(self.paths.individuals)
        except OSError as e:
            raise self._os_error(e, f"move {name.id} into individuals/") from None
        return True

    def _publish_file(self, dst: Path, obj: object, label: str) -> None:
        """Write a small JSON file privately, fsync, rename into place (overwrites)."""
        tmp = self.paths.private_file(self.worker.id, label)
        try:
            _write_file(tmp, _dumps(obj))
            if not self._rename(tmp, dst):  # our private file vanished: folder reclaimed
                raise LostRace(f"private copy of {dst.name} vanished (was this worker reclaimed as dead?)")
            _fsync_dir(dst.parent)
        except OSError as e:
            _unlink_quiet(tmp)
            raise self._os_error(e, f"write {dst.name}") from None

    # ---- reading ------------------------------------------------------------------------

    def read_parent(self, entry: Entry) -> tuple[IndividualRecord, dict]:
        """Record and weights of ``entry``.  LostRace if it was killed or collected meanwhile,
        or if it was malformed (then it is quarantined with a warning and the caller retries), or
        unreadable (an I/O error: a warning, left in place)."""
        try:
            record = self._read_record(entry.path)
            wf = self.paths.weights_file(entry.path)
            weights = _load_weights(read_bytes(wf, "weights"))  # no symlink, FIFO or sparse giant
            os.lstat(entry.path)  # still alive and in place?  Else the parent changed under us.
        except OSError as e:
            if e.errno in _GONE and not _exists(entry.path):
                raise LostRace(f"{entry.id} was killed or collected while being read") from None
            # Quarantine only what a second look proves malformed: under libfiu, EISDIR/ENOENT
            # from a failing read() or open() got sound individuals quarantined.
            problem = _structure_problem(entry.path, (RECORD_FILE, WEIGHTS_FILE))
            if problem is not None:
                self._quarantine(entry.path, problem)
                raise LostRace(f"{entry.id} was malformed and has been quarantined") from None
            # EIO, or a file another user left unreadable: that individual's problem, not the
            # population's.  Skip it like a lost race (the caller draws another tournament); a
            # StoreError here made the worker exit as if misconfigured and the launcher stop.
            why = os.strerror(e.errno or 0)
            _warn_once(f"unreadable:{entry.path}", f"cannot read {entry.path} ({why}); skipping it as a parent")
            raise LostRace(f"{entry.id} could not be read ({why})") from None
        except CorruptIndividual as e:
            self._quarantine(entry.path, e.message)
            raise LostRace(f"{entry.id} was malformed and has been quarantined") from None
        except _safetensors_error() as e:
            self._quarantine(entry.path, f"weights are not valid safetensors ({e})")
            raise LostRace(f"{entry.id} was malformed and has been quarantined") from None
        return record, weights

    def _read_record(self, individual_dir: Path) -> IndividualRecord:
        """Parse and validate record.json (raises CorruptIndividual, OSError)."""
        st = os.lstat(individual_dir)
        if not stat.S_ISDIR(st.st_mode):
            raise CorruptIndividual(f"{individual_dir.name!r} is not a folder")
        rf = self.paths.record_file(individual_dir)
        if stat.S_ISLNK(os.lstat(rf).st_mode):
            raise CorruptIndividual(f"{rf} is a symlink")
        return _parse_record(read_bytes(rf, "record"), str(rf), IndividualName.parse(individual_dir.name))

    def records(self) -> list[IndividualRecord]:
        """Every individual that ever lived (alive, dead, collected), one per id, sorted by id.

        Unreadable individuals are quarantined with a warning and left out.
        """
        by_id: dict[str, IndividualRecord] = {}
        deaths: dict[str, dict] = {}
        foreign: list[str] = []
        for name, path in _listdir(self.paths.history):
            if name.endswith(".death.json") and is_id(name[: -len(".death.json")]):
                death = _read_death(path)
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
            _warn_foreign(self.paths.history, foreign, "not a record")
        # A folder mid-collection (gc/<id>.<wid>) still holds the record if history lacks it.
        for name, path in _listdir(self.paths.gc):
            parsed = _parse_gc_name(name)
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
            for name, path in _listdir(self.paths.gc):
                parsed = _parse_gc_name(name)
                if parsed and parsed[0] == "individual" and parsed[1] == individual_id:
                    rec = self._read_gc_record(path)
        if rec is None:
            rec = self._read_history_record(history)
        if rec is None or rec.state != "dead":
            return rec
        death = _read_death(self.paths.history_death(individual_id))
        return rec if death is None else rec.model_copy(update=death)

    def read_entry_record(self, e: Entry) -> IndividualRecord | None:
        """The record of an individual listed in individuals/, with the state and killer its
        name gives; None if it moved on during the listing, or is unreadable or malformed
        (then quarantined)."""
        try:
            rec = self._read_record(e.path)
        except FileNotFoundError:
            return None  # killed/collected during the listing; seen in history next time
        except CorruptIndividual as err:
            self._quarantine(e.path, err.message)
            return None
        except OSError as err:  # quarantined only if a second look proves it malformed
            problem = _structure_problem(e.path, (RECORD_FILE,))
            if problem is not None:
                self._quarantine(e.path, problem)
            else:
                _warn_once(f"unreadable:{e.path}", f"cannot read {e.path} ({os.strerror(err.errno or 0)}); left out")
            return None
        if rec.id != e.id:
            self._quarantine(e.path, f"record id {rec.id} does not match the folder name")
            return None
        return rec.model_copy(update={"state": e.state, "killed_by": _killer(rec, e.by)})

    def _read_gc_record(self, gc_dir: Path) -> IndividualRecord | None:
        """The record in a folder being collected (gc/<id>.<wid>); None once it is gone."""
        try:
            return self._read_record(gc_dir).model_copy(update={"state": "dead", "collected": True})
        except (OSError, CorruptIndividual):
            return None  # being collected right now; history will have it

    def _read_history_record(self, path: Path) -> IndividualRecord | None:
        """history/<id>.json; None if absent, quarantined if malformed."""
        try:
            return _parse_record(read_bytes(path, "record"), str(path), None).model_copy(
                update={"collected": True, "state": "dead"}
            )
        except FileNotFoundError:
            return None
        except CorruptIndividual as e:
            self._quarantine(path, e.message)
            return None

    # ---- garbage collection ------------------------------------------------------------

    def gc(self) -> GCReport:
        """Collect dead individuals: rename into gc/ (two collectors never both get one), keep
        the record in history/<id>.json, delete the weights.  Quarantines foreign entries."""
        report = GCReport()
        me = self.worker.id
        keep = None  # the weight-keeping policy lists two folders: only when there is a dead one
        unlisted = 0
        for de in _scandir_entries(self.paths.individuals):
            parsed = IndividualName.parse(de.name)
            if parsed is None or de.is_symlink():
                quiet = len(report.quarantined) >= LISTED  # the reason file still says why
                if self._quarantine(Path(de.path), _foreign_reason(de), quiet=quiet):
                    report.quarantined.append(de.name)
                    unlisted += quiet
                continue
            if parsed.state != "dead":
                continue
            if keep is None:  # before the first rename: the dead still count as rivals
                keep = self._keep_policy()
            dst = self.paths.gc_individual(parsed.id, me)
            try:
                won = self._rename(Path(de.path), dst)
            except OSError as e:
                raise self._os_error(e, f"collect {parsed.id}") from None
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
        for name, _path in _listdir(self.paths.history):
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
                    return _parse_record(read_bytes(path, "record"), str(path), None).born_at
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
            rec = _parse_record(read_bytes(path, "record"), str(path), None)
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
                return _load_weights(read_bytes(path, "weights"))
            except FileNotFoundError:
                continue  # killed and collected meanwhile: look in history/
            except _safetensors_error() as e:
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
            rec = self._read_record(gc_dir)
        except FileNotFoundError:
            rec = None
        except CorruptIndividual as e:
            self._quarantine(gc_dir, e.message)
            return False
        except OSError as e:  # an I/O error: left in gc/ for recovery unless provably malformed
            problem = _structure_problem(gc_dir, (RECORD_FILE,))
            if problem is not None:
                self._quarantine(gc_dir, problem)
            else:
                _warn_once(f"unreadable:{gc_dir}", f"cannot read {gc_dir} ({os.strerror(e.errno or 0)}); left for recovery")
            return False
        if rec is None:
            # No record: either a crash left it, or a recoverer finished it already.
            if not self.paths.history_record(individual_id).exists():
                self._quarantine(gc_dir, "collected folder without record.json")
                return False
        else:
            rec = rec.model_copy(
                update={"state": "dead", "collected": True, "killed_by": _killer(rec, killed_by)}
            )
            if keep_weights is not None and keep_weights(rec):
                try:  # same filesystem: one rename, the data is already fsynced
                    self._rename(self.paths.weights_file(gc_dir), self.paths.history_weights(individual_id))
                except OSError as e:
                    _warn_once(f"keep:{individual_id}", f"could not keep weights of {individual_id}: {e}")
            self._publish_file(self.paths.history_record(individual_id), rec.model_dump(mode="json"), "history")
        self._remove_or_quarantine(gc_dir)
        return True

    def _remove_or_quarantine(self, path: Path) -> None:
        """Delete a tree in gc/; what cannot be deleted is quarantined, so that no worker meets
        it again on its next pass (a chain of nested folders once stayed in gc/ for every
        worker's recursive delete to die on)."""
        if not remove_tree(path) and _exists(path):
            self._quarantine(path, "could not be deleted (contents refused removal)")

    # ---- recovery ----------------------------------------------------------------------

    def _heartbeat_of(self, worker_id: str) -> dict | None:
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
        hb = self._heartbeat_of(worker_id)
        if hb is not None and hb["host"] == self.host and hb["pid_namespace"] in (None, _PID_NAMESPACE):
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
                _warn_once(f"liveness:{worker_id}", f"cannot check worker {worker_id}'s process ({e}); judging it by its heartbeat")
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
        for name, _path in _listdir(self.paths.workers):
            if name == mine or not is_worker_id(name):
                continue
            if self.is_dead_worker(name) is True:
                if self._reclaim_worker(name, collector=self.worker.id):
                    report.workers_reclaimed.append(name)
                self._observations.pop(name, None)
        live_workers = {n for n, _ in _listdir(self.paths.workers)}
        for name, path in _listdir(self.paths.gc):
            parsed = _parse_gc_name(name)
            if parsed is None:
                continue
            kind, what, collector = parsed
            if collector in live_workers:
                continue  # its collector is still at work
            # Claim the leftover by one rename so that two recoverers never finish it twice.
            me = self.worker.id
            claim = self.paths.gc_individual(what, me) if kind == "individual" else self.paths.gc_worker(what, me)
            if claim == path or not self._rename(path, claim):
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
            if not self._rename(src, dst):
                return False
        except OSError as e:
            raise self._os_error(e, f"reclaim worker {worker_id}") from None
        self._remove_or_quarantine(dst)
        return True

    # ---- quarantine --------------------------------------------------------------------

    def _quarantine(self, path: Path, reason: str, quiet: bool = False) -> bool:
        """Move a malformed entry aside (one rename; the rename never follows a symlink) and
        write a reason file.  False when someone else moved it first, or when this store is
        read-only (then the entry is only skipped: a worker or `lse gc` quarantines it)."""
        if self.read_only:
            _warn_once(f"skip:{path}", f"skipping malformed {path.name!r} ({reason.replace(chr(10), ' ')}); "
                       "a worker or `lse gc` quarantines it")
            return False
        label = path.name if (is_id(path.name.split(".")[0]) and "\n" not in path.name) else "foreign"
        label = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)[:120]
        dst = self.paths.quarantined(label)
        try:
            if not self._rename(path, dst):
                return False
        except OSError as e:
            _warn_once(f"quarantine:{path}", f"could not quarantine {path.name!r} ({reason}): {e}")
            return False
        if not quiet:
            log.warning("quarantined %r: %s (moved to %s)", path.name, reason.replace("\n", " "), dst)
        try:
            _write_file(Path(f"{dst}.reason.txt"), f"original name: {path.name!r}\nreason: {reason}\n".encode())
        except OSError:
            pass  # the move is what matters; the reason is also in the log
        return True

    # ---- stop file ---------------------------------------------------------------------

    def request_stop(self, reason: str = "stop requested") -> None:
        tmp = self.root / f".STOP.{secrets.token_hex(6)}.tmp"
        try:
            _write_file(tmp, (reason + "\n").encode())
            os.rename(tmp, self.paths.stop)
            _fsync_dir(self.root)  # "stop requested" must not vanish in a crash after it was said
        except OSError as e:
            _unlink_quiet(tmp)
            raise self._os_error(e, "write the STOP file") from None

    def stop_requested(self) -> bool:
        """One stat: cheap enough to poll between training steps."""
        return os.path.lexists(self.paths.stop)

    def clear_stop(self) -> None:
        _unlink_quiet(self.paths.stop)


# --------------------------------------------------------------------------------------------
# helpers


def _parse_record(data: bytes, source: str, name: IndividualName | None) -> IndividualRecord:
    raw = parse_json(data, source)  # UnsafeFile (a CorruptIndividual) when not bounded JSON
    try:
        rec = IndividualRecord.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "record"
        raise CorruptIndividual(f"{source}: {loc}: {err['msg']}") from None
    try:
        _validate_dna(rec.dna, rec.genome)
    except (DNAError, ConfigError, ValidationError, ValueError, TypeError, KeyError, RecursionError, OverflowError) as e:
        what = "DNA" if rec.genome == "dna" else f"{rec.genome} genome"
        raise CorruptIndividual(f"{source}: invalid {what} ({str(e).splitlines()[0]})") from None
    if name is not None and name.id != rec.id:
        raise CorruptIndividual(f"{source}: record id {rec.id} does not match its folder name")
    return rec


def _read_death(path: Path) -> dict | None:
    """history/<id>.death.json as ``{killed_at, killed_by}``; None if absent or malformed."""
    try:
        d = read_json(path, "death")
        at, by = float(d["killed_at"]), d["killed_by"]  # type: ignore[index]
        if not (math.isfinite(at) and abs(at) < TIME_LIMIT) or not is_worker_id(by):
            raise ValueError(f"killed_at {at!r} or killed_by {by!r} out of range")
        return {"killed_at": at, "killed_by": by}
    except FileNotFoundError:
        return None
    except (OSError, CorruptIndividual, ValueError, KeyError, TypeError, OverflowError) as e:
        # Skipped on every read (not cached): a death record fixed later is read then.
        _warn_once(f"bad:{path}", f"ignoring malformed {path}: {e}")
        return None


def _pid_namespace() -> int | None:
    """Inode of this process's pid namespace (Linux), None where there is no such thing."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


_PID_NAMESPACE = _pid_namespace()


def heartbeat_fields(data: object) -> dict | None:
    """A heartbeat's fields checked and bounded; None for anything a worker would not write (a
    negative pid or a string start time raised out of ``is_dead_worker`` into every worker's
    recovery, ``lse status`` and the dashboard)."""
    if not isinstance(data, dict):
        return None
    host, pid, ct, counter = data.get("host"), data.get("pid"), data.get("create_time"), data.get("counter")
    ns = data.get("pid_namespace")
    if not isinstance(host, str) or len(host) > 255:
        return None
    if type(pid) is not int or not 0 < pid < 2**31:
        return None
    if type(ct) not in (int, float) or not (math.isfinite(ct) and 0 <= ct < TIME_LIMIT):
        return None
    if counter is not None and (type(counter) is not int or not 0 <= counter < 2**63):
        return None
    if ns is not None and (type(ns) is not int or not 0 <= ns < 2**64):
        return None
    return {"host": host, "pid": pid, "create_time": float(ct), "counter": counter, "pid_namespace": ns}


def _killer(rec: IndividualRecord, by_in_name: str | None) -> str | None:
    """Who killed it: the worker in the dead name, unless it was born dead (its record.json,
    written at birth, then already says "dead" and the name holds the publisher)."""
    if rec.killed_by is not None or rec.state == "dead":
        return rec.killed_by
    return by_in_name


def _structure_problem(folder: Path, files: tuple[str, ...]) -> str | None:
    """What is verifiably wrong with an individual's folder, checked again with lstat (so that a
    transient I/O error never gets a sound individual quarantined); None when it looks sound,
    has moved away meanwhile, or cannot be examined now."""
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return f"{folder.name!r} is not a folder"
    except OSError:
        return None
    for name in files:
        try:
            mode = os.lstat(folder / name).st_mode
        except FileNotFoundError:
            return f"incomplete individual: {name} is missing" if _exists(folder) else None
        except OSError:
            return None
        if not stat.S_ISREG(mode):
            return f"{name} is not a regular file"
    return None


def _foreign_reason(de: os.DirEntry) -> str:
    if de.is_symlink():
        return "a symlink is never an individual (it could point out of the population)"
    return f"name {de.name!r} is not <id>.<state>.<accuracy>"


def _exists(p: Path) -> bool:
    try:
        os.lstat(p)
        return True
    except OSError:
        return False


def _unlink_quiet(p: Path) -> None:
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass


def remove_tree(root: Path) -> bool:
    """Delete ``root`` and everything under it; True when it is gone.

    No recursion and no long paths: each sub-folder is first renamed to the top of ``root``
    (``root/.rm-<n>``), so every operation works on a path two levels deep whatever the depth of
    the tree (``shutil.rmtree`` recursed into a 1,000-deep chain until RecursionError, and paths
    past PATH_MAX fail with ENAMETOOLONG).  Symlinks are removed, never followed.  What refuses
    removal is left and makes the result False.
    """
    try:
        if not stat.S_ISDIR(os.lstat(root).st_mode):
            os.unlink(root)
            return True
    except FileNotFoundError:
        return True
    except OSError:
        return False
    ok = True
    todo = [root]
    serial = 0
    while todo:
        d = todo.pop()
        try:
            with os.scandir(d) as it:
                children = list(it)
        except FileNotFoundError:
            continue
        except OSError:
            ok = False
            continue
        for de in children:
            try:
                if de.is_dir(follow_symlinks=False):
                    if d == root:
                        todo.append(Path(de.path))
                    else:  # lift it to the top: its path stays short whatever the depth
                        serial += 1
                        top = root / f".rm-{serial}-{secrets.token_hex(3)}"
                        os.rename(de.path, top)
                        todo.append(top)
                else:
                    os.unlink(de.path)
            except FileNotFoundError:
                pass
            except OSError:
                ok = False
        if d != root:
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError:
                ok = False
    try:
        os.rmdir(root)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return ok


def _scandir_entries(d: Path) -> Iterator[os.DirEntry]:
    try:
        with os.scandir(d) as it:
            yield from list(it)
    except FileNotFoundError:
        return


def _listdir(d: Path) -> list[tuple[str, Path]]:
    return sorted((de.name, Path(de.path)) for de in _scandir_entries(d))
