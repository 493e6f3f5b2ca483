"""Which workers are alive, and what recovery does with the leftovers of those that are not.

A worker writes ``workers/<wid>/heartbeat.json`` (host, pid, process start time, PID namespace,
a counter) every few seconds (:class:`WorkerHandle`).  On its own host and PID namespace the
process table decides; elsewhere the counter must move within ``stale_after`` seconds of the
reader's clock.  Recovery renames a dead worker's folder into ``gc/`` and deletes it, and
finishes collections whose collector died.  One :class:`Liveness` per store
(``store.liveness``); ``Store.recover()`` and ``Store.is_dead_worker()`` run it.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psutil

from lse.core.records import is_worker_id
from lse.errors import CorruptIndividual, StoreError
from lse.store.durable import dumps, listdir_sorted, unlink_quiet, write_file
from lse.store.paths import HEARTBEAT_FILE, checked_wid, parse_gc_name
from lse.store.recordio import PID_NAMESPACE, heartbeat_fields, warn_once
from lse.store.saferead import read_json

if TYPE_CHECKING:
    from lse.store.population import Store

__all__ = ["Liveness", "RecoverReport", "WorkerHandle"]


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
        #: children this worker has published: its loop sets it, every beat publishes it (the
        #: launcher tells a crash-looping worker from one that made progress by it)
        self.births = 0
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
                "births": self.births,
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
        self.store.liveness.reclaim_worker(self.id, collector=self.id)
        self.store.worker_closed(self)


class Liveness:
    """Liveness judgements and recovery for one store; remembers its observations of other
    hosts' heartbeats (each call of :meth:`is_dead_worker` is one observation)."""

    def __init__(self, store: "Store") -> None:
        self.store = store
        # worker id -> (heartbeat token, monotonic time this reader first saw that token)
        self._observations: dict[str, tuple[object, float]] = {}

    def register(self, worker_id: str | None, *, auto_heartbeat: bool, heartbeat_seconds: float) -> WorkerHandle:
        """Create ``workers/<wid>/`` with a first heartbeat; ``wid`` defaults to host-pid-random.

        A given ``worker_id`` whose folder exists is taken over only if its owner is provably
        dead (same host, process gone); otherwise StoreError.
        """
        store = self.store
        proc = psutil.Process()
        if worker_id is None:
            host = "".join(c if c.isalnum() or c == "-" else "-" for c in store.host)[:40].strip("-") or "host"
            worker_id = f"{host}-{os.getpid()}-{secrets.token_hex(3)}"
        checked_wid(worker_id)
        wdir = store.paths.worker(worker_id)
        try:
            try:
                wdir.mkdir()
            except FileExistsError:
                if self.is_dead_worker(worker_id) is not True:
                    raise StoreError(
                        f"worker id {worker_id!r} is in use by a live worker ({wdir})",
                        "choose another worker id, or stop the other worker",
                    ) from None
                self.reclaim_worker(worker_id, collector=worker_id)
                wdir.mkdir()
        except FileNotFoundError:
            raise StoreError(
                f"{store.paths.workers} does not exist", "is this a population? create it first (Store.create)"
            ) from None
        except OSError as e:
            raise store.os_error(e, "register a worker") from None
        handle = WorkerHandle(store, worker_id, store.host, proc.pid, proc.create_time())
        handle.heartbeat()
        if auto_heartbeat:
            handle.start_heartbeat(heartbeat_seconds)
        return handle

    def heartbeat_of(self, worker_id: str) -> dict | None:
        """The heartbeat as a dict whose fields have the types and ranges a worker writes
        (``heartbeat_fields``); None when absent, unreadable or malformed (a worker with no
        readable heartbeat is judged by the other-host rule: it must show a beat in time)."""
        try:
            data = read_json(self.store.paths.heartbeat(worker_id), "heartbeat")
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
        if hb is not None and hb["host"] == self.store.host and hb["pid_namespace"] in (None, PID_NAMESPACE):
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
        return True if now - seen[1] >= self.store.stale_after else None

    def recover(self) -> RecoverReport:
        """Reclaim leftovers of crashed workers (scratch, half-collected folders)."""
        report = RecoverReport()
        mine = self.store.current_worker.id if self.store.current_worker is not None else None
        for name, _path in listdir_sorted(self.store.paths.workers):
            if name == mine or not is_worker_id(name):
                continue
            if self.is_dead_worker(name) is True:
                if self.reclaim_worker(name, collector=self.store.worker.id):
                    report.workers_reclaimed.append(name)
                self._observations.pop(name, None)
        live_workers = {n for n, _ in listdir_sorted(self.store.paths.workers)}
        for name, path in listdir_sorted(self.store.paths.gc):
            parsed = parse_gc_name(name)
            if parsed is None:
                continue
            kind, what, collector = parsed
            if collector in live_workers:
                continue  # its collector is still at work
            # Claim the leftover by one rename so that two recoverers never finish it twice.
            me = self.store.worker.id
            claim = self.store.paths.gc_individual(what, me) if kind == "individual" else self.store.paths.gc_worker(what, me)
            if claim == path or not self.store.rename(path, claim):
                continue
            if kind == "individual":
                self.store.collector.finish_individual(claim, what, None)
            else:
                self.store.collector.remove_or_quarantine(claim)
            report.gc_finished.append(name)
        return report

    def reclaim_worker(self, worker_id: str, collector: str) -> bool:
        src = self.store.paths.worker(worker_id)
        dst = self.store.paths.gc_worker(worker_id, collector)
        try:
            if not self.store.rename(src, dst):
                return False
        except OSError as e:
            raise self.store.os_error(e, f"reclaim worker {worker_id}") from None
        self.store.collector.remove_or_quarantine(dst)
        return True
