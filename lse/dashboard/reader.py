"""The dashboard's view of one population: a read-only, incremental reader.

The dashboard is one more reader of the population directory, next to the workers.  It never
writes and never takes a lock: it lists the same folders the store lists and reads the same
files, and it **does not quarantine** what it cannot trust (``Store.records()`` would move a
malformed entry into ``quarantine/``, a write): it counts it and serves nothing of it.

Incremental, because a population of 1,000 alive and 20,000 in history must stay interactive:
an individual's record never changes once published (only its state moves, by renames:
``individuals/<id>.alive`` -> ``.dead`` -> ``gc/`` -> ``history/<id>.json``), so each record is
read once, and each refresh costs three directory listings plus the reads of what is new.  The
folders are listed in the order an individual moves through them (individuals, gc, history), so
an individual moving during a refresh is always seen in a later listing, never missed.

Every change gets a sequence number from a counter shared by all populations of one dashboard;
a browser asks for "what changed since N" and receives only those rows (the cursor).

Records are validated by the store's own parser (same rules as its listings: JSON, schema,
DNA, id).  The optional fields of schema-v2 records (``parents``, ``objectives``, ``fitness``,
``age``, ``species``, ``barrier_generation``) are taken from the raw JSON, type-checked, because
today's :class:`~lse.core.records.IndividualRecord` ignores unknown keys.
"""

from __future__ import annotations

import itertools

import logging
import math
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

from lse.reports import curves as cv
from lse.dashboard import panels
from lse.core.datasets import classes_of
from lse.errors import CorruptIndividual
from lse.core.records import IndividualName, id_time, is_id, is_worker_id
from lse.store.paths import PopulationPaths
from lse.store.population import Store
from lse.store.recordio import heartbeat_fields, parse_record, read_death
from lse.store.scan import PopulationScan
from lse.store.saferead import parse_json, read_bytes, read_json

log = logging.getLogger(__name__)

#: A record or experiment.json bigger than this is not read (a hostile multi-GB file must not
#: exhaust the dashboard's memory); real records are a few kB.
MAX_FILE_BYTES = 4 << 20

#: The fields of one row, in the order the wire format sends them (columnar, see rows()).
FIELDS = (
    "id", "born_at", "val", "failed", "flops", "parent", "mutation", "generation", "worker", "params",
    "state", "collected", "killed_at", "killed_by", "test",
    "parents", "objectives", "fitness", "age", "species", "barrier_generation",
)


class Counter:
    """The change counter shared by every population of one dashboard (thread-safe)."""

    def __init__(self) -> None:
        self._it = itertools.count(1)
        self._lock = threading.Lock()
        self.last = 0

    def __call__(self) -> int:
        with self._lock:
            self.last = next(self._it)
            return self.last


def _read_small(path: Path, kind: str = "record") -> bytes:
    """The bytes of a regular file that is not a symlink, by the store's one safe read: opened
    with O_NOFOLLOW and O_NONBLOCK (a FIFO never blocks a refresh, which holds the lock every
    request waits for), fstat-checked, size-capped (raises OSError / CorruptIndividual)."""
    return read_bytes(path, kind)


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _int(x: object) -> int | None:
    return x if isinstance(x, int) and not isinstance(x, bool) else None


def v2_fields(raw: dict) -> dict:
    """The optional schema-v2 fields of a raw record, each type-checked (a wrong type is dropped,
    as if the algorithm had not recorded it)."""
    parents = raw.get("parents")
    objectives = raw.get("objectives")
    species = raw.get("species")
    return {
        "parents": [p for p in parents if isinstance(p, str) and is_id(p)][:16] if isinstance(parents, list) else None,
        "objectives": {str(k)[:64]: float(v) for k, v in list(objectives.items())[:16] if _finite(v)}
        if isinstance(objectives, dict) else None,
        "fitness": float(raw["fitness"]) if _finite(raw.get("fitness")) else None,
        "age": _int(raw.get("age")),
        "species": species[:100] if isinstance(species, str) else None,
        "barrier_generation": _int(raw.get("barrier_generation")),
    }


def parse(data: bytes, source: str, name: IndividualName | None):
    """(IndividualRecord, v2 fields) of a record file, by the store's rules (CorruptIndividual)."""
    rec = parse_record(data, source, name)
    raw = parse_json(data, source)  # valid, bounded JSON: parse_record checked
    return rec, v2_fields(raw if isinstance(raw, dict) else {})


