"""The population store: every shared state change is one atomic rename.

* :mod:`lse.store.population` -- the :class:`Store` facade: listing, transitions (kill, publish,
  adopt), quarantine, STOP; it owns one of each job below.
* :mod:`lse.store.reading` -- parents, records and weights, read and judged.
* :mod:`lse.store.collect` -- garbage collection (dead individuals into history/).
* :mod:`lse.store.liveness` -- worker registration, heartbeats, liveness, recovery.
* :mod:`lse.store.experiment` -- experiment.json: created once, stop conditions replaced.
* the kernel: :mod:`lse.store.durable` (durable writes, listings, tree removal),
  :mod:`lse.store.paths` (every file's name), :mod:`lse.store.recordio` (what files hold, checked),
  :mod:`lse.store.saferead` (the one safe read).
* :mod:`lse.store.generations` -- the lock-free generation barrier of generational algorithms.
* :mod:`lse.store.view` -- the alive population for selection, records cached by folder name.
"""

from lse.store.collect import GCReport
from lse.store.liveness import RecoverReport, WorkerHandle
from lse.store.paths import PopulationPaths
from lse.store.population import Entry, Store

__all__ = ["Entry", "GCReport", "PopulationPaths", "RecoverReport", "Store", "WorkerHandle"]
