"""Paired comparisons start from one population: initial individual k (its genome and its
initial weights) is a function of the experiment's seed and k, whichever worker makes it
(issue 31's pairing gap: worker ids carry the launcher's pid, and the initial individuals used
to be drawn from the worker's own rng)."""

from __future__ import annotations

import json

import pytest

from lse.store import Store

from _reliability_helpers import make_pop, run_worker_cli, write_data


def _initial(pop) -> list[tuple]:
    return sorted((r.extra["seed"], json.dumps(r.dna, sort_keys=True), r.val_accuracy)
                  for r in Store(pop).records() if not r.parents)


@pytest.mark.parametrize("algorithm", [
    {"name": "real2017"},
    {"name": "pycortex", "options": {"speciation": False, "loop": "generational"}},  # random initial genomes
])
def test_one_seed_one_initial_population_whichever_worker(tmp_path, algorithm):
    data = write_data(tmp_path / "data")
    runs = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        pop = tmp_path / name
        make_pop(pop, data, population_size=3, max_individuals=3, seed=seed, algorithm=algorithm)
        r = run_worker_cli(pop, "--worker-id", f"worker-{name}", timeout=240)
        assert r.returncode == 0, r.stderr[-3000:]
        runs[name] = _initial(pop)
    assert len(runs["a"]) == 3 and len({s for s, _, _ in runs["a"]}) == 3
    assert runs["a"] == runs["b"]  # same genomes, same initial weights, same training: same accuracy
    assert {s for s, _, _ in runs["a"]}.isdisjoint({s for s, _, _ in runs["c"]})
