"""PyCortex (seed 002) under hostile entries: a real worker on a pycortex population that
holds a malformed genome (an even kernel), a genome that does not fit the data, a record that
claims to continue an individual it does not, and weights of the wrong shapes.  The worker
quarantines what is malformed, never lets a bogus continuation kill a sound network by
mistake for more than the one it names, keeps evolving, and every alive individual rebuilds
from its genome with exactly its stored tensors."""

from __future__ import annotations

import json
import shutil

import torch

from lse.core.records import IndividualName, new_id
from lse.store import Store

from _reliability_helpers import births, check_alive_evaluate, check_history, check_individuals, make_pop, \
    run_worker_cli, write_data


def _clone(store, acc, tamper):
    good = store.list_alive()[0]
    name = IndividualName(new_id(), "alive", acc)
    dst = store.paths.individual(name)
    shutil.copytree(good.path, dst)
    rec = json.loads((dst / "record.json").read_text())
    rec["id"] = name.id
    rec["val_accuracy"] = rec["fitness"] = acc
    tamper(dst, rec)
    (dst / "record.json").write_text(json.dumps(rec))
    return name


def test_pycortex_worker_through_hostile_entries(tmp_path):
    data = write_data(tmp_path / "data")
    pop = tmp_path / "pop"
    make_pop(pop, data, population_size=4,
             algorithm={"name": "pycortex", "options": {"ecosystem_limit": 6, "initial_species": 2}})
    store = Store(pop).open()
    store.replace_config(store.config.model_copy(update={"max_individuals": 6}))
    r = run_worker_cli(pop, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]

    def even_kernel(d, rec):
        rec["dna"]["conv"] = [{"kernels": [[2, 3]], "stride": [1, 1]}]

    def too_big(d, rec):  # fits no 12x12 input: kernel 25 > 6 -- bound genomes are validated
        rec["dna"].update(input=[1, 12, 12], classes=10, conv=[{"kernels": [[25, 1]], "stride": [1, 1]}])

    def bogus_continuation(d, rec):  # claims to continue an id that is not alive: harmless
        rec["extra"] = {**rec.get("extra", {}), "continues": "20000101T000000000000Z-deadbeef", "step": "continue"}

    def wrong_shapes(d, rec):
        from safetensors.torch import save_file

        (d / "weights.safetensors").unlink()
        save_file({"out.weight": torch.zeros(3, 7)}, str(d / "weights.safetensors"))

    hostile = {
        "even kernel": _clone(store, 0.99, even_kernel),
        "kernel over half the input": _clone(store, 0.98, too_big),
        "bogus continuation": _clone(store, 0.97, bogus_continuation),
        "wrong-shaped weights": _clone(store, 0.96, wrong_shapes),
    }
    before = len(births(pop))
    store.replace_config(store.config.model_copy(update={"max_individuals": before + 12}))
    r = run_worker_cli(pop, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    recs = {x.id for x in Store(pop).records()}
    for what in ("even kernel", "kernel over half the input"):
        assert hostile[what].id not in recs, f"{what} was taken as a real individual"
    assert len(births(pop)) >= before + 12 - 2  # it kept evolving (the two quarantined no longer count)
    wrong = hostile["wrong-shaped weights"].id
    check_individuals(pop)
    # The planted clones carry a made-up fitness (0.96, 0.97: the test wrote it, not lse), so
    # the harmless bogus continuation, which may stay alive as a champion, cannot reproduce it.
    check_alive_evaluate(pop, skip=frozenset({wrong, hostile["bogus continuation"].id}))
    check_history(pop)
