"""Where everything of a population lives: one name per kind of file (lse.store.population
describes the layout), each built from checked ids so no name can leave the population."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from lse.core.records import IndividualName, is_id, is_worker_id

__all__ = ["HEARTBEAT_FILE", "RECORD_FILE", "WEIGHTS_FILE", "PopulationPaths", "checked_generation", "checked_id",
           "checked_wid", "parse_gc_name"]

RECORD_FILE = "record.json"


WEIGHTS_FILE = "weights.safetensors"


HEARTBEAT_FILE = "heartbeat.json"


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
        return self.history / f"{checked_id(individual_id)}.json"

    def history_death(self, individual_id: str) -> Path:
        return self.history / f"{checked_id(individual_id)}.death.json"

    def history_weights(self, individual_id: str) -> Path:
        """Weights GC kept because reports need them (see :meth:`Store.gc`)."""
        return self.history / f"{checked_id(individual_id)}.weights.safetensors"

    def claim(self, worker_id: str, individual_id: str) -> Path:
        """A worker's claim of a birth slot for ``individual_id`` (see lse.runners.worker)."""
        return self.worker(worker_id) / f"claim-{checked_id(individual_id)}"

    def worker(self, worker_id: str) -> Path:
        return self.workers / checked_wid(worker_id)

    def heartbeat(self, worker_id: str) -> Path:
        return self.worker(worker_id) / HEARTBEAT_FILE

    def child(self, worker_id: str, individual_id: str) -> Path:
        """Private scratch where a worker assembles a child before its birth rename."""
        return self.worker(worker_id) / f"child-{checked_id(individual_id)}"

    def private_file(self, worker_id: str, label: str) -> Path:
        """A fresh private temporary file name inside the worker's folder."""
        return self.worker(worker_id) / f"tmp-{label}-{secrets.token_hex(6)}"

    def gc_individual(self, individual_id: str, collector: str) -> Path:
        return self.gc / f"{checked_id(individual_id)}.{checked_wid(collector)}"

    def gc_worker(self, worker_id: str, collector: str) -> Path:
        return self.gc / f"worker.{checked_wid(worker_id)}.{checked_wid(collector)}"

    def quarantined(self, label: str) -> Path:
        return self.quarantine / f"{label}.{secrets.token_hex(4)}"

    def log(self, worker_id: str) -> Path:
        return self.logs / f"{checked_wid(worker_id)}.log"

    def eval_record(self, individual_id: str) -> Path:
        return self.eval / f"{checked_id(individual_id)}.json"

    def reference_curve(self, name: str) -> Path:
        """reference/<name>.json: one hand-designed anchor's curve (lse.runners.reference)."""
        return self.reference / f"{checked_wid(name)}.json"

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
        return self.generations / str(checked_generation(g))

    def generation_meta(self, g: int) -> Path:
        """generations/<g>/generation.json: the generation's slot count, written by its opener."""
        return self.generation(g) / "generation.json"

    def generation_children(self, g: int) -> Path:
        """generations/<g>/children/: slot k's child is children/<k>, until the generation is sealed."""
        return self.generation(g) / "children"

    def generation_child(self, g: int, slot: int) -> Path:
        return self.generation_children(g) / str(checked_generation(slot))

    def generation_sealed(self, g: int) -> Path:
        """generations/<g>/sealed/: children/ renamed once every slot is filled (no more entries)."""
        return self.generation(g) / "sealed"

    def generation_sealed_child(self, g: int, slot: int) -> Path:
        return self.generation_sealed(g) / str(checked_generation(slot))

    def generation_plan(self, g: int, version: int = 0) -> Path:
        """generations/<g>/plan/: a folder holding plan.json (a folder: rename never replaces a
        non-empty one, whereas renaming a file onto plan.json would replace a plan in use).
        ``version`` k > 0: plan.<k>/, the re-plan written when every earlier one is unreadable
        (lse.store.generations: a plan is never moved or replaced, only superseded)."""
        return self.generation(g) / ("plan" if version == 0 else f"plan.{checked_generation(version)}")

    def generation_claim(self, worker_id: str, g: int, slot: int) -> Path:
        """A worker's claim of slot ``slot`` of generation ``g`` (a hint that spreads work)."""
        return self.worker(worker_id) / f"gen-{checked_generation(g)}-{checked_generation(slot)}"


def checked_id(individual_id: str) -> str:
    if not is_id(individual_id):
        raise ValueError(f"not an individual id: {individual_id!r}")
    return individual_id


def checked_wid(worker_id: str) -> str:
    if not is_worker_id(worker_id):
        raise ValueError(f"not a worker id: {worker_id!r} (letters, digits, '-', '_'; at most 80)")
    return worker_id


def checked_generation(n: int) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"not a generation or slot number: {n!r}")
    return n


def parse_gc_name(name: str) -> tuple[str, str, str] | None:
    """gc/<id>.<collector> -> ("individual", id, collector);
    gc/worker.<wid>.<collector> -> ("worker", wid, collector); anything else None."""
    parts = name.split(".")
    if len(parts) == 2 and is_id(parts[0]) and is_worker_id(parts[1]):
        return "individual", parts[0], parts[1]
    if len(parts) == 3 and parts[0] == "worker" and is_worker_id(parts[1]) and is_worker_id(parts[2]):
        return "worker", parts[1], parts[2]
    return None
