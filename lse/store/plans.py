"""The replacement plan of a generation (lse.store.generations): computed once, applied by anyone.

    generations/<g>/plan/plan.json    which parents die, which children live (and under what name)

The plan is a *folder* renamed onto ``plan/``: a second plan fails instead of replacing the
first, and whoever loses reads the winner's.  Applying is idempotent (one rename per kill, one
per child moved into individuals/, each skipped when done), so any worker finishes a plan whose
planner died.  An unusable plan is never moved: ``plan.1/``, ``plan.2/``... supersede it, and
the plan in force is the first readable version.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field, ValidationError, model_validator

from lse.algorithms.base import ReplacementPlan
from lse.core.records import IndividualName, IndividualRecord, format_fitness, is_id, is_worker_id
from lse.errors import CorruptIndividual, LostRace, StoreError
from lse.store.durable import dumps, fsync_dir, path_exists, remove_tree, write_file
from lse.store.saferead import read_json

if TYPE_CHECKING:
    from lse.store.generations import Generations

__all__ = ["MAX_PLAN_VERSIONS", "MAX_SLOTS", "OCCUPIED", "PLAN_FILE", "UNUSABLE", "Unknown", "GenerationPlan", "Plan", "PlanFn", "PlannedChild", "Planner"]

log = logging.getLogger("lse.generations")

PLAN_FILE = "plan.json"

#: rename of a folder onto a non-empty folder (or onto a file): the place is taken
OCCUPIED = frozenset({errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR})

#: errors that make a file unusable for good (not a transient I/O error): a path through a file,
#: a folder where a file belongs, a loop of links, no permission
UNUSABLE = frozenset({errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.EACCES, errno.EPERM})

class Unknown(Exception):
    """A transient I/O error: decide nothing now, look again later."""


#: most children a generation may have: generation.json with 10**12 slots built a list of that size
MAX_SLOTS = 100_000

#: plan versions a generation may have (plan/, plan.1/ ...): each supersedes unusable earlier ones
MAX_PLAN_VERSIONS = 16


#: What a replacement rule decides: the seam's own type (kill: parents that die; alive: children
#: that join the population; dead: children recorded dead).  One type, so an algorithm's
#: ``replace`` is a ``plan_fn`` as it is.
Plan = ReplacementPlan


#: ``plan_fn(parents, children) -> Plan``: parents are the alive individuals' records (sorted by
#: id), children the generation's records (sorted by slot).  Must be pure: it runs once per
#: generation, on whichever worker closes it.
PlanFn = Callable[[list[IndividualRecord], list[IndividualRecord]], Plan]


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
    next_slots: int | None = Field(None, ge=1, le=MAX_SLOTS,
                                   description="slots of generation g+1 as the rule decided; None: the configured count")
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
    if plan.next_slots is not None and not 1 <= plan.next_slots <= MAX_SLOTS:
        problems.append(f"next_slots {plan.next_slots} is not in 1..{MAX_SLOTS}")
    if problems:
        raise ValueError("invalid replacement plan: " + "; ".join(problems))


class Planner:
    """Reads, writes and applies the plans of one :class:`~lse.store.generations.Generations`."""

    def __init__(self, gens: "Generations") -> None:
        self.gens = gens
        self.store = gens.store
        self.paths = gens.paths
        self._bad_plans: set[Path] = set()  # unusable plan files already warned about

    def planned(self, g: int) -> bool | None:
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

    def in_force(self, g: int) -> tuple[GenerationPlan | None, int]:
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
                if e.errno not in UNUSABLE:
                    raise StoreError(f"cannot read {path} ({os.strerror(e.errno or 0)})", "the next step retries") from None
                problem = os.strerror(e.errno or 0)
            if path not in self._bad_plans:
                self._bad_plans.add(path)
                log.warning("%s is unusable (%s); the next plan supersedes it", path, problem[:200])
        raise StoreError(f"generation {g} has {MAX_PLAN_VERSIONS} unusable plans",
                         f"inspect {self.paths.generation(g)} by hand: lse writes one plan per generation")

    def make(self, g: int, plan_fn: PlanFn, version: int = 0) -> GenerationPlan:
        """Compute the plan from the sealed children and the alive population, publish it as
        ``version`` unless another worker did first; the plan in force either way."""
        store = self.store
        n = self.gens.slots(g)
        try:
            kids = self.gens._sound_children(g, self.paths.generation_sealed(g), check_unique=False)
        except Unknown as e:
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
                              children=planned, next_slots=decided.next_slots, planned_by=me, planned_at=time.time())
        tmp = self.paths.private_file(me, "gplan")
        try:
            store.worker.dir.mkdir(exist_ok=True)
            tmp.mkdir()
            write_file(tmp / PLAN_FILE, dumps(body.model_dump(mode="json")))
            fsync_dir(tmp)
            try:
                store.rename(tmp, self.paths.generation_plan(g, version))
            except OSError as e:
                if e.errno not in OCCUPIED:
                    raise
            fsync_dir(self.paths.generation(g))
        except OSError as e:
            raise store.os_error(e, f"write the plan of generation {g}") from None
        finally:
            remove_tree(tmp)
        plan = self.gens.plan(g)  # ours, or the one that won: never the one we computed, unread
        if plan is None:
            raise LostRace(f"the plan of generation {g} vanished (this worker's folder was reclaimed?)")
        return plan

    def apply(self, g: int, plan: GenerationPlan) -> None:
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
                self.gens._quarantine(src, e.message)
                continue
            if rec.id != c.id:
                self.gens._quarantine(src, f"slot {c.slot} holds {rec.id}, the plan names {c.id}")
                continue
            name = IndividualName.parse(c.name)
            if name is None or name.id != c.id:
                raise StoreError(f"the plan of generation {g} names {c.name!r} for {c.id}", "inspect it by hand")
            store.adopt(src, name)
