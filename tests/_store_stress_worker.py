"""One racing process of the store stress test (run as a script by tests/test_store_stress.py).

usage: python _store_stress_worker.py ROOT WORKER_ID N_OPS SEED OUT_JSON GO_FILE

Races kills and births on the *same* few individuals (it picks among the oldest alive ones),
collects garbage now and then, and writes what succeeded to OUT_JSON.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lse.errors import LostRace  # noqa: E402
from lse.store.population import Store  # noqa: E402
from lse.store.atomic import write_json_atomic  # noqa: E402

from _store_helpers import make_record, make_weights  # noqa: E402


def main() -> None:
    root, wid, n_ops, seed, out, go = sys.argv[1:7]
    rng = random.Random(int(seed))
    store = Store(root)
    store.register_worker(wid, auto_heartbeat=False)
    deadline = time.monotonic() + 60
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.001)
    births: list[str] = []
    kills: list[str] = []
    lost = 0
    for i in range(int(n_ops)):
        alive = store.list_alive()
        hot = alive[:4]  # the oldest few: every process fights over the same individuals
        if len(alive) > 6 and rng.random() < 0.55:
            victim = rng.choice(hot)
            if store.kill(victim):
                kills.append(victim.id)
            else:
                lost += 1
        else:
            parent = None
            if hot:
                try:
                    parent, _weights = store.read_parent(rng.choice(hot))
                except LostRace:
                    lost += 1
            rec = make_record(round(rng.random(), 6), parent=parent)
            if rng.random() < 0.1:
                store.publish(rec.model_copy(update={"val_accuracy": None, "failed_reason": "NaN"}), None, alive=False)
            else:
                store.publish(rec, make_weights(i))
            births.append(rec.id)
        if i % 25 == 0:
            store.gc()
    store.close()
    # one rename: a kill that lands while the worker writes its tally (the storm kills any
    # worker still running, also one finishing) leaves no half-written file for the test to read
    write_json_atomic(Path(out), {"births": births, "kills": kills, "lost": lost},
                      fix="free space under the test's tmp_path")


if __name__ == "__main__":
    main()
