"""Garbage collection of a population: dead individuals leave ``individuals/`` for ``history/``.

    kill   individuals/<id>.dead.<acc>.<killer>/  (lse.store.population)
    GC     -> gc/<id>.<collector>/  (one rename: two collectors never both get one)
           -> history/<id>.json (+ the weights reports need), then the folder is deleted

One :class:`Collector` per :class:`~lse.store.population.Store` (``store.collector``);
``Store.gc()`` runs it.  Recovery (lse.store.liveness) finishes what a dead collector left.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lse.core.records import IndividualName, IndividualRecord, is_id
from lse.errors import CorruptIndividual
from lse.store.durable import listdir_sorted, path_exists, remove_tree, scandir_entries
from lse.store.paths import RECORD_FILE
from lse.store.recordio import LISTED, foreign_reason, killer, parse_record, structure_problem, warn_once
from lse.store.saferead import read_bytes

if TYPE_CHECKING:
    from lse.store.population import Store

__all__ = ["Collector", "GCReport"]

log = logging.getLogger("lse.store.population")


@dataclass
class GCReport:
    collected: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    lost: int = 0  # entries another collector took first


class Collector:
    """The garbage collector of one store (its worker collects; read-only stores never do)."""

    def __init__(self, store: "Store") -> None:
        self.store = store

    def gc(self) -> GCReport:
        """Collect dead individuals: rename into gc/ (two collectors never both get one), keep
        the record in history/<id>.json, delete the weights.  Quarantines foreign entries."""
        report = GCReport()
        me = self.store.worker.id
        keep = None  # the weight-keeping policy lists two folders: only when there is a dead one
        unlisted = 0
        for de in scandir_entries(self.store.paths.individuals):
            parsed = IndividualName.parse(de.name)
            if parsed is None or de.is_symlink():
                quiet = len(report.quarantined) >= LISTED  # the reason file still says why
                if self.store.quarantine(Path(de.path), foreign_reason(de), quiet=quiet):
                    report.quarantined.append(de.name)
                    unlisted += quiet
                continue
            if parsed.state != "dead":
                continue
            if keep is None:  # before the first rename: the dead still count as rivals
                keep = self.keep_policy()
            dst = self.store.paths.gc_individual(parsed.id, me)
            try:
                won = self.store.rename(Path(de.path), dst)
            except OSError as e:
                raise self.store.os_error(e, f"collect {parsed.id}") from None
            if not won:
                report.lost += 1
                continue
            if self.finish_individual(dst, parsed.id, parsed.by, keep_weights=keep):
                report.collected.append(parsed.id)
            else:
                report.quarantined.append(parsed.id)
        if unlisted:
            log.warning("quarantined %d more foreign entries (reasons in %s/*.reason.txt)",
                        unlisted, self.store.paths.quarantine)
        return report

    def keep_policy(self) -> Callable[[IndividualRecord], bool]:
        """Which dead individuals keep their weights (moved to history/) when collected.

        Reports need the test accuracy of the best-so-far individual at every time (Figure 2)
        and of the validation top-2 (the ensemble, section 3.7), long after those individuals
        died.  So an individual keeps its weights when it beat every individual born before it
        (a "record holder": O(log n) of n births for noisy fitness), or it is in the current
        top-2.  Known rivals come from listings (names in individuals/ carry fitness; kept
        weights are in history/); one in flight in gc/ is unknown, which can only make us keep
        more, never less.

        Ids are drawn when a child's training starts, so id order is not birth order: a
        rival with an earlier id and a better accuracy may have been born *after* this one.
        Id order decides the clear cases; for the others the rivals' birth times are read
        from their records (the oldest rival first: usually the first read settles it).
        """
        fit: dict[str, float] = {}
        paths: dict[str, Path] = {}
        for e in self.store.entries():
            if e.fitness is not None:
                fit[e.id] = e.fitness
                paths[e.id] = self.store.paths.record_file(e.path)
        suffix = ".weights.safetensors"
        for name, _path in listdir_sorted(self.store.paths.history):
            if name.endswith(suffix) and is_id(name[: -len(suffix)]):
                i = name[: -len(suffix)]
                if i not in fit:
                    acc = self._history_fitness(i)
                    if acc is not None:
                        fit[i] = acc
                        paths[i] = self.store.paths.history_record(i)
        top2 = set(sorted(fit, key=lambda i: (-fit[i], i))[:2])

        def born_at(i: str) -> float | None:
            for path in (paths[i], self.store.paths.history_record(i)):  # killed+collected meanwhile
                try:
                    return parse_record(read_bytes(path, "record"), str(path), None).born_at
                except (OSError, CorruptIndividual):
                    continue
            return None

        def keep(rec: IndividualRecord) -> bool:
            if rec.val_accuracy is None:
                return False
            if rec.id in top2:
                return True
            for i in sorted(r for r in fit if r < rec.id and fit[r] >= rec.val_accuracy):
                b = born_at(i)
                if b is not None and rec.born_at is not None and b <= rec.born_at:
                    return False  # an older, at-least-as-good rival: not a record holder
            return True

        return keep

    def _history_fitness(self, individual_id: str) -> float | None:
        try:
            path = self.store.paths.history_record(individual_id)
            rec = parse_record(read_bytes(path, "record"), str(path), None)
        except (OSError, CorruptIndividual):
            return None
        return rec.val_accuracy

    def finish_individual(
        self,
        gc_dir: Path,
        individual_id: str,
        killed_by: str | None,
        keep_weights: Callable[[IndividualRecord], bool] | None = None,
    ) -> bool:
        """history/<id>.json from gc/<…>/record.json (and the weights, when reports need them:
        :meth:`keep_policy`), then delete.  False: it was quarantined."""
        try:
            rec = self.store.read_record(gc_dir)
        except FileNotFoundError:
            rec = None
        except CorruptIndividual as e:
            self.store.quarantine(gc_dir, e.message)
            return False
        except OSError as e:  # an I/O error: left in gc/ for recovery unless provably malformed
            problem = structure_problem(gc_dir, (RECORD_FILE,))
            if problem is not None:
                self.store.quarantine(gc_dir, problem)
            else:
                warn_once(f"unreadable:{gc_dir}", f"cannot read {gc_dir} ({os.strerror(e.errno or 0)}); left for recovery")
            return False
        if rec is None:
            # No record: either a crash left it, or a recoverer finished it already.
            if not self.store.paths.history_record(individual_id).exists():
                self.store.quarantine(gc_dir, "collected folder without record.json")
                return False
        else:
            rec = rec.model_copy(
                update={"state": "dead", "collected": True, "killed_by": killer(rec, killed_by)}
            )
            if keep_weights is not None and keep_weights(rec):
                try:  # same filesystem: one rename, the data is already fsynced
                    self.store.rename(self.store.paths.weights_file(gc_dir), self.store.paths.history_weights(individual_id))
                except OSError as e:
                    warn_once(f"keep:{individual_id}", f"could not keep weights of {individual_id}: {e}")
            self.store.publish_file(self.store.paths.history_record(individual_id), rec.model_dump(mode="json"), "history")
        self.remove_or_quarantine(gc_dir)
        return True

    def remove_or_quarantine(self, path: Path) -> None:
        """Delete a tree in gc/; what cannot be deleted is quarantined, so that no worker meets
        it again on its next pass (a chain of nested folders once stayed in gc/ for every
        worker's recursive delete to die on)."""
        if not remove_tree(path) and path_exists(path):
            self.store.quarantine(path, "could not be deleted (contents refused removal)")
