"""The population store: every shared state change is one atomic rename.

* :mod:`lse.store.population` -- individuals, workers, GC, recovery, quarantine.
* :mod:`lse.store.generations` -- the lock-free generation barrier of generational algorithms.
* :mod:`lse.store.view` -- the alive population for selection, records cached by folder name.
"""

from lse.store.population import Entry, GCReport, PopulationPaths, RecoverReport, Store, WorkerHandle

__all__ = ["Entry", "GCReport", "PopulationPaths", "RecoverReport", "Store", "WorkerHandle"]