class PopulationReader:
    """Everything the dashboard shows about one population, refreshed incrementally."""

    def __init__(self, root: str | os.PathLike, label: str, counter: Counter | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.paths = PopulationPaths(root)
        self.root = self.paths.root
        self.label = label
        self.tick = counter or Counter()
        self.clock = clock
        # Only Store.is_dead_worker is ever called on this (it reads heartbeats and the process
        # table): the judgement `lse status` and recovery use.  Never open(): it creates folders.
        self._liveness = Store(self.root, read_only=True)
        self.rows: dict[str, dict] = {}
        self.removed: dict[str, int] = {}  # id -> seq: gone from every folder (quarantined by a worker)
        self._born_dead: set[str] = set()
        self._deaths: dict[str, tuple[float, str]] = {}
        self._tests: dict[str, tuple[int, float | None]] = {}  # id -> (eval file mtime_ns, accuracy)
        self._bad: dict[str, str] = {}  # folder/name -> reason: malformed, counted, never served
        self._retry: set[str] = set()  # ids whose record could not be read now: read again next refresh
        self._children: dict[str, list[str]] = {}
        self._births: dict[str, int] = {}  # worker id -> individuals it published
        # The last listings (names) of individuals/, gc/, history/, and what they said.
        self.scan = PopulationScan(self.paths)  # the names, parsed once each (lse.store.scan)
        self._listed: dict[str, IndividualName] = {}
        self._in_gc: dict[str, str] = {}
        self._history: set[str] = set()
        self._foreign: set[tuple[str, str]] = set()
        self._inds: dict[str, cv.Individual] = {}
        self.foreign = 0  # names in individuals/ and history/ that are not individuals (incl. symlinks)
        self.quarantined = 0  # entries in quarantine/ (reason files not counted)
        self.config: dict = {}
        self.config_error: str | None = None
        self.created_at: float | None = None
        self.stop_file = False
        self.workers: list[dict] = []
        self.panels: dict[str, tuple[int, object]] = {}
        self._panels_at = -1  # counter value the panels were computed for
        self._changed_since_panels = True
        self.refreshed_at = 0.0
        self.refresh_seconds = 0.0
        self._lock = threading.Lock()

    # ---- reading ----------------------------------------------------------------------------

    def _read_record(self, path: Path, name: IndividualName | None, key: str):
        """Read and validate one record; None (and counted as malformed) when it cannot be
        trusted; None (not counted) when it moved away meanwhile."""
        if key in self._bad:
            return None
        try:
            return parse(_read_small(path), str(path.relative_to(self.root)), name)
        except FileNotFoundError:
            # Moved on (killed, collected) during the refresh -- or a folder without its record,
            # which the store would quarantine as incomplete: look again at the folder itself.
            if name is not None and _is_real_dir(path.parent):
                self._bad[key] = "incomplete individual: record.json is missing"
            return None
        except NotADirectoryError:
            self._bad[key] = "not a folder"
        except CorruptIndividual as e:
            self._bad[key] = e.message if hasattr(e, "message") else str(e)
        except OSError:
            self._retry.add(name.id if name is not None else Path(key).name.split(".", 1)[0])
            return None  # unreadable now (permissions, I/O): left out, tried again next refresh
        return None

    def _add(self, rec, extra: dict) -> None:
        born = rec.born_at if _finite(rec.born_at) else id_time(rec.id)
        failed = rec.failed_reason is not None or rec.val_accuracy is None
        row = {
            "id": rec.id, "born_at": float(born), "val": rec.val_accuracy, "failed": failed,
            "flops": float(rec.flops.total) if rec.flops is not None else 0.0,
            "parent": rec.parent_id, "mutation": rec.mutation_name, "generation": rec.generation,
            "worker": rec.worker, "params": rec.params,
            "state": "alive", "collected": False, "killed_at": None, "killed_by": None, "test": None,
            **extra,
        }
        if rec.state == "dead":
            self._born_dead.add(rec.id)
        # A sequence number at once: a row without one (its batch failed before _restate) made
        # every later request fail with KeyError 'seq'.
        row["seq"] = self.tick()
        self.rows[rec.id] = row
        self._births[rec.worker or ""] = self._births.get(rec.worker or "", 0) + 1
        self.removed.pop(rec.id, None)
        for p in {rec.parent_id, *(extra.get("parents") or [])} - {None}:
            self._children.setdefault(p, []).append(rec.id)

    def refresh(self) -> bool:
        """Read what changed since the last refresh; True when anything did."""
        with self._lock:
            t0 = time.perf_counter()
            before = self.tick.last
            self._refresh_config()
            listed = self._refresh_individuals()
            self._refresh_tests()
            self._refresh_workers()
            self.refreshed_at = self.clock()
            changed = listed or self.tick.last != before
            if changed:
                self._changed_since_panels = True
            self.refresh_seconds = time.perf_counter() - t0
            return changed

    def _refresh_config(self) -> None:
        p = self.paths.experiment
        try:
            st = os.lstat(p)
            if self.created_at is None or st.st_mtime != self.created_at:
                data = read_json(p, "config")
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
                self.config, self.config_error, self.created_at = data, None, st.st_mtime
                self.tick()
        except (OSError, ValueError, CorruptIndividual) as e:
            self.config_error = f"experiment.json unreadable: {str(e).splitlines()[0][:200]}"
        self.stop_file = os.path.lexists(self.paths.stop)

    def _refresh_individuals(self) -> bool:
        """The population scan (lse.store.scan: three listings, each new name parsed once), then
        work only on the names that appeared or disappeared since the last refresh (an idle
        refresh of 40k names costs a few ms)."""
        changes = self.scan.refresh()
        touched: set[str] = set()
        # each name with what the scan parsed it as (None: foreign, or a symlink)
        for n, parsed in changes.removed["individuals"].items():
            self._foreign.discard(("i", n))
            if parsed is not None and self._listed.get(parsed.id) == parsed:
                del self._listed[parsed.id]
                touched.add(parsed.id)
        for n, parsed in changes.added["individuals"].items():
            if parsed is None:
                self._foreign.add(("i", n))
            elif f"individuals/{n}" not in self._bad:
                self._listed[parsed.id] = parsed
                touched.add(parsed.id)
        for n, head in changes.removed["gc"].items():
            if head is not None and self._in_gc.get(head) == n:
                del self._in_gc[head]
                touched.add(head)
        for n, head in changes.added["gc"].items():
            if head is not None:
                self._in_gc[head] = n
                touched.add(head)
        new_deaths = []
        for n, entry in changes.removed["history"].items():
            self._foreign.discard(("h", n))
            if entry is not None and entry[0] == "record":
                self._history.discard(entry[1])
                touched.add(entry[1])
        for n, entry in changes.added["history"].items():
            if entry is not None and entry[0] == "death":
                new_deaths.append(entry[1])
            elif entry is not None and entry[0] == "record":
                self._history.add(entry[1])
                touched.add(entry[1])
            elif entry is None and not n.startswith("."):
                self._foreign.add(("h", n))
        self.foreign = len(self._foreign)
        self.quarantined = sum(1 for n in _listdir(self.paths.quarantine) if not n.endswith(".reason.txt"))

        # New individuals: read each record once, from where it is now (and again those whose
        # read failed on an I/O error last time).
        touched |= self._retry
        self._retry = set()
        for iid in touched:
            if iid in self.rows:
                continue
            if iid in self._listed:
                name = self._listed[iid]
                key = f"individuals/{name.render()}"
                got = self._read_record(self.paths.record_file(self.paths.individual(name)), name, key)
            elif iid in self._in_gc:
                path = self.paths.gc / self._in_gc[iid]
                got = self._read_record(self.paths.record_file(path), None, f"gc/{path.name}")
            elif iid in self._history:
                path = self.paths.history_record(iid)
                got = self._read_record(path, None, f"history/{path.name}")
            else:
                continue
            if got is not None and got[0].id == iid:
                try:
                    self._add(*got)
                except (ValueError, TypeError, OverflowError) as e:  # validated, yet unusable
                    self._bad[f"record/{iid}"] = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        for iid in new_deaths:
            d = read_death(self.paths.history_death(iid))  # bounded, as the store reads it
            if d is not None:
                self._deaths[iid] = (d["killed_at"], d["killed_by"])
                touched.add(iid)
        return self._restate(touched)

    def _restate(self, ids) -> bool:
        """Recompute the state of ``ids`` from where each is now (as Store.records() decides)."""
        gone = []
        for iid in ids:
            row = self.rows.get(iid)
            if row is None:
                continue
            if iid in self._listed:
                name = self._listed[iid]
                state, collected = name.state, False
                killed_by = None if iid in self._born_dead else name.by
            elif iid in self._in_gc or iid in self._history:
                state, collected, killed_by = "dead", True, row["killed_by"]
            else:
                gone.append(iid)
                continue
            killed_at = row["killed_at"]
            if state == "dead" and iid in self._deaths:
                killed_at, killed_by = self._deaths[iid]
            test = self._tests.get(iid, (0, None))[1]
            new = (state, collected, killed_at, killed_by, test)
            if new != (row["state"], row["collected"], row["killed_at"], row["killed_by"], row["test"]):
                row.update(state=state, collected=collected, killed_at=killed_at, killed_by=killed_by, test=test)
                row["seq"] = self.tick()
            elif row.get("seq") is None:
                row["seq"] = self.tick()
        for iid in gone:  # quarantined by a worker's GC: no longer an individual of this population
            row = self.rows.pop(iid)
            self._births[row["worker"] or ""] -= 1
            self._inds.pop(iid, None)
            self.removed[iid] = self.tick()
        return bool(gone)

    def _refresh_tests(self) -> None:
        """Test accuracies cached by ``lse report`` in eval/ (never computed here)."""
        for de in _scandir(self.paths.eval):
            iid = de.name[:-5]
            if not de.name.endswith(".json") or not is_id(iid) or de.is_symlink():
                continue
            try:
                mtime = de.stat(follow_symlinks=False).st_mtime_ns
            except OSError:
                continue
            if self._tests.get(iid, (None,))[0] == mtime:
                continue
            acc = None
            try:
                data = read_json(Path(de.path), "eval")
                v = data.get("test_accuracy") if isinstance(data, dict) else None
                acc = float(v) if _finite(v) and 0.0 <= v <= 1.0 else None
            except (OSError, ValueError, CorruptIndividual):
                pass
            self._tests[iid] = (mtime, acc)
            row = self.rows.get(iid)
            if row is not None and row["test"] != acc:
                row["test"] = acc
                row["seq"] = self.tick()

    def _refresh_workers(self) -> None:
        """Workers with heartbeat ages, judged alive/dead as ``lse status`` judges them."""
        now = self.clock()
        births = self._births
        out = []
        for de in sorted(_scandir(self.paths.workers), key=lambda d: d.name):
            wid = de.name
            if not is_worker_id(wid) or de.is_symlink():
                continue
            hb: dict = {}
            age = None
            try:
                path = self.paths.heartbeat(wid)
                age = max(0.0, now - os.lstat(path).st_mtime)
                hb = heartbeat_fields(read_json(path, "heartbeat")) or {}
            except (OSError, ValueError, CorruptIndividual):
                pass
            try:  # the store's own judgement, itself over the safe read and bounded fields
                dead = self._liveness.is_dead_worker(wid)
            except Exception:  # noqa: BLE001 - one worker's files never blank the whole panel
                dead = None
            out.append({
                "id": wid, "host": str(hb.get("host") or "")[:100] or None,
                "pid": _int(hb.get("pid")), "heartbeat_age": age, "counter": _int(hb.get("counter")),
                "state": "unknown" if dead is None else "dead" if dead else "alive", "births": births.get(wid, 0),
            })
        self.workers = out

    # ---- what the browser receives ------------------------------------------------------------

    def changes(self, since: int) -> dict:
        """Rows (columnar) and panels changed after cursor ``since``; everything when 0."""
        self._update_panels()
        rows = [[r.get(f) for f in FIELDS] for r in self.rows.values() if r.get("seq", 0) > since]
        return {
            "label": self.label,
            "fields": FIELDS,
            "rows": rows,
            "removed": [i for i, s in self.removed.items() if s > since],
            "panels": {k: v for k, (s, v) in self.panels.items() if s > since},
            "workers": self.workers,
            "malformed": len(self._bad),
            "foreign": self.foreign,
            "quarantined": self.quarantined,
        }

    def individuals(self) -> list[cv.Individual]:
        for iid, row in self.rows.items():
            ind = self._inds.get(iid)
            alive = row["state"] == "alive"
            if ind is None or ind.alive != alive or ind.killed_at != row["killed_at"]:
                ind = cv.Individual(
                    id=iid, parent_id=row["parent"], born_at=row["born_at"],
                    val_accuracy=None if row["failed"] else row["val"], flops=row["flops"], alive=alive,
                    mutation=row["mutation"], failed_reason="failed" if row["failed"] else None,
                    worker=row["worker"], killed_at=row["killed_at"], params=row["params"], generation=row["generation"],
                )
                self._inds[iid] = ind
        return [self._inds[i] for i in self.rows]

    def start(self) -> float:
        return cv.experiment_start(list(self._inds.values()), self.created_at) if self._inds else (self.created_at or self.clock())

    def _update_panels(self) -> None:
        with self._lock:
            if not self._changed_since_panels:
                return
            try:
                self._compute_panels()
            except (ValueError, TypeError, OverflowError, ZeroDivisionError, KeyError):
                # Panels stay as they were and are computed again next request (set only on
                # success: an age of 10**400 once left them stale for good).
                log.exception("dashboard panels of %s failed", self.root)
                return
            self._changed_since_panels = False

    def _compute_panels(self) -> None:
        inds = self.individuals()
        start = self.start()
        tests = {i: t for i, (_, t) in self._tests.items()}
        curve = cv.progress_curve(inds, tests, start=start, label=self.label)
        rows = list(self.rows.values())
        new = {
            "overview": panels.overview_panel(self.rows.values(), inds, self.config, self.clock(), start,
                                              pop=str(self.root), label=self.label, config_error=self.config_error,
                                              stop_file=self.stop_file),
            "curve": {**panels.curve_steps(curve), "start": start},
            "mutations": [{"name": s.name, "children": s.children, "improved": s.improved, "failed": s.failed,
                           "rate": None if s.children == 0 else s.rate} for s in cv.mutation_stats(inds)],
            "pareto": panels.pareto_panel({**r, "alive": r["state"] == "alive"} for r in rows),
            "species": panels.species_panel(({**r, "alive": r["state"] == "alive"} for r in rows), self.clock()),
            "generations": panels.generation_panel(rows),
            "ages": panels.age_panel({**r, "alive": r["state"] == "alive"} for r in rows),
        }
        for k, v in new.items():
            old = self.panels.get(k)
            if old is None or old[1] != v:
                self.panels[k] = (self.tick(), v)

    def detail(self, iid: str) -> dict | None:
        """One individual, for the panel a click opens: its record (validated, as the store
        reads it), its architecture, its lineage.  None when unknown or unreadable."""
        if not is_id(iid) or iid not in self.rows:
            return None
        got = None
        for de in _scandir(self.paths.individuals):
            name = IndividualName.parse(de.name)
            if name is not None and name.id == iid and not de.is_symlink():
                got = self._read_record(self.paths.record_file(Path(de.path)), name, f"individuals/{de.name}")
        if got is None:
            for de in _scandir(self.paths.gc):
                if de.name.split(".", 1)[0] == iid and not de.is_symlink():
                    got = self._read_record(self.paths.record_file(Path(de.path)), None, f"gc/{de.name}")
        if got is None:
            path = self.paths.history_record(iid)
            got = self._read_record(path, None, f"history/{path.name}")
        if got is None or got[0].id != iid:
            return None
        rec, extra = got
        row = self.rows[iid]
        record = {**rec.model_dump(mode="json"), **{k: v for k, v in extra.items() if v is not None}}
        record.update(state=row["state"], collected=row["collected"], killed_at=row["killed_at"],
                      killed_by=row["killed_by"])
        arch = panels.architecture_panel(rec.genome, rec.dna, classes_of(str(self.config.get("dataset"))) or 10)
        inds = self.individuals()
        path = cv.lineage(inds, iid)

        def brief(i: str) -> dict:
            r = self.rows.get(i)
            if r is None:
                return {"id": i, "known": False}
            return {"id": i, "known": True, "val": r["val"], "mutation": r["mutation"], "state": r["state"]}

        parents = extra.get("parents") or ([rec.parent_id] if rec.parent_id else [])
        return {
            "id": iid, "record": record, "architecture": arch,
            "parents": [brief(p) for p in parents],
            "children": [brief(c) for c in self._children.get(iid, [])],
            "lineage": [brief(i.id) for i in path],
            "lineage_complete": bool(path) and path[0].parent_id is None,
            "test": row["test"],
        }


def _listdir(d: Path) -> set[str]:
    try:
        return set(os.listdir(d))
    except (FileNotFoundError, NotADirectoryError):
        return set()


def _is_real_dir(p: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(p).st_mode)
    except OSError:
        return False


def _scandir(d: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(d) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []
