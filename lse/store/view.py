"""The population view for selection: one listing, and records read once per folder name.

A whole-population selector (Pareto ranking, roulette over objectives, species) needs every
alive individual's record, and 250 workers take a step every few seconds.  Records never change
once published and every transition renames the folder, so a parsed record is valid for as
long as its folder keeps its name: :class:`ViewCache` keeps them by name and each step reads
only the individuals born since the last one.  Names that left the listing are dropped, so the
cache never grows beyond the alive population.
"""

from __future__ import annotations

from lse.algorithms.base import Member, PopulationView
from lse.core.records import IndividualRecord
from lse.store.population import Entry, Store


class ViewCache:
    """One per worker loop (not thread-safe)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._by_name: dict[str, IndividualRecord] = {}
        self.reads = 0  # records parsed so far (what the cache saves is visible in tests/simulate)

    def view(self, alive: list[Entry], with_records: bool) -> PopulationView:
        """The view of ``alive`` (one listing); records parsed for new names when asked."""
        members = [Member(e.id, e.fitness) for e in alive]
        if not with_records:
            return PopulationView(members)
        current: dict[str, IndividualRecord] = {}
        for e in alive:
            name = e.path.name
            rec = self._by_name.get(name)
            if rec is None:
                # None: moved on during the look, unreadable for now (asked again next step),
                # or malformed (then quarantined by the store)
                rec = self.store.read_entry_record(e)
                self.reads += 1
            if rec is not None:
                current[name] = rec
        self._by_name = current
        records = {e.id: r for e in alive if (r := current.get(e.path.name)) is not None}
        return PopulationView(members, records)
