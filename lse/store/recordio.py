"""What a population's files hold, checked: records, death records, heartbeats, an individual's
folder.  Pure parsing and validation (plus ``lstat``), shared by the store, the generation
barrier and the dashboard's reader; every read itself goes through lse.store.saferead."""

from __future__ import annotations

import logging
import math
import os
import stat
import threading
from pathlib import Path

from pydantic import ValidationError

from lse.core.records import TIME_LIMIT, IndividualName, IndividualRecord, is_worker_id
from lse.errors import ConfigError, CorruptIndividual, DNAError
from lse.store.durable import path_exists
from lse.store.saferead import parse_json, read_json

__all__ = ["LISTED", "PID_NAMESPACE", "foreign_reason", "heartbeat_fields", "killer", "parse_record", "pid_namespace",
           "read_death", "structure_problem", "validate_dna", "warn_foreign", "warn_once"]

log = logging.getLogger("lse.store.population")

_warned: set[str] = set()


_warned_lock = threading.Lock()


#: foreign names listed one by one per listing (or quarantined one by one per GC pass); the
#: rest are counted in one line.  5,000 stray files once gave 10,000 warning lines.
LISTED = 10


def warn_foreign(folder: Path, names: list[str], then: str) -> None:
    """One warning per foreign name (once per process), at most LISTED names per call, the rest
    summarised in one line."""
    with _warned_lock:
        new = [n for n in names if f"foreign:{folder / n}" not in _warned]
        _warned.update(f"foreign:{folder / n}" for n in new)
    for n in new[:LISTED]:
        log.warning(f"ignoring foreign entry {n!r} in {folder} ({then})")
    if len(new) > LISTED:
        log.warning(f"ignoring {len(new) - LISTED} more foreign entries in {folder} (not listed one by one; {then})")


def warn_once(key: str, message: str) -> None:
    """One warning per key per process: 250 workers listing the same foreign file every few
    seconds must not flood the logs."""
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning(message)


def validate_dna(dna: dict, kind: str = "dna") -> None:
    """Validate a record's genome by its kind (lse.core.genomes; raises DNAError, ValidationError,
    ValueError for anything malformed or of an unknown kind)."""
    from lse.core.genomes import parse_genome

    parse_genome(kind, dna)


def parse_record(data: bytes, source: str, name: IndividualName | None) -> IndividualRecord:
    raw = parse_json(data, source)  # UnsafeFile (a CorruptIndividual) when not bounded JSON
    try:
        rec = IndividualRecord.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "record"
        raise CorruptIndividual(f"{source}: {loc}: {err['msg']}") from None
    try:
        validate_dna(rec.dna, rec.genome)
    except (DNAError, ConfigError, ValidationError, ValueError, TypeError, KeyError, RecursionError, OverflowError) as e:
        what = "DNA" if rec.genome == "dna" else f"{rec.genome} genome"
        raise CorruptIndividual(f"{source}: invalid {what} ({str(e).splitlines()[0]})") from None
    if name is not None and name.id != rec.id:
        raise CorruptIndividual(f"{source}: record id {rec.id} does not match its folder name")
    return rec


def read_death(path: Path) -> dict | None:
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
        warn_once(f"bad:{path}", f"ignoring malformed {path}: {e}")
        return None


def pid_namespace() -> int | None:
    """Inode of this process's pid namespace (Linux), None where there is no such thing."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


PID_NAMESPACE = pid_namespace()


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
    births = data.get("births")
    if births is not None and (type(births) is not int or not 0 <= births < 2**53):
        return None
    return {"host": host, "pid": pid, "create_time": float(ct), "counter": counter, "pid_namespace": ns,
            "births": births}


def killer(rec: IndividualRecord, by_in_name: str | None) -> str | None:
    """Who killed it: the worker in the dead name, unless it was born dead (its record.json,
    written at birth, then already says "dead" and the name holds the publisher)."""
    if rec.killed_by is not None or rec.state == "dead":
        return rec.killed_by
    return by_in_name


def structure_problem(folder: Path, files: tuple[str, ...]) -> str | None:
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
            return f"incomplete individual: {name} is missing" if path_exists(folder) else None
        except OSError:
            return None
        if not stat.S_ISREG(mode):
            return f"{name} is not a regular file"
    return None


def foreign_reason(de: os.DirEntry) -> str:
    if de.is_symlink():
        return "a symlink is never an individual (it could point out of the population)"
    return f"name {de.name!r} is not <id>.<state>.<accuracy>"
