"""Births and birth-slot claims, from directory listings only (no file is read): the listings,
the memo that keeps a step from re-parsing 50k names, and the rank of an initial child among the
claims in flight.

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

from lse.core.records import IndividualName, is_id, is_worker_id
from lse.store import Store


class BirthCache:
    """What :func:`count_births` already parsed, kept by one worker between its steps.

    A step used to parse every name in individuals/ and history/ again (1.6 s per call at 50k
    entries on a loaded 2-core machine; history/ grows by two files per kill, forever).  Parsing
    is a pure function of the name, so a name seen before is looked up instead: each step lists
    the folders as before (the listing decides what exists) and parses only names it has not
    seen.  Names that left a folder are dropped from the memo, so the result is exactly that of
    an uncached count.  Not thread-safe: one per worker loop.
    """

    def __init__(self) -> None:
        self.individuals: dict[str, str] = {}  # name -> id, valid non-symlink names only
        self.history: dict[str, str | None] = {}  # name -> id of a record, None: not a record
        self.history_ids: set[str] = set()  # the ids among self.history's values


def count_births(store: Store, cache: BirthCache | None = None) -> set[str]:
    """Ids of every individual ever published (alive, dead, being collected, collected).

    Listed in the order an individual moves (individuals/ -> gc/ -> history/, the history record
    written before the gc folder is removed), so one that moves during the listing is still seen.
    ``cache`` (a worker's :class:`BirthCache`) spares re-parsing names seen by earlier calls; the
    result is the same with or without it.
    """
    cache = cache if cache is not None else BirthCache()
    ids = _individual_ids(store, cache)
    for name in _names(store.paths.gc):
        head = name.split(".")[0]
        if is_id(head) and name.count(".") == 1:
            ids.add(head)
    ids |= _history_ids(store.paths.history, cache)
    return ids


def _individual_ids(store: Store, cache: BirthCache) -> set[str]:
    """Ids in individuals/, as ``{e.id for e in store.entries()}``: one scandir, strict parse of
    names not seen before, symlinks refused.  Anything foreign (or an error listing the folder)
    falls back to ``store.entries()`` itself, so its warnings and errors are unchanged."""
    seen = cache.individuals
    memo: dict[str, str] = {}
    try:
        with os.scandir(store.paths.individuals) as it:
            for de in it:
                name = de.name
                iid = seen.get(name)
                if iid is None:
                    parsed = IndividualName.parse(name)
                    if parsed is None:
                        break
                    iid = parsed.id
                if de.is_symlink():
                    break
                memo[name] = iid
            else:
                cache.individuals = memo
                return set(memo.values())
    except OSError:
        pass
    cache.individuals = {}
    return {e.id for e in store.entries()}


def _history_ids(folder: Path, cache: BirthCache) -> set[str]:
    """Ids of the records ``<id>.json`` in history/ (not ``<id>.death.json``); a copy."""
    current = set(_names(folder))
    known = cache.history
    gone = known.keys() - current
    if gone:
        for name in gone:
            del known[name]
        cache.history_ids = {i for i in known.values() if i is not None}
    for name in current - known.keys():
        iid = name[:-5] if name.endswith(".json") and not name.endswith(".death.json") and is_id(name[:-5]) else None
        known[name] = iid
        if iid is not None:
            cache.history_ids.add(iid)
    return set(cache.history_ids)


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


class BirthLedger:
    """What one worker has counted of the population's births, kept between its steps: the ids
    (a birth is a birth forever) and the FLOPs each cost (a record's FLOPs never change).

    ``timed``: how :func:`count_births` is called (lse.runners.worker.untimed; ``lse simulate``
    measures it)."""

    def __init__(self, store: Store, population_size: int, timed: Callable[..., Any] | None = None) -> None:
        self.store = store
        self.population_size = population_size
        self.timed = timed or (lambda op, fn, *args: fn(*args))
        self.cache = BirthCache()  # names count_births parsed already (history/ only grows)
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
