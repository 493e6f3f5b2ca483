"""The sequence of decisions one worker makes, as plain data, to prove a refactor changed none.

One worker (a thread, fixed id and seed) evolves a small population with a deterministic
stand-in trainer (fitness from the DNA and the training seed, no SGD).  Ids are timestamps, so
they are replaced by birth indices; what remains depends only on the worker's rng and the
algorithm: which parent each child came from, by which mutation, with which DNA, and who was
killed, in order.  ``tests/data/real2017-decisions.json`` holds the trace the worker produced
before the algorithm seam existed (commit 20d201f), re-recorded once since: when initial
individual k became a function of (seed, k) (commit d7b6a84), the initial individuals stopped
drawing from the worker's rng, which moved every later draw.  test_algorithms compares against it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from lse.config import ExperimentConfig, WorkerOptions
from lse.store import Store
from lse.runners.worker import ChildResult, run_worker

#: the experiments traced: the paper's algorithm and its two controls
CASES = {
    "tournament": {},
    "random": {"selection": "random"},
    "no-inheritance": {"inheritance": False},
}


class DeterministicTrainer:
    """Fitness from the DNA's shape and the training seed; no clock, no torch training."""

    input_channels = 1

    def prepare(self, config: ExperimentConfig) -> None:
        self.config = config

    def train_child(self, child, parent_states, recipe, *, seed, should_stop):
        dna, parent_state = child.dna, parent_states or None
        convs = dna.conv_edges()
        acc = min(0.95, 0.05 + 0.08 * len(convs) + 0.01 * (seed % 7) + 0.001 * len(dna.vertices))
        return ChildResult(
            acc, None, {"w": torch.zeros(1)},
            inheritance={"kept": int(parent_state is not None), "reinitialised": int(parent_state is None)},
            flops={"train_per_batch": 1.0, "eval_per_batch": 1.0, "total": 2.0}, params=1, steps=1, examples=50,
        )


def decision_trace(tmp_path: Path, case: str, births: int = 40) -> dict:
    pop = tmp_path / f"trace-{case}"
    Store(pop).create(ExperimentConfig(population_size=5, steps=1, max_individuals=births, seed=7, **CASES[case]))
    run_worker(pop, WorkerOptions(threads=1, heartbeat_seconds=5), DeterministicTrainer(), worker_id="trace-worker",
               handle_signals=False, log_to_file=False)
    records = sorted(Store(pop).open().records(), key=lambda r: r.id)
    index = {r.id: i for i, r in enumerate(records)}
    children = [
        {
            "parent": index.get(r.parent_id) if r.parent_id else None,
            "mutation": r.mutation_name,
            "dna": hashlib.sha256(json.dumps(r.dna, sort_keys=True).encode()).hexdigest()[:16],
            "fitness": r.val_accuracy,
        }
        for r in records
    ]
    killed = sorted((r for r in records if r.state == "dead" and r.killed_at is not None), key=lambda r: r.killed_at)
    return {"children": children, "kills": [index[r.id] for r in killed],
            "alive": sorted(index[r.id] for r in records if r.state == "alive")}
