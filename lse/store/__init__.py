"""The population store: every shared state change is one atomic rename.

* :mod:`lse.store.population` -- individuals, workers, GC, recovery, quarantine.
"""

from lse.store.population import Entry, GCReport, PopulationPaths, RecoverReport, Store, WorkerHandle

__all__ = ["Entry", "GCReport", "PopulationPaths", "RecoverReport", "Store", "WorkerHandle"]
