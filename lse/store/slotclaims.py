"""Claims on the slots of an open generation (lse.store.generations): hints that spread work.

    workers/<wid>/gen-<g>-<k>         a claim on slot k of generation g

A claim lives in its worker's own folder, so it vanishes when the worker stops or is reclaimed
as dead.  It only spreads work: two workers that pick one slot at one instant both train, and
the second publish loses.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from lse.core.records import is_worker_id
from lse.store.durable import scandir_entries, unlink_quiet

if TYPE_CHECKING:
    from lse.store.generations import Generations

__all__ = ["SlotClaims"]

_CLAIM = re.compile(r"gen-(0|[1-9][0-9]{0,11})-(0|[1-9][0-9]{0,11})")


def _parse_claim(name: str) -> tuple[int, int] | None:
    """gen-<g>-<k> -> (g, k) in canonical decimal; anything else None."""
    m = _CLAIM.fullmatch(name)
    return None if m is None else (int(m.group(1)), int(m.group(2)))


class SlotClaims:
    """This worker's claims, and the others', on the slots of one generation barrier."""

    def __init__(self, gens: "Generations") -> None:
        self.gens = gens
        self.store = gens.store
        self.paths = gens.paths

    def claim(self, g: int) -> int | None:
        """A slot of generation ``g`` for this worker to fill: not filled, not claimed by a live
        worker.  None: the generation is sealed, or every free slot is being worked on (poll).

        The claim is a file in this worker's own folder, so it vanishes when the worker stops
        or is reclaimed as dead.  It only spreads work: two workers that pick the same slot at
        the same instant both train, and the second publish loses.
        """
        me = self.store.worker.id
        n = self.gens.slots(g)
        filled = self.gens._filled(g)
        if filled is None:
            return None  # sealed
        free = [k for k in range(n) if k not in filled]
        mine = self.mine()
        for gk in mine:
            if gk[0] == g and gk[1] in free:
                return gk[1]  # already ours
        self.release()
        if not free:
            return None
        for _attempt in range(3):
            claims = self.of(g)
            candidates = [k for k in free if not claims.get(k)]
            if not candidates:
                # Every free slot is claimed: those held only by dead workers are free again.
                # Liveness is judged only here (a heartbeat read per claimant): checking every
                # claim of 250 workers on every step made claiming the barrier's main cost.
                candidates = [k for k in free if all(self.store.is_dead_worker(w) is True for _, w in claims[k])]
            if not candidates:
                return None
            k = self.gens._rng.choice(candidates)
            path = self.paths.generation_claim(me, g, k)
            self.store.worker.dir.mkdir(exist_ok=True)  # recreated if a recoverer took our folder
            path.touch(exist_ok=True)
            # Two workers that chose k in the same instant: the older claim keeps it (creation
            # time, then worker id: every worker sees the same order), the other chooses again.
            # A dead worker's claim never keeps a slot.
            rivals = self.of(g, with_times=True, slot=k).get(k, [])
            mine_t = next((t for t, w in rivals if w == me), None)
            if mine_t is None or not any((t, w) < (mine_t, me) and self.store.is_dead_worker(w) is not True
                                         for t, w in rivals if w != me):
                return k
            unlink_quiet(path)
            free.remove(k)
        return None

    def release(self) -> None:
        """Drop this worker's claims (it holds at most one)."""
        for g, k in self.mine():
            unlink_quiet(self.paths.generation_claim(self.store.worker.id, g, k))

    def mine(self) -> list[tuple[int, int]]:
        out = []
        for de in scandir_entries(self.store.worker.dir):
            gk = _parse_claim(de.name)
            if gk is not None:
                out.append(gk)
        return out

    def of(self, g: int, with_times: bool = False, slot: int | None = None) -> dict[int, list[tuple[int, str]]]:
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
