"""End to end (issue 20, item 3): a lineage pushed to the stride bound.  A real ``worker.py``
on a population whose every individual has a convolution at the largest stride DNA validation
accepts, mutating only the stride: it used to raise DNAError, exit 2 (which the launcher reads
as a configuration error) and leave the killed loser's slot empty.  Now the worker publishes
to the end and exits 0, and every child is a valid DNA."""

from __future__ import annotations

from lse.core.dna import DNA, MAX_STRIDE_LOG2, initial_dna
from lse.core.mutations import MUTATIONS
from lse.core.records import IndividualRecord, new_id
from lse.store import Store

from _reliability_helpers import births, check_history, check_individuals, logs_text, make_pop, run_worker_cli, write_data


def _at_the_bound(seed: int) -> DNA:
    import random

    dna, _ = MUTATIONS["insert_convolution"](initial_dna(0.1, input_channels=1), random.Random(seed))
    d = dna.model_dump(mode="python")
    for e in d["edges"]:
        if e["kind"] == "conv":
            e["stride_log2"] = MAX_STRIDE_LOG2 + 0.4  # still valid: rounds to 20
    return DNA.model_validate(d)


def test_a_lineage_at_the_stride_bound_keeps_publishing(tmp_path):
    import torch

    from lse.nn.build import build_model

    data = write_data(tmp_path / "data")
    pop = tmp_path / "pop"
    n_seed, n_children = 4, 12
    make_pop(pop, data, population_size=n_seed, max_individuals=n_seed + n_children,
             mutation_probabilities={"alter_stride": 1.0})
    store = Store(pop).open()
    store.register_worker("seeder", auto_heartbeat=False)
    try:
        for i in range(n_seed):
            dna = _at_the_bound(i)
            torch.manual_seed(i)
            rec = IndividualRecord(id=new_id(), dna=dna.model_dump(mode="json"), val_accuracy=0.3 + 0.01 * i,
                                   steps=5, examples=100, extra={"seeded": True})
            store.publish(rec, build_model(dna, (1, 12, 12), 10).state_dict())
    finally:
        store.close()

    r = run_worker_cli(pop, timeout=240)
    assert r.returncode == 0, r.stderr + logs_text(pop)
    assert len(births(pop)) == n_seed + n_children, r.stderr + logs_text(pop)
    check_individuals(pop)
    children = [rec for rec in check_history(pop) if rec.parent_id is not None]
    assert len(children) == n_children
    # Each child moved its parent's stride by ALTER-STRIDE's rule and no further: uniform in
    # [p - 1, p + 1], reflected at the bound, so never past it and never below
    # min(p - 1, 2*MAX - p - 1) -- the lineage stays at the bound rather than being reset.
    # (A count of children near the bound would depend on how deep the drawn lineages go.)
    by_id = {rec.id: rec for rec in check_history(pop)}
    for child in children:
        parent = {e["id"]: e for e in by_id[child.parent_id].dna["edges"]}
        for e in child.dna["edges"]:
            if e["kind"] != "conv":
                continue
            s, p = e["stride_log2"], parent[e["id"]]["stride_log2"]
            assert min(p - 1, 2 * MAX_STRIDE_LOG2 - p - 1) - 1e-9 <= s <= MAX_STRIDE_LOG2, (child.id, p, s)
