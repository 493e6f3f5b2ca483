"""A worker's stop conditions: a signal, the STOP file, a vanished launcher, ``max_hours``
since the experiment was created (experiment.json's mtime: the one experiment clock), and the
stop fields of experiment.json as a resume may have changed them."""

from __future__ import annotations

import os
import signal
import threading
import time

from lse.config import ExperimentConfig
from lse.store import Store, clock

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
        self.max_hours: float | None = None
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
            return f"max_hours={self.max_hours} reached"
        return None

    def should_stop(self) -> bool:
        return self.reason() is not None

    def check(self, limits: ExperimentConfig, births: set[str] | None, flops_spent) -> None:
        """Raise StopCondition when any condition is met: the ones of :meth:`reason` under the
        stop fields ``limits`` (experiment.json now), ``max_individuals`` births, or
        ``max_flops`` spent (``flops_spent(births)``, called only when that limit is set)."""
        self.max_hours = limits.max_hours
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
