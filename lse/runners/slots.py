"""Births and birth-slot claims, from directory listings only (no file is read): births from the
population scan (lse.store.scan, kept between a worker's steps so a step parses only new names),
the claims in flight, and the rank of an initial child among them.

Birth slots.  Before training, a worker writes a claim ``workers/<wid>/claim-<child id>``,
then lists births (``individuals/``, ``gc/``, ``history/``: listings, no reads) and every
worker's claims.  Claims are ranked by child id (ids sort by time; every worker sees the same
order), and a claim whose rank does not fit under the limit is withdrawn and retried a second
later: two workers racing for the last slot never both train it.  A claim disappears with its
worker's private folder when the worker stops or is reclaimed as dead (``Store.recover``), so a
crash frees its slot.  The claim is removed only *after* the birth rename: for an instant the
child counts twice, which only makes others wait, never overshoot.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lse.core.records import is_id, is_worker_id
from lse.store import Store
from lse.store.scan import PopulationScan


def count_births(store: Store, scan: PopulationScan | None = None) -> set[str]:
    """Ids of every individual ever published (alive, dead, being collected, collected): the
    population scan's births (lse.store.scan).  ``scan``: one kept between a worker's steps, so
    only the names that appeared since are parsed; the answer is that of a fresh scan."""
    scan = scan if scan is not None else PopulationScan(store.paths)
    scan.refresh()
    return scan.births()


def list_claims(store: Store) -> list[str]:
    """Child ids claimed by every worker (children being trained now), sorted."""
    return sorted(_claims(store, with_times=False))


def claim_times(store: Store) -> dict[str, int]:
    """Every claim with its file's modification time (ns; set by the filesystem when the claim
    was created -- on NFS by the server's clock).  One stat per claim."""
    return _claims(store, with_times=True)


def _claims(store: Store, with_times: bool) -> dict[str, int]:
    out: dict[str, int] = {}
    for wname in _names(store.paths.workers):
        if not is_worker_id(wname):
            continue
        folder = store.paths.worker(wname)
        for name in _names(folder):
            if name.startswith("claim-") and is_id(name[6:]):
                try:
                    out[name[6:]] = os.lstat(folder / name).st_mtime_ns if with_times else 0
                except FileNotFoundError:
                    continue  # born (or withdrawn) since the listing: births will count it
    return out


def initial_rank(child_id: str, claims: list[str], times: dict[str, int]) -> int:
    """How many in-flight claims come before ours for an initial slot.

    Every worker must agree on the order, without talking.  Ids cannot give it: an id is drawn
    before its claim file exists, so a late file with an early id overtook claims that had
    already counted their rank (7 initial individuals for 6).  Creation times can: a claim a
    worker did not see was created after its listing, so no earlier than its own claim.
    Timestamps are coarse (4 ms ticks here), so a claim created in our tick counts as before
    ours: two claims that see each other in one tick both yield to the other and take the same
    slot (an initial index twice, and one initial individual too few if it was the last slot;
    the kill rule heals the count); one that did not see the other never overtakes it.
    """
    mine = times.get(child_id)
    if mine is None:  # no time for our own claim: yield to everyone
        return len(claims) - 1
    return sum(1 for c in claims if c != child_id and times.get(c, mine) <= mine)


def tied(child_id: str, claims: list[str], times: dict[str, int]) -> bool:
    """Whether another in-flight claim has our claim's creation time to the tick: then neither
    can tell which came first, and both would rank themselves into one initial slot."""
    mine = times.get(child_id)
    return mine is not None and any(c != child_id and times.get(c) == mine for c in claims)


def _names(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []


def untimed(op: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """How the loop calls what ``lse simulate`` measures (``op``: select, view, count_births,
    list_claims, read_config, generations): directly.  ``lse simulate`` injects a timed one
    (lse.runners.worker.run_worker takes it as ``timed``)."""
    return fn(*args, **kwargs)


class BirthLedger:
    """What one worker has counted of the population's births, kept between its steps: the ids
    (a birth is a birth forever) and the FLOPs each cost (a record's FLOPs never change).

    ``timed``: how :func:`count_births` is called (:func:`untimed`; ``lse simulate``
    measures it)."""

    def __init__(self, store: Store, population_size: int, timed: Callable[..., Any] | None = None) -> None:
        self.store = store
        self.population_size = population_size
        self.timed = timed or untimed
        self.cache = PopulationScan(store.paths)  # names parsed already (history/ only grows)
        self.seen: set[str] = set()  # every birth this worker ever counted
        self.flops: dict[str, float] = {}
        self.initial_done = False  # set once births >= population_size were seen (monotone)

    def births(self, limits) -> set[str] | None:
        """Births so far, or None when no decision needs them any more.  Births only grow: once
        the initial population is complete and neither max_individuals nor max_flops is set,
        this worker never lists history/ again (it grows by two files per kill: 40k entries
        after 20k births)."""
        if limits.max_individuals is None and limits.max_flops is None and self.initial_done:
            return None
        # A listing can miss an entry renamed while it is read (readdir over a folder where a
        # kill renames alive -> dead); what was seen before stays counted.
        self.seen = self.timed("count_births", count_births, self.store, self.cache) | self.seen
        if len(self.seen) >= self.population_size:
            self.initial_done = True
        return self.seen

    def flops_spent(self, births: set[str]) -> float:
        """FLOPs of every birth so far; only births not seen before are read (Store.record: their
        own files), not all 20k records every step."""
        for iid in births - self.flops.keys():
            rec = self.store.record(iid)
            if rec is not None:  # None: unreadable or moved during the look; asked again next step
                self.flops[iid] = rec.flops.total if rec.flops else 0.0
        return sum(self.flops.values())
