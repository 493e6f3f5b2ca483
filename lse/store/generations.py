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
unusable ``generation.json`` gives way to the slot count the previous generation's plan decided
(``next_slots``, for rules that size each generation), else the worker's own (one
configuration, so workers agree), an unusable plan to ``plan.1/``, ``plan.2/``... (lse.store.plans).
"""

from __future__ import annotations

import errno
import logging
import os
import random
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path


from lse.errors import CorruptIndividual, LostRace, StoreError
from lse.core.records import IndividualName, IndividualRecord
from lse.store.saferead import read_json
from lse.store.durable import dumps, fsync_dir, path_exists, remove_tree, save_weights, scandir_entries, unlink_quiet, write_file
from lse.store.paths import RECORD_FILE, WEIGHTS_FILE
from lse.store.plans import (
    MAX_SLOTS,
    OCCUPIED,
    PLAN_FILE,
    UNUSABLE,
    GenerationPlan,
    Plan,
    PlanFn,
    PlannedChild,
    Planner,
    Unknown,
)
from lse.store.population import Store
from lse.store.slotclaims import SlotClaims
from lse.store.recordio import structure_problem, validate_dna

__all__ = ["PLAN_FILE", "GenerationPlan", "GenerationStatus", "Generations", "Plan", "PlanFn", "PlannedChild"]

log = logging.getLogger("lse.generations")


#: canonical decimal: "07" or "+7" is not a generation (two names for one number would let two
#: openers both win)
_NUMBER = re.compile(r"0|[1-9][0-9]{0,11}")





def _number(name: str) -> int | None:
    return int(name) if _NUMBER.fullmatch(name) else None


# --------------------------------------------------------------------------------------------
# plans




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
        self.planner = Planner(self)
        self.claims = SlotClaims(self)

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
                planned = self.planner.planned(g - 1)
                if planned is None:
                    break  # cannot tell now: stop here, look again next time
                if not planned:
                    self._quarantine(found[g], f"generation {g} opened before generation {g - 1} had a plan")
                    continue
            out.append(g)
            self._verified = max(self._verified, g + 1)
        return out


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
                if e.errno not in UNUSABLE:
                    raise  # a transient I/O error: the step is retried
                n = self._own_slots(g, path, os.strerror(e.errno or 0))
            self._slots[g] = n
        return self._slots[g]

    def _own_slots(self, g: int, path: Path, problem: str) -> int:
        try:  # a rule that sizes each generation wrote the count into the previous plan
            planned = getattr(self.plan(g - 1) if g > 0 else None, "next_slots", None)
        except StoreError:
            planned = None
        n = self.initial_slots if g == 0 else planned or self.new_slots
        log.warning("%s is unusable (%s); generation %d has %d slots by %s", path, problem[:200], g, n,
                    "the previous generation's plan" if planned else "this worker's configuration")
        return n

    def plan(self, g: int) -> GenerationPlan | None:
        """Generation g's plan in force, None while it has none (lse.store.plans)."""
        return self.planner.in_force(g)[0]

    def claim(self, g: int) -> int | None:
        """A free slot of generation ``g`` for this worker; None: sealed, or all being worked on
        (lse.store.slotclaims)."""
        return self.claims.claim(g)

    def release(self) -> None:
        """Drop this worker's claims."""
        self.claims.release()

    def state(self, g: int) -> str:
        """"open", "sealed", "planned" or "closed" (generation g+1 is open)."""
        if self.planner.planned(g):
            return "closed" if self._is_dir(self.paths.generation(g + 1)) else "planned"
        return "sealed" if self._is_dir(self.paths.generation_sealed(g)) else "open"


    # ---- claims -----------------------------------------------------------------------


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
                if e.errno in OCCUPIED:
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
        plan, version = self.planner.in_force(g)
        if plan is None:
            if not self._is_dir(self.paths.generation_sealed(g)):
                if not self._seal(g):
                    return False
            plan = self.planner.make(g, plan_fn, version)
        elif self._is_dir(self.paths.generation(g + 1)):
            return True
        if plan.planned_by != self.store.worker.id and not self._planner_gone(plan.planned_by):
            # Its planner is applying it.  Applying is idempotent, but 250 workers re-applying
            # one plan of 1,000 renames at once made the barrier most of a simulated step; only
            # a planner that is gone is taken over.
            return False
        self.planner.apply(g, plan)
        self._open(g + 1, plan.next_slots or self.new_slots)
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
        except Unknown:
            return False
        if len(kids) < n:
            return False  # a malformed child was quarantined: its slot is free again
        try:
            self.store.rename(folder, self.paths.generation_sealed(g))
        except OSError as e:
            if e.errno in OCCUPIED:
                raise StoreError(f"generation {g} has both children/ and a non-empty sealed/",
                                 "lse never makes that; inspect the generation by hand") from None
            raise self.store.os_error(e, f"seal generation {g}") from None
        return self._is_dir(self.paths.generation_sealed(g))

    def _sound_children(self, g: int, folder: Path, check_unique: bool) -> dict[int, IndividualRecord]:
        """slot -> record of every sound child in ``folder``; malformed entries are quarantined.
        Raises Unknown on a transient I/O error."""
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
            raise Unknown(str(e)) from None


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
                if e.errno not in OCCUPIED:
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
                claims = self.claims.of(g, with_times=True)
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


