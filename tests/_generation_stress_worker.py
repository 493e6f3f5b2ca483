"""One worker of the generation-barrier stress test (run as a script by
tests/test_generations_stress.py; SIGKILLed at random by the test).

usage: python _generation_stress_worker.py ROOT WORKER_ID SEED TARGET_GENERATION GO_FILE OUT_JSON

Loops until generation TARGET is open: close what can be closed, claim a slot, "train" (a short
sleep), publish (one child in ten fails and is published dead).  No torch: the weights file is a
few bytes (the barrier only checks that it is a regular file), so a respawn costs little CPU.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lse.store.generations  # noqa: E402
from lse.core.dna import initial_dna  # noqa: E402
from lse.errors import LostRace  # noqa: E402
from lse.store.generations import Generations  # noqa: E402
from lse.store.atomic import write_json_atomic  # noqa: E402
from lse.core.records import IndividualRecord, new_id  # noqa: E402
from lse.store import Store  # noqa: E402

from _generation_helpers import mu_plus_lambda  # noqa: E402

lse.store.generations.save_weights = lambda state_dict: b"stress weights"

MU = int(os.environ.get("LSE_GEN_MU", "6"))
LAMBDA = int(os.environ.get("LSE_GEN_LAMBDA", "4"))
TRAIN = (0.03, 0.15)  # seconds of "training" per child
RENAME_DELAY = 0.01


def _slow_rename(src, dst) -> None:
    time.sleep(RENAME_DELAY)
    os.rename(src, dst)


def main() -> None:
    root, wid, seed, target, go, out = sys.argv[1:7]
    rng = random.Random(int(seed))
    # Every rename waits a little first: closing a generation (a dozen renames) then takes long
    # enough that random kills often land inside it, between two of its renames.
    store = Store(root, rename=_slow_rename)
    store.register_worker(wid, auto_heartbeat=False)  # same host: liveness from the process table
    gens = Generations(store, slots=LAMBDA, initial_slots=MU, rng=rng)
    plan = mu_plus_lambda(MU)
    dna = initial_dna().model_dump(mode="json")
    while not os.path.exists(go):
        time.sleep(0.005)
    published = lost = waits = 0
    i = 0
    while True:
        i += 1
        g = gens.advance(plan)
        if g >= int(target):
            break
        if i % 15 == 0:
            store.recover()
        if i % 25 == 0:
            store.gc()
        k = gens.claim(g)
        if k is None:
            waits += 1
            time.sleep(0.01)
            continue
        time.sleep(rng.uniform(*TRAIN))
        ok = rng.random() >= 0.1
        rec = IndividualRecord(id=new_id(), dna=dna, val_accuracy=round(rng.random(), 6) if ok else None,
                               failed_reason=None if ok else "NaN loss")
        try:
            gens.publish(g, k, rec, {} if ok else None, alive=ok)
            published += 1
        except LostRace:
            lost += 1
    store.close()
    # one rename: a kill that lands while the worker writes its tally (the storm kills any
    # worker still running, also one finishing) leaves no half-written file for the test to read
    write_json_atomic(Path(out), {"published": published, "lost": lost, "waits": waits},
                      fix="free space under the test's tmp_path")


if __name__ == "__main__":
    main()
