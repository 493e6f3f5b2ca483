"""A worker's stop conditions: a signal, the STOP file, a vanished launcher, ``max_hours``
since the experiment was created (experiment.json's mtime: the one experiment clock), and the
stop fields of experiment.json as a resume may have changed them."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Callable

from lse.config import ExperimentConfig
from lse.errors import DiskFull, StopRequested
from lse.store import Store, clock

log = logging.getLogger("lse.runners.worker")

#: environment variable through which the local launcher tells a worker its pid
LAUNCHER_PID_ENV = "LSE_LAUNCHER_PID"


class StopCondition(Exception):
    """A stop condition is met: the worker finishes its loop with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Stopper:
    """Every stop condition of a worker.  ``should_stop`` is cheap (a flag, one stat, a clock)
    and is polled during training; ``between_individuals`` also counts births and FLOPs."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.signalled = threading.Event()
        self.signal_name: str | None = None
        self.created_at = clock.created_at(store)  # max_hours and the step schedule count from it
        self.max_hours: float | None = None  # when evolution stops: max_hours less finish_minutes
        self.finish_minutes: float | None = None
        # Set by the local launcher: if it dies (SIGKILL, lost terminal) its workers stop too
        # instead of running on unsupervised.
        ppid = os.environ.get(LAUNCHER_PID_ENV, "")
        self.launcher_pid = int(ppid) if ppid.isdigit() else None

    def handle_signal(self, signum: int, _frame: object) -> None:
        # Only a flag: never raise from a handler (it could interrupt a rename half-way
        # through the Python code around it).
        self.signal_name = signal.Signals(signum).name
        self.signalled.set()

    def reason(self) -> str | None:
        if self.signalled.is_set():
            return f"signal {self.signal_name}"
        if self.store.stop_requested():
            return "STOP file"
        if self.launcher_pid is not None and os.getppid() != self.launcher_pid:
            return "the launcher is gone"
        if self.max_hours is not None and time.time() - self.created_at >= self.max_hours * 3600:
            if self.finish_minutes:
                return f"evolution's time is up ({self.finish_minutes:g} minutes of max_hours left to finish)"
            return f"max_hours={self.max_hours} reached"
        return None

    def should_stop(self) -> bool:
        return self.reason() is not None

    def check(self, limits: ExperimentConfig, births: set[str] | None, flops_spent) -> None:
        """Raise StopCondition when any condition is met: the ones of :meth:`reason` under the
        stop fields ``limits`` (experiment.json now), ``max_individuals`` births, or
        ``max_flops`` spent (``flops_spent(births)``, called only when that limit is set)."""
        self.max_hours, self.finish_minutes = limits.evolve_hours, limits.finish_minutes
        r = self.reason()
        if r:
            raise StopCondition(r)
        if limits.max_individuals is not None and len(births) >= limits.max_individuals:
            raise StopCondition(f"max_individuals={limits.max_individuals} reached")
        if limits.max_flops is not None:
            spent = flops_spent(births)
            if spent >= limits.max_flops:
                raise StopCondition(f"max_flops={limits.max_flops:.3g} reached ({spent:.3g} spent)")


def read_stop_fields(store: Store) -> ExperimentConfig:
    """experiment.json as it is now (a resume may have changed its stop fields)."""
    try:
        return ExperimentConfig.from_json(store.paths.experiment.read_text(), str(store.paths.experiment))
    except OSError:
        return store.config


def publish_when_space(stopper: Stopper, publish: Callable[[], object], child_id: str) -> None:
        """Publish; on a full disk keep the trained child in memory and retry with backoff
        (1, 2, 4 ... 60 s), one log line per attempt.  A child may have cost hours of training,
        and its parent's rival was already killed: dropping it would waste both.  A stop (signal,
        STOP file) while waiting drops it, nothing published."""
        delay = 1.0
        while True:
            try:
                publish()
                return
            except DiskFull as e:
                log.error("%s; keeping %s in memory, retrying in %.0f s", e, child_id, delay)
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline:
                if stopper.should_stop():
                    log.info("stop while the disk is full: %s discarded, nothing published", child_id)
                    raise StopRequested(stopper.reason() or "stop")
                stopper.signalled.wait(min(0.5, max(0.0, deadline - time.monotonic())))
            delay = min(2 * delay, 60.0)
