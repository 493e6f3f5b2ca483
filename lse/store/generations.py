"""A lock-free generation barrier on the store, for generational algorithms (papers 001, 003).

A generational algorithm turns the population P_g into P_{g+1} in one step: P_g produces
``slots`` children, then a replacement rule (``plan_fn``) picks P_{g+1} from P_g and the
children.  Workers never talk to each other and take no lock, so the barrier is made of the same
two things as the rest of the store: private writes published by one atomic rename, and names.

    generations/<g>/generation.json   {"generation": g, "slots": n}: written by its opener
    generations/<g>/children/<k>/     the child of slot k (record.json [+ weights])
    generations/<g>/sealed/           children/, renamed once every slot holds a sound child
    generations/<g>/plan/plan.json    the replacement plan: which parents die, which children live
    workers/<wid>/gen-<g>-<k>         a claim on slot k: a hint that spreads work, nothing more

Generation g moves through four states, each arrow ONE rename, each state judged by names only:

    OPEN    private folder (generation.json + empty children/)    -> generations/<g>/
    SEALED  generations/<g>/children/                             -> generations/<g>/sealed/
    PLANNED private folder holding plan.json                      -> generations/<g>/plan/
    CLOSED  after the plan is applied (one rename per kill, one per child moved into
            individuals/), generation g+1 is opened as above.

Why each step is exclusive and idempotent:

* A child is published by renaming a *non-empty* folder onto ``children/<k>``; a second child
  for the same slot fails (ENOTEMPTY/EEXIST): one child per slot, no lock.  Nothing of ours ever
  leaves an empty folder there (an empty one would be silently replaced by a rename).
* Sealing freezes the set of children: after it no publish can land (``children/`` is gone), so a
  slow worker cannot add a child to a generation that is being replaced.  Without the seal a
  late child could land in ``children/<k>`` after the plan moved the first one away.
* The plan is a *folder* renamed onto ``plan/``: a second plan fails instead of replacing the
  first.  (``rename`` of a file onto ``plan.json`` would replace it, and two closers that listed
  the population at different moments -- one before the other began killing -- would disagree:
  a plan must never be recomputed once written.)  Whoever loses reads the winner's plan.
* Applying a plan: a parent to kill that is no longer alive was killed already; a child whose
  ``sealed/<k>`` is gone was moved already (its destination name is in the plan, identical for
  every worker).  Any worker that finds a plan and no generation g+1 re-applies it, so a worker
  that dies while replacing is finished by the next one; a stale applier that comes late finds
  every source gone and changes nothing.
* Generation g+1 is opened only after the plan of g is applied.  A generation g > 0 whose
  predecessor has no plan was not made by lse: it is quarantined with anything else foreign.

Hostile or malformed entries (symlinks, files, garbage names, incomplete or unparseable
children, a record that copies an existing id) are quarantined like the store does: moved aside,
never deleted; their slot becomes free again.  A transient I/O error quarantines nothing: the
generation is just not complete yet.  The two files every worker reads are never moved: an
unusable ``generation.json`` gives way to the worker's own slot count (one configuration, so
workers agree), an unusable plan to ``plan.1/``, ``plan.2/``... (see ``_plan_in_force``).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import random
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, model_validator

from lse.errors import CorruptIndividual, LostRace, StoreError
from lse.algorithms.base import ReplacementPlan
from lse.core.records import IndividualName, IndividualRecord, format_fitness, is_id, is_worker_id
from lse.store.saferead import read_json
from lse.store.durable import dumps, fsync_dir, path_exists, remove_tree, save_weights, scandir_entries, unlink_quiet, write_file
from lse.store.paths import RECORD_FILE, WEIGHTS_FILE
from lse.store.population import Store
from lse.store.recordio import structure_problem, validate_dna

__all__ = ["GenerationPlan", "GenerationStatus", "Generations", "Plan", "PlanFn", "PlannedChild"]

log = logging.getLogger("lse.generations")

#: rename of a folder onto a non-empty folder (or onto a file): the place is taken
_OCCUPIED = frozenset({errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR})

#: canonical decimal: "07" or "+7" is not a generation (two names for one number would let two
#: openers both win)
_NUMBER = re.compile(r"0|[1-9][0-9]{0,11}")

PLAN_FILE = "plan.json"

#: plan versions a generation may have (plan/, plan.1/ ...): each supersedes unusable earlier ones
MAX_PLAN_VERSIONS = 16

#: errors that make a file unusable for good (not a transient I/O error): a path through a file,
#: a folder where a file belongs, a loop of links, no permission
_UNUSABLE = frozenset({errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.EACCES, errno.EPERM})


def _number(name: str) -> int | None:
    return int(name) if _NUMBER.fullmatch(name) else None


# --------------------------------------------------------------------------------------------
# plans


#: What a replacement rule decides: the seam's own type (kill: parents that die; alive: children
#: that join the population; dead: children recorded dead).  One type, so an algorithm's
#: ``replace`` is a ``plan_fn`` as it is.
Plan = ReplacementPlan


#: ``plan_fn(parents, children) -> Plan``: parents are the alive individuals' records (sorted by
#: id), children the generation's records (sorted by slot).  Must be pure: it runs once per
#: generation, on whichever worker closes it.
PlanFn = Callable[[list[IndividualRecord], list[IndividualRecord]], Plan]


#: most children a generation may have: generation.json with 10**12 slots built a list of that size
MAX_SLOTS = 100_000


class PlannedChild(BaseModel):
    slot: int = Field(ge=0, lt=MAX_SLOTS, description="slot of the generation the child filled")
    id: str = Field(description="the child's id")
    name: str = Field(description="its folder name in individuals/ once moved (alive or dead)")


class GenerationPlan(BaseModel):
    """generations/<g>/plan/plan.json: the replacement, as applied (and re-applied) by anyone."""

    generation: int = Field(ge=0, le=10**12)
    slots: int = Field(ge=1, le=MAX_SLOTS)
    parents: list[str] = Field(description="ids of the alive population the plan was computed from")
    kill: list[str] = Field(description="parent ids that die")
    children: list[PlannedChild] = Field(description="every child, sorted by slot")
    planned_by: str = Field(description="worker id that wrote the plan")
    planned_at: float = Field(description="unix seconds (planner's clock), informational")

    @model_validator(mode="after")
    def _consistent(self) -> "GenerationPlan":
        """A plan is applied by every worker that meets it: nothing in it may name a path, kill
        an individual that was not a parent of the generation, or put a child under a name that
        is not its own.  Checked before anything is applied (a traversal string in planned_by
        raised an untyped error in every worker; a bad child name broke `status()`)."""
        if not is_worker_id(self.planned_by):
            raise ValueError(f"planned_by {self.planned_by[:100]!r} is not a worker id")
        if not (math.isfinite(self.planned_at) and abs(self.planned_at) < 1e11):
            raise ValueError("planned_at must be a finite unix time")
        for i in (*self.parents, *self.kill):
            if not is_id(i):
                raise ValueError(f"{i[:100]!r} is not an individual id")
        if not set(self.kill) <= set(self.parents):
            raise ValueError(f"kills non-parents {sorted(set(self.kill) - set(self.parents))[:5]}")
        slots = [c.slot for c in self.children]
        if len(set(slots)) != len(slots) or any(k >= self.slots for k in slots):
            raise ValueError(f"children's slots must be distinct and below {self.slots}")
        for c in self.children:
            name = IndividualName.parse(c.name)
            if name is None or name.id != c.id:
                raise ValueError(f"child name {c.name[:100]!r} is not an individual name for {c.id[:100]!r}")
        return self

    @property
    def survivors(self) -> list[str]:
        """The population after the plan: parents not killed, plus the children born alive."""
        killed = set(self.kill)
        kids = [c.id for c in self.children if IndividualName.parse(c.name).state == "alive"]
        return sorted([p for p in self.parents if p not in killed] + kids)


@dataclass(frozen=True)
class GenerationStatus:
    """One generation, for reports."""

    generation: int
    slots: int
    filled: int  # children published (after the plan: children in the plan)
    claimed: int  # slots claimed by workers now (a hint)
    state: str  # "open", "sealed", "planned", "closed"
    kill: int | None = None  # from the plan, once there is one
    alive: int | None = None
    dead: int | None = None


class _Unknown(Exception):
    """A transient I/O error: decide nothing now, look again later."""


# --------------------------------------------------------------------------------------------
# the barrier


class Generations:
    """The generation barrier of one population, seen by one worker (``store.worker``).

    ``slots`` children per generation; generation 0 (the initial population) gets
    ``initial_slots`` (default ``slots``).  The count is written into each generation by its
    opener, and every worker reads it from there: two workers started with different options
    still agree on when a generation is complete.
    """

    def __init__(self, store: Store, *, slots: int, initial_slots: int | None = None,
                 rng: random.Random | None = None) -> None:
        if slots < 1 or (initial_slots is not None and initial_slots < 1):
            raise ValueError(f"a generation needs at least one slot (slots={slots}, initial_slots={initial_slots})")
        self.store = store
        self.paths = store.paths
        self.new_slots = slots
        self.initial_slots = slots if initial_slots is None else initial_slots
        self._rng = rng or random.Random()
        self._verified = 0  # generations 0.._verified-1 are known legitimate (that never changes)
        self._slots: dict[int, int] = {}
        self._bad_plans: set[Path] = set()  # unusable plan files already warned about

    # ---- reading the barrier -------------------------------------------------------------

    def current(self) -> int:
        """The highest open generation (the one whose slots are being filled, or being
        replaced); opens generation 0 when there is none."""
        gens = self._generations()
        if not gens:
            self._open(0, self.initial_slots)
            gens = self._generations()
            if not gens:
                raise StoreError(f"cannot open generation 0 in {self.paths.generations}")
        return gens[-1]

    def _generations(self) -> list[int]:
        """Legitimate generations, ascending: 0..n-1 with each predecessor planned.  Anything
        else in generations/ was not made by lse and is quarantined (never deleted)."""
        found: dict[int, Path] = {}
        for de in scandir_entries(self.paths.generations):
            g = _number(de.name)
            if g is None or de.is_symlink() or not de.is_dir(follow_symlinks=False):
                self._quarantine(Path(de.path), "not a generation (a folder named by a number)")
                continue
            found[g] = Path(de.path)
        out: list[int] = []
        for g in sorted(found):  # numerically: the listing order, or "10" < "9", is no order
            if g < self._verified:
                out.append(g)
                continue
            if g != len(out):
                if self._is_dir(self.paths.generation(len(out))):
                    break  # opened during our listing (readdir is no snapshot): look again later
                self._quarantine(found[g], f"generation {g} without generation {len(out)}")
                continue
            if g > 0:
                planned = self._planned(g - 1)
                if planned is None:
                    break  # cannot tell now: stop here, look again next time
                if not planned:
                    self._quarantine(found[g], f"generation {g} opened before generation {g - 1} had a plan")
                    continue
            out.append(g)
            self._verified = max(self._verified, g + 1)
        return out

    def _planned(self, g: int) -> bool | None:
        """Whether a plan folder was renamed in place (plan/, or a version superseding a plan/
        that is not a folder); None: cannot tell now."""
        for version in range(MAX_PLAN_VERSIONS):
            try:
                if stat.S_ISDIR(os.lstat(self.paths.generation_plan(g, version)).st_mode):
                    return True
            except FileNotFoundError:
                return False
            except OSError:
                return None
        return False

    def slots(self, g: int) -> int:
        """How many children generation ``g`` has: its generation.json, written by its opener.

        One that is not what lse writes (a FIFO, a giant, a link, a folder, garbage, numbers out
        of range, another generation's) is left where it is and this worker's own count is used,
        with one warning.  Workers of one experiment derive that count from one configuration,
        so they still agree; moving the file aside instead could race with a worker that had
        already repaired it, and a worker stopped by it on every step ended after
        MAX_STEP_FAILURES (issue 29)."""
        if g not in self._slots:
            path = self.paths.generation_meta(g)
            try:
                meta = read_json(path, "generation")  # no FIFO, no giant, bounded nesting
                n = meta["slots"]  # type: ignore[index]
                if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_SLOTS:
                    raise ValueError(f"bad slots {str(n)[:40]!r} (1..{MAX_SLOTS})")
                if meta.get("generation") != g:  # type: ignore[union-attr]
                    raise ValueError(f"it names generation {str(meta.get('generation'))[:40]}")  # type: ignore[union-attr]
            except FileNotFoundError:
                if not self._is_dir(self.paths.generation(g)):
                    raise StoreError(f"generation {g} is not open ({path} does not exist)") from None
                n = self._own_slots(g, path, "it is missing")
            except CorruptIndividual as e:
                n = self._own_slots(g, path, e.message)
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                n = self._own_slots(g, path, str(e))
            except OSError as e:
                if e.errno not in _UNUSABLE:
                    raise  # a transient I/O error: the step is retried
                n = self._own_slots(g, path, os.strerror(e.errno or 0))
            self._slots[g] = n
        return self._slots[g]

    def _own_slots(self, g: int, path: Path, problem: str) -> int:
        n = self.initial_slots if g == 0 else self.new_slots
        log.warning("%s is unusable (%s); generation %d has %d slots by this worker's configuration",
                    path, problem[:200], g, n)
        return n

    def state(self, g: int) -> str:
        """"open", "sealed", "planned" or "closed" (generation g+1 is open)."""
        if self._planned(g):
            return "closed" if self._is_dir(self.paths.generation(g + 1)) else "planned"
        return "sealed" if self._is_dir(self.paths.generation_sealed(g)) else "open"

    def plan(self, g: int) -> GenerationPlan | None:
        """Generation g's plan in force, None while it has none."""
        return self._plan_in_force(g)[0]

    def _plan_in_force(self, g: int) -> tuple[GenerationPlan | None, int]:
        """(the plan in force, the version a new plan would take).

        The plan in force is the first readable one of ``plan/``, ``plan.1/``, ``plan.2/``...
        A plan is applied by many workers and may be partly applied already, so one that cannot
        be read as lse writes it (an intruder's FIFO, link, garbage, a plan that names another
        generation or kills a non-parent) is never moved, replaced or deleted: the next worker
        supersedes it with the next version, planned from what the generation holds now, and
        every worker then reads that one (a rename onto a taken version fails, and its loser
        reads the winner's).  Before, such a plan raised StoreError on every step of every
        worker until MAX_STEP_FAILURES ended them (issue 29)."""
        for version in range(MAX_PLAN_VERSIONS):
            folder = self.paths.generation_plan(g, version)
            path = folder / PLAN_FILE
            try:
                plan = GenerationPlan.model_validate(read_json(path, "plan"))  # no FIFO, giant or deep JSON
                if plan.generation != g:
                    raise ValueError(f"it is the plan of generation {plan.generation}")
                return plan, version
            except FileNotFoundError:
                if not os.path.lexists(folder):
                    return None, version
                problem = f"{folder.name}/ holds no {PLAN_FILE}"
            except CorruptIndividual as e:
                problem = e.message
            except ValidationError as e:
                problem = str(e.errors()[0]["msg"])
            except ValueError as e:
                problem = str(e)
            except OSError as e:
                if e.errno not in _UNUSABLE:
                    raise StoreError(f"cannot read {path} ({os.strerror(e.errno or 0)})", "the next step retries") from None
                problem = os.strerror(e.errno or 0)
            if path not in self._bad_plans:
                self._bad_plans.add(path)
                log.warning("%s is unusable (%s); the next plan supersedes it", path, problem[:200])
        raise StoreError(f"generation {g} has {MAX_PLAN_VERSIONS} unusable plans",
                         f"inspect {self.paths.generation(g)} by hand: lse writes one plan per generation")

    # ---- claims -----------------------------------------------------------------------

    def claim(self, g: int) -> int | None:
        """A slot of generation ``g`` for this worker to fill: not filled, not claimed by a live
        worker.  None: the generation is sealed, or every free slot is being worked on (poll).

        The claim is a file in this worker's own folder, so it vanishes when the worker stops
        or is reclaimed as dead.  It only spreads work: two workers that pick the same slot at
        the same instant both train, and the second publish loses.
        """
        me = self.store.worker.id
        n = self.slots(g)
        filled = self._filled(g)
        if filled is None:
            return None  # sealed
        free = [k for k in range(n) if k not in filled]
        mine = self._my_claims()
        for gk in mine:
            if gk[0] == g and gk[1] in free:
                return gk[1]  # already ours
        self.release()
        if not free:
            return None
        for _attempt in range(3):
            claims = self._claims(g)
            candidates = [k for k in free if not claims.get(k)]
            if not candidates:
                # Every free slot is claimed: those held only by dead workers are free again.
                # Liveness is judged only here (a heartbeat read per claimant): checking every
                # claim of 250 workers on every step made claiming the barrier's main cost.
                candidates = [k for k in free if all(self.store.is_dead_worker(w) is True for _, w in claims[k])]
            if not candidates:
                return None
            k = self._rng.choice(candidates)
            path = self.paths.generation_claim(me, g, k)
            self.store.worker.dir.mkdir(exist_ok=True)  # recreated if a recoverer took our folder
            path.touch(exist_ok=True)
            # Two workers that chose k in the same instant: the older claim keeps it (creation
            # time, then worker id: every worker sees the same order), the other chooses again.
            # A dead worker's claim never keeps a slot.
            rivals = self._claims(g, with_times=True, slot=k).get(k, [])
            mine_t = next((t for t, w in rivals if w == me), None)
            if mine_t is None or not any((t, w) < (mine_t, me) and self.store.is_dead_worker(w) is not True
                                         for t, w in rivals if w != me):
                return k
            unlink_quiet(path)
            free.remove(k)
        return None

    def release(self) -> None:
        """Drop this worker's claims (it holds at most one)."""
        for g, k in self._my_claims():
            unlink_quiet(self.paths.generation_claim(self.store.worker.id, g, k))

    def _my_claims(self) -> list[tuple[int, int]]:
        out = []
        for de in scandir_entries(self.store.worker.dir):
            gk = _parse_claim(de.name)
            if gk is not None:
                out.append(gk)
        return out

    def _claims(self, g: int, with_times: bool = False, slot: int | None = None) -> dict[int, list[tuple[int, str]]]:
        """slot -> [(creation ns or 0, worker id)] of the claims on generation ``g`` (only
        ``slot``'s if given).  Without times: other workers' claims only.  Liveness is the
        caller's to judge, and only where it decides something (see claim)."""
        me = self.store.worker.id
        out: dict[int, list[tuple[int, str]]] = {}
        for wde in scandir_entries(self.paths.workers):
            wid = wde.name
            if not is_worker_id(wid) or (not with_times and wid == me):
                continue
            for de in scandir_entries(Path(wde.path)):
                gk = _parse_claim(de.name)
                if gk is None or gk[0] != g or (slot is not None and gk[1] != slot):
                    continue
                t = 0
                if with_times:
                    try:
                        t = os.lstat(de.path).st_mtime_ns
                    except OSError:
                        continue
                out.setdefault(gk[1], []).append((t, wid))
        return out

    def _filled(self, g: int) -> set[int] | None:
        """Slots with an entry in children/ (one listing, no reads); None when sealed."""
        folder = self.paths.generation_children(g)
        try:
            with os.scandir(folder) as it:
                return {k for k in (_number(de.name) for de in it) if k is not None}
        except FileNotFoundError:
            return None

    # ---- publishing a child -----------------------------------------------------------

    def publish(self, g: int, slot: int, record: IndividualRecord, state_dict: dict | None,
                alive: bool = True) -> IndividualRecord:
        """Publish the child of ``slot`` of generation ``g``: written and fsynced in this
        worker's folder, then ONE rename onto generations/<g>/children/<slot>.

        Raises LostRace when the slot is filled already or the generation is sealed (the child
        is discarded: it never existed).  ``alive=False`` publishes a failed child (it still
        fills its slot).  Returns the record as published.
        """
        store = self.store
        w = store.worker
        n = self.slots(g)
        if not 0 <= slot < n:
            raise ValueError(f"slot {slot} is not in 0..{n - 1} (generation {g} has {n} slots)")
        if alive and record.fitness is None:
            raise ValueError("an alive child needs a fitness (publish a failed child with alive=False)")
        # As Store.publish does (the lead may share this when store.py becomes a package).
        rec = record.model_copy(update={
            "state": "alive" if alive else "dead",
            "worker": record.worker or w.id,
            "host": record.host or store.host,
            "born_at": record.born_at if record.born_at is not None else time.time(),
            "extra": {**record.extra, "generation": {"generation": g, "slot": slot}},
        })
        IndividualRecord.model_validate(rec.model_dump(mode="json"))
        validate_dna(rec.dna, rec.genome)  # never publish what every reader would quarantine
        scratch = self.paths.private_file(w.id, "gchild")
        dst = self.paths.generation_child(g, slot)
        try:
            w.dir.mkdir(exist_ok=True)
            scratch.mkdir()
            if state_dict is not None:
                write_file(self.paths.weights_file(scratch), save_weights(state_dict))
            write_file(self.paths.record_file(scratch), dumps(rec.model_dump(mode="json")))
            fsync_dir(scratch)
            try:
                won = store.rename(scratch, dst)
            except OSError as e:
                if e.errno in _OCCUPIED:
                    raise LostRace(f"slot {slot} of generation {g} is filled already") from None
                raise
            if not won:  # children/ is gone (sealed), or our scratch was reclaimed
                raise LostRace(f"generation {g} was sealed before the child of slot {slot} was published")
            # Store.rename calls "destination there, source gone" a win; the destination is shared
            # here, so make sure the child in the slot is ours.
            if self._slot_id(g, slot) != rec.id:
                raise LostRace(f"slot {slot} of generation {g} holds another worker's child")
            self._fsync_children(g)
        except OSError as e:
            raise store.os_error(e, f"publish the child of slot {slot} of generation {g}") from None
        finally:
            remove_tree(scratch)
            unlink_quiet(self.paths.generation_claim(w.id, g, slot))
        return rec

    def _fsync_children(self, g: int) -> None:
        """Make a published child's entry durable.  Another worker may seal the generation
        between our rename and this fsync (children/ becomes sealed/, our entry inside it), and
        the plan may move the children on after that; the entry is then the sealer's to keep."""
        for folder in (self.paths.generation_children(g), self.paths.generation_sealed(g)):
            try:
                fsync_dir(folder)
                return
            except FileNotFoundError:
                continue

    def _slot_id(self, g: int, slot: int) -> str | None:
        """The id of the child in ``slot``, wherever it is by now: children/, sealed/ (another
        worker sealed right after our publish), or only in the plan (moved already)."""
        for path in (self.paths.generation_child(g, slot), self.paths.generation_sealed_child(g, slot)):
            try:
                return self.store.read_record(path).id
            except (OSError, CorruptIndividual):
                continue
        try:
            plan = self.plan(g)
        except StoreError:
            return None
        return next((c.id for c in plan.children if c.slot == slot), None) if plan else None

    # ---- closing a generation ---------------------------------------------------------

    def close(self, g: int, plan_fn: PlanFn) -> bool:
        """Drive generation ``g`` as far as it goes: when every slot holds a sound child, seal,
        plan (or read the plan already written), apply, open g+1.  True: g is closed (by us or
        before).  False: g still has empty slots (or could not be judged because of an I/O
        error).  Safe to call any number of times, by any number of workers, at any moment."""
        plan, version = self._plan_in_force(g)
        if plan is None:
            if not self._is_dir(self.paths.generation_sealed(g)):
                if not self._seal(g):
                    return False
            plan = self._make_plan(g, plan_fn, version)
        elif self._is_dir(self.paths.generation(g + 1)):
            return True
        if plan.planned_by != self.store.worker.id and not self._planner_gone(plan.planned_by):
            # Its planner is applying it.  Applying is idempotent, but 250 workers re-applying
            # one plan of 1,000 renames at once made the barrier most of a simulated step; only
            # a planner that is gone is taken over.
            return False
        self._apply(g, plan)
        self._open(g + 1, self.new_slots)
        return True

    def _planner_gone(self, wid: str) -> bool:
        """The planner stopped or died: its private folder is gone (a live worker always has
        one: it stops only after applying, and recovery removes a dead one's), or the store's
        liveness rules prove it dead (its process is gone; another host: a stale heartbeat)."""
        return not self._is_dir(self.paths.worker(wid)) or self.store.is_dead_worker(wid) is True

    def advance(self, plan_fn: PlanFn) -> int:
        """Close every generation that can be closed; the open generation to work on."""
        g = self.current()
        while self.close(g, plan_fn):
            g = self.current()
        return g

    def _seal(self, g: int) -> bool:
        n = self.slots(g)
        folder = self.paths.generation_children(g)
        filled = self._filled(g)
        if filled is None:
            return self._is_dir(self.paths.generation_sealed(g))
        if len([k for k in filled if k < n]) < n:
            return False  # one listing, no reads: the common case of every publish but the last
        try:
            kids = self._sound_children(g, folder, check_unique=True)
        except _Unknown:
            return False
        if len(kids) < n:
            return False  # a malformed child was quarantined: its slot is free again
        try:
            self.store.rename(folder, self.paths.generation_sealed(g))
        except OSError as e:
            if e.errno in _OCCUPIED:
                raise StoreError(f"generation {g} has both children/ and a non-empty sealed/",
                                 "lse never makes that; inspect the generation by hand") from None
            raise self.store.os_error(e, f"seal generation {g}") from None
        return self._is_dir(self.paths.generation_sealed(g))

    def _sound_children(self, g: int, folder: Path, check_unique: bool) -> dict[int, IndividualRecord]:
        """slot -> record of every sound child in ``folder``; malformed entries are quarantined.
        Raises _Unknown on a transient I/O error."""
        n = self.slots(g)
        known = {e.id for e in self.store.entries()} if check_unique else set()
        out: dict[int, IndividualRecord] = {}
        seen: set[str] = set()
        for de in sorted(scandir_entries(folder), key=lambda d: (_number(d.name) is None, _number(d.name) or 0, d.name)):
            k = _number(de.name)
            path = Path(de.path)
            if k is None or k >= n:
                self._quarantine(path, f"not a slot of generation {g} (0..{n - 1})")
                continue
            if de.is_symlink():
                self._quarantine(path, "a symlink is never a child (it could point out of the population)")
                continue
            rec = self._read_child(path)
            if rec is None:
                continue
            if rec.id in seen or rec.id in known:
                self._quarantine(path, f"child {rec.id} is already in the population or in another slot")
                continue
            seen.add(rec.id)
            out[k] = rec
        return out

    def _read_child(self, path: Path) -> IndividualRecord | None:
        """The child's record; None if it moved away or was malformed (then quarantined)."""
        try:
            rec = self.store.read_record(path)
            if rec.state == "alive":
                if rec.fitness is None:
                    raise CorruptIndividual(f"{path}: an alive child without a fitness")
                wf = self.paths.weights_file(path)
                if not stat.S_ISREG(os.lstat(wf).st_mode):
                    raise CorruptIndividual(f"{wf} is not a regular file")
            return rec
        except CorruptIndividual as e:
            self._quarantine(path, e.message)
            return None
        except OSError as e:
            files = (RECORD_FILE, WEIGHTS_FILE) if e.filename and str(e.filename).endswith(WEIGHTS_FILE) else (RECORD_FILE,)
            problem = structure_problem(path, files)
            if problem is not None:
                self._quarantine(path, problem)
                return None
            if e.errno in (errno.ENOENT, errno.ESTALE) and not path_exists(path):
                return None  # moved away meanwhile
            raise _Unknown(str(e)) from None

    def _make_plan(self, g: int, plan_fn: PlanFn, version: int = 0) -> GenerationPlan:
        """Compute the plan from the sealed children and the alive population, publish it as
        ``version`` unless another worker did first; the plan in force either way."""
        store = self.store
        n = self.slots(g)
        try:
            kids = self._sound_children(g, self.paths.generation_sealed(g), check_unique=False)
        except _Unknown as e:
            raise StoreError(f"cannot read the children of generation {g} ({e})", "the next worker retries") from None
        children = [kids[k] for k in sorted(kids)]
        parents = [r for r in (store.read_entry_record(e) for e in store.list_alive()) if r is not None]
        decided = plan_fn(list(parents), list(children))
        _check_plan(decided, parents, children)
        me = store.worker.id
        alive = set(decided.alive)
        planned = []
        for k in sorted(kids):
            rec = kids[k]
            acc = None if rec.fitness is None else float(format_fitness(rec.fitness))
            if rec.id in alive:
                name = IndividualName(rec.id, "alive", acc)
            else:  # born dead: its publisher (as Store.publish names it); rejected: the planner
                by = rec.worker if rec.state == "dead" and is_worker_id(rec.worker) else me
                name = IndividualName(rec.id, "dead", acc, by)
            planned.append(PlannedChild(slot=k, id=rec.id, name=name.render()))
        body = GenerationPlan(generation=g, slots=n, parents=[p.id for p in parents], kill=sorted(decided.kill),
                              children=planned, planned_by=me, planned_at=time.time())
        tmp = self.paths.private_file(me, "gplan")
        try:
            store.worker.dir.mkdir(exist_ok=True)
            tmp.mkdir()
            write_file(tmp / PLAN_FILE, dumps(body.model_dump(mode="json")))
            fsync_dir(tmp)
            try:
                store.rename(tmp, self.paths.generation_plan(g, version))
            except OSError as e:
                if e.errno not in _OCCUPIED:
                    raise
            fsync_dir(self.paths.generation(g))
        except OSError as e:
            raise store.os_error(e, f"write the plan of generation {g}") from None
        finally:
            remove_tree(tmp)
        plan = self.plan(g)  # ours, or the one that won: never the one we computed, unread
        if plan is None:
            raise LostRace(f"the plan of generation {g} vanished (this worker's folder was reclaimed?)")
        return plan

    def _apply(self, g: int, plan: GenerationPlan) -> None:
        """Kill the plan's parents, move its children into individuals/: one rename each,
        skipped when done already (by us before a crash, or by another worker)."""
        store = self.store
        by_id = {e.id: e for e in store.entries()}
        for pid in plan.kill:
            e = by_id.get(pid)
            if e is not None and e.state == "alive":
                store.kill(e)  # False: killed (or collected) by another applier first
        for c in plan.children:
            src = self.paths.generation_sealed_child(g, c.slot)
            if not path_exists(src):
                continue  # moved already
            try:
                rec = store.read_record(src)
            except FileNotFoundError:
                continue  # moved while we looked
            except CorruptIndividual as e:
                self._quarantine(src, e.message)
                continue
            if rec.id != c.id:
                self._quarantine(src, f"slot {c.slot} holds {rec.id}, the plan names {c.id}")
                continue
            name = IndividualName.parse(c.name)
            if name is None or name.id != c.id:
                raise StoreError(f"the plan of generation {g} names {c.name!r} for {c.id}", "inspect it by hand")
            store.adopt(src, name)

    def _open(self, g: int, slots: int) -> None:
        """Open generation g: a private folder (generation.json + empty children/) renamed onto
        generations/<g>.  If another worker opened it first, the rename fails: fine."""
        store = self.store
        tmp = self.paths.private_file(store.worker.id, "gopen")
        try:
            store.worker.dir.mkdir(exist_ok=True)
            self.paths.generations.mkdir(exist_ok=True)
            tmp.mkdir()
            (tmp / "children").mkdir()
            write_file(tmp / "generation.json", dumps({"generation": g, "slots": slots, "opened_by": store.worker.id}))
            fsync_dir(tmp)
            try:
                store.rename(tmp, self.paths.generation(g))
            except OSError as e:
                if e.errno not in _OCCUPIED:
                    raise
            fsync_dir(self.paths.generations)
        except OSError as e:
            raise store.os_error(e, f"open generation {g}") from None
        finally:
            remove_tree(tmp)

    # ---- reports ----------------------------------------------------------------------

    def status(self) -> list[GenerationStatus]:
        """Every generation: slots, children, claims, state, and the plan's counts."""
        out = []
        for g in self._generations():
            n = self.slots(g)
            st = self.state(g)
            plan = self.plan(g) if st in ("planned", "closed") else None
            if plan is not None:
                alive = sum(IndividualName.parse(c.name).state == "alive" for c in plan.children)
                out.append(GenerationStatus(g, n, len(plan.children), 0, st, len(plan.kill), alive,
                                            len(plan.children) - alive))
                continue
            if st == "open":
                filled = len([k for k in (self._filled(g) or ()) if k < n])
            else:
                filled = len([de for de in scandir_entries(self.paths.generation_sealed(g)) if _number(de.name) is not None])
            claimed = 0
            if st == "open":  # slots claimed by workers not known to be dead
                claims = self._claims(g, with_times=True)
                claimed = sum(any(self.store.is_dead_worker(w) is not True for _, w in c) for c in claims.values())
            out.append(GenerationStatus(g, n, filled, claimed, st))
        return out

    # ---- helpers ----------------------------------------------------------------------

    def _quarantine(self, path: Path, reason: str) -> None:
        if not self.store.read_only:
            self.store.paths.quarantine.mkdir(exist_ok=True)
        self.store.quarantine(path, reason)  # a read-only store only skips it

    @staticmethod
    def _is_dir(path: Path) -> bool:
        try:
            return stat.S_ISDIR(os.lstat(path).st_mode)
        except OSError:
            return False


def _check_plan(plan: Plan, parents: list[IndividualRecord], children: list[IndividualRecord]) -> None:
    """A plan_fn's answer must partition the children and kill only parents (a bug in an
    algorithm, reported before anything is written)."""
    pids = {p.id for p in parents}
    cids = {c.id for c in children}
    alive, dead, kill = set(plan.alive), set(plan.dead), set(plan.kill)
    problems = []
    if kill - pids:
        problems.append(f"kills non-parents {sorted(kill - pids)}")
    if alive & dead:
        problems.append(f"children both alive and dead {sorted(alive & dead)}")
    if alive | dead != cids:
        problems.append(f"children missing {sorted(cids - alive - dead)}, unknown {sorted((alive | dead) - cids)}")
    failed = {c.id for c in children if c.state == "dead" or c.fitness is None} & alive
    if failed:
        problems.append(f"failed children cannot live {sorted(failed)}")
    if problems:
        raise ValueError("invalid replacement plan: " + "; ".join(problems))


def _parse_claim(name: str) -> tuple[int, int] | None:
    parts = name.split("-")
    if len(parts) != 3 or parts[0] != "gen":
        return None
    g, k = _number(parts[1]), _number(parts[2])
    return None if g is None or k is None else (g, k)


