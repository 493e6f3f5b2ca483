"""What the population store says about one individual: ids, directory names and the record.

* :func:`new_id` -- ids unique without coordination across hosts and ordered by birth time, so
  that ``ls individuals/`` and ``sorted(ids)`` list the population in birth order.
* :class:`IndividualName` -- the strict grammar of an individual's directory name
  ``<id>.<state>.<fitness>[.<by>]`` (paper footnote 2: the file name carries the state, and
  here also the fitness, so that a tournament needs a directory listing and no file reads).
  The fitness is the algorithm's scalar: the validation accuracy for the paper's algorithm,
  something else (possibly above 1 or below 0) for others.
* :class:`IndividualRecord` -- the small JSON record kept for every individual forever.

Pure: no filesystem access here (the store does that).
"""

from __future__ import annotations

import math
import functools
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Version of record.json / history/<id>.json this code writes.  A newer file is refused with
#: a message saying to upgrade (the store quarantines it: moved aside, never deleted).
RECORD_SCHEMA_VERSION = 2
# Version 2 added parents, objectives, fitness, age, species and barrier_generation (the
# algorithm seam).  A version-1 record reads as version 2: parents from parent_id, fitness and
# objectives from val_accuracy (see IndividualRecord._upgrade).

# 20240131T235959123456Z-9f2c04ab: UTC time to the microsecond (sorts by birth) and 32 random
# bits (two hosts in the same microsecond still differ; no coordination, no shared counter).
ID_RE = r"[0-9]{8}T[0-9]{12}Z-[0-9a-f]{8}"
_ID_FULL = re.compile(rf"^{ID_RE}$")

# Worker ids appear in directory names after a dot, so they may not contain one.
WORKER_ID_RE = r"[A-Za-z0-9][A-Za-z0-9_-]{0,79}"
_WORKER_ID_FULL = re.compile(rf"^{WORKER_ID_RE}$")

# Fitness: fixed 6 decimals, at most 9 integer digits, optional minus sign; "none" for a child
# that failed.  The bound keeps names short and parsing exact.
_ACC_RE = r"-?[0-9]{1,9}\.[0-9]{6}|none"
#: largest |fitness| a directory name can carry
FITNESS_LIMIT = 1e9
_NAME_RE = re.compile(
    rf"^(?P<id>{ID_RE})\.(?:(?P<alive>alive)\.(?P<acc_a>{_ACC_RE})"
    rf"|(?P<dead>dead)\.(?P<acc_d>{_ACC_RE})\.(?P<by>{WORKER_ID_RE}))$"
)

State = Literal["alive", "dead"]

_id_lock = threading.Lock()
_last_stamp = ""


def new_id(now: float | None = None) -> str:
    """A fresh individual id: ``YYYYMMDDTHHMMSSffffffZ-<8 hex>``.

    Within one process ids are strictly increasing even when the clock stands still or steps
    back (NTP), so a worker's own children sort in the order it made them.
    """
    global _last_stamp
    t = time.time() if now is None else now
    stamp = datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    with _id_lock:
        if now is None and stamp <= _last_stamp:
            stamp = _bump(_last_stamp)
        if now is None:
            _last_stamp = stamp
    return f"{stamp}-{secrets.token_hex(4)}"


def _bump(stamp: str) -> str:
    """The stamp one microsecond after ``stamp``."""
    dt = datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ")
    return (dt + timedelta(microseconds=1)).strftime("%Y%m%dT%H%M%S%fZ")


def is_id(text: str) -> bool:
    """An id: the pattern, and a stamp that is a real UTC time (a month 13 matched the pattern
    and then raised in every worker that computed its birth time)."""
    return bool(_ID_FULL.fullmatch(text)) and _real_stamp(text[:22])


@functools.lru_cache(maxsize=65536)
def _real_stamp(stamp: str) -> bool:
    try:
        datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ")
        return True
    except ValueError:
        return False


def is_worker_id(text: str) -> bool:
    return bool(_WORKER_ID_FULL.fullmatch(text))


def id_time(individual_id: str) -> float:
    """Unix time encoded in an id (its birth stamp)."""
    dt = datetime.strptime(individual_id[:22], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=timezone.utc)
    return dt.timestamp()


def format_fitness(fitness: float | None) -> str:
    """The fitness as a directory name writes it (6 decimals); "none" for a failed child."""
    if fitness is None:
        return "none"
    if not (math.isfinite(fitness) and abs(fitness) < FITNESS_LIMIT):
        raise ValueError(f"fitness must be finite and below {FITNESS_LIMIT:g} in size, got {fitness!r}")
    text = f"{fitness:.6f}"
    return "0.000000" if text == "-0.000000" else text


@dataclass(frozen=True)
class IndividualName:
    """The parsed directory name of an individual."""

    id: str
    state: State
    fitness: float | None  # the algorithm's fitness rounded to 6 decimals; None for a failed child
    by: str | None = None  # dead: the worker that killed it (or that published it dead)

    @classmethod
    def parse(cls, name: str) -> "IndividualName | None":
        """Strict parse; None for anything that is not exactly an individual's name
        (separators, newlines, '..', extra dots: all refused by the regex)."""
        m = _NAME_RE.fullmatch(name)  # fullmatch: "$" would accept a trailing newline
        if m is None or not _real_stamp(m["id"][:22]):
            return None
        acc = m["acc_a"] or m["acc_d"]
        fitness = None if acc == "none" else float(acc)
        if acc == "-0.000000" or (acc.startswith("0") and acc[1] != ".") or acc.startswith("-0") and acc[2] != ".":
            return None  # one spelling per value: no "-0.000000", no leading zeros
        if m["alive"]:
            return cls(m["id"], "alive", fitness)
        return cls(m["id"], "dead", fitness, m["by"])

    def render(self) -> str:
        acc = format_fitness(self.fitness)
        if self.state == "alive":
            return f"{self.id}.alive.{acc}"
        assert self.by is not None, "a dead name carries the worker that killed it"
        return f"{self.id}.dead.{acc}.{self.by}"


class Inheritance(BaseModel):
    model_config = ConfigDict(extra="ignore")
    kept: int = Field(0, ge=0, description="child tensors copied (whole or in part) from a parent")
    reinitialised: int = Field(0, ge=0, description="child tensors freshly initialised")
    by_parent: dict[str, int] = Field(
        default_factory=dict, description="parent id -> child tensors copied from it (two-parent variation)"
    )


class Flops(BaseModel):
    model_config = ConfigDict(extra="ignore")
    train_per_batch: float = Field(0.0, ge=0, description="FLOPs of one training step (forward+backward)")
    eval_per_batch: float = Field(0.0, ge=0, description="FLOPs of one validation batch (forward)")
    total: float = Field(0.0, ge=0, description="this individual's cost F_t*N_t + F_v*N_v (section 3.5)")


class IndividualRecord(BaseModel):
    """The small record of one individual; kept in history/ after its weights are collected."""

    model_config = ConfigDict(extra="ignore")

    schema_version: int = Field(RECORD_SCHEMA_VERSION, description="record schema version")
    id: str = Field(description="individual id (see new_id)")
    parent_id: str | None = Field(None, description="the first parent (structure); None for an initial individual")
    parents: list[str] = Field(default_factory=list, description="every parent, structure parent first")
    generation: int = Field(0, ge=0, description="lineage depth: 1 + the first parent's")
    algorithm: str = Field("real2017", description="the algorithm that made this individual")
    genome: str = Field("dna", description="genome kind of `dna` (lse.core.genomes): 'dna' is the paper's graph")
    dna: dict = Field(description="the genome as JSON; for kind 'dna', lse.core.dna.DNA (model_dump(mode='json'))")
    mutation: dict | None = Field(None, description="MutationRecord as JSON; None for initial individuals")
    inheritance: Inheritance | None = Field(None, description="weights kept/reinitialised from the parent")
    val_accuracy: float | None = Field(None, ge=0.0, le=1.0, description="validation accuracy; None when failed or not a classifier")
    objectives: dict[str, float] = Field(default_factory=dict, description="objective name -> value (all maximised)")
    fitness: float | None = Field(None, description="the scalar selection uses (in the folder name); None when failed")
    age: int | None = Field(None, ge=0, description="age, for algorithms that count it (001: trainings survived)")
    species: str | None = Field(None, description="species label, for algorithms with speciation")
    barrier_generation: int | None = Field(None, ge=0, description="generation index under the generation barrier")
    failed_reason: str | None = Field(None, description="why the child was born dead (NaN loss, OOM, ...)")
    steps: int = Field(0, ge=0, description="SGD steps trained")
    examples: int = Field(0, ge=0, description="training examples seen")
    flops: Flops | None = Field(None, description="FLOPs (section 3.5)")
    params: int | None = Field(None, ge=0, description="trainable parameters")
    worker: str = Field("", description="worker id that trained and published it")
    host: str = Field("", description="host name of that worker")
    born_at: float | None = Field(None, description="unix seconds at publication (publisher's clock)")
    train_seconds: float | None = Field(None, ge=0, description="wall seconds of training")
    eval_seconds: float | None = Field(None, ge=0, description="wall seconds of validation")
    state: State = Field("alive", description="alive or dead (from the directory name when read)")
    killed_at: float | None = Field(None, description="unix seconds of the kill (killer's clock); None if alive")
    killed_by: str | None = Field(None, description="worker id that killed it")
    collected: bool = Field(False, description="weights garbage-collected; only the record remains")
    extra: dict = Field(default_factory=dict, description="free-form details (e.g. trainer info)")

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_v1(cls, data: object) -> object:
        """Fields a version-1 record (before the algorithm seam) did not have, as version 2
        would say them: parents from parent_id; fitness and objectives from val_accuracy (the
        paper's fitness).  Writers that leave them out get the same defaults."""
        if isinstance(data, dict):
            data = dict(data)
            if "parents" not in data:
                data["parents"] = [data["parent_id"]] if data.get("parent_id") else []
            acc = data.get("val_accuracy")
            data.setdefault("fitness", acc)
            if "objectives" not in data:
                data["objectives"] = {} if acc is None else {"val_accuracy": acc}
        return data

    @field_validator("fitness")
    @classmethod
    def _finite_fitness(cls, v: float | None) -> float | None:
        if v is not None and not (math.isfinite(v) and abs(v) < FITNESS_LIMIT):
            raise ValueError(f"fitness must be finite and below {FITNESS_LIMIT:g} in size, got {v!r}")
        return v

    @field_validator("parents")
    @classmethod
    def _strict_parents(cls, v: list[str]) -> list[str]:
        for p in v:
            if not is_id(p):
                raise ValueError(f"not an individual id: {p!r}")
        return v

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v > RECORD_SCHEMA_VERSION:
            raise ValueError(f"written by a newer lse (schema {v}); upgrade lse")
        return v

    @field_validator("id")
    @classmethod
    def _strict_id(cls, v: str) -> str:
        if not is_id(v):
            raise ValueError(f"not an individual id: {v!r}")
        return v

    @field_validator("parent_id")
    @classmethod
    def _strict_parent(cls, v: str | None) -> str | None:
        if v is not None and not is_id(v):
            raise ValueError(f"not an individual id: {v!r}")
        return v

    @property
    def mutation_name(self) -> str | None:
        return None if self.mutation is None else self.mutation.get("name")
