"""Network-morphism inheritance (``ExperimentConfig.morph``, issue 19): a child starts out
computing what its parent computed -- exactly after a widening, a grown kernel or a linear
stride-1 insertion -- and the parts it added can still learn."""

from __future__ import annotations

import random

import pytest
import torch

from lse.core.dna import DNA
from lse.core.mutations import MutationRecord, insert_convolution, mutate_many
from lse.core.provenance import Provenance, inserted_convolutions
from lse.nn.build import build_model
from lse.nn.inherit import inherit

from _dna_helpers import rich

SHAPE = (3, 16, 16)


def parent_model(dna: DNA):
    torch.manual_seed(0)
    m = build_model(dna, SHAPE, 10)
    m.train()
    for _ in range(3):
        m(torch.randn(8, *SHAPE))  # BN running statistics away from their initial values
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))  # biases and BN affine away from 0 and 1
    return m.eval()


def child_of(parent, child_dna: DNA, record: MutationRecord, morph: bool):
    torch.manual_seed(1)
    child = build_model(child_dna, SHAPE, 10)
    prov = (Provenance.morphism if morph else Provenance.from_mutation)("p", record)
    report = inherit(child, {"p": parent.state_dict()}, prov)
    return child.eval(), report


def edited(dna: DNA, edge: str, **values) -> DNA:
    d = dna.model_dump(mode="json")
    next(e for e in d["edges"] if e["id"] == edge).update(values)
    return DNA.model_validate(d)


def same_function(a, b) -> bool:
    x = torch.randn(16, *SHAPE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        eval_same = torch.allclose(a.eval()(x), b.eval()(x), atol=1e-5)
        train_same = torch.allclose(a.train()(x), b.train()(x), atol=1e-5)  # batch statistics too
    a.eval(), b.eval()
    return eval_same and train_same


@pytest.mark.parametrize("edge, channels", [("e4", 64.0), ("e2", 24.0)])
def test_a_widened_convolution_keeps_the_parents_function(edge, channels):
    parent = parent_model(rich())
    child_dna = edited(rich(), edge, out_channels=channels)
    record = MutationRecord(name="alter_channels", details={"edge": edge}, changed_edges=[edge])
    child, report = child_of(parent, child_dna, record, morph=True)
    if edge == "e2":
        # v3's new channels reach the output through the skip v3 -> v1 (zero-padded there
        # before): a skip is where a widening is only approximate.  The backbone is exact:
        # v5 reads v3 through e4, whose new fan-in is zero.
        x = torch.randn(4, *SHAPE)
        assert torch.allclose(child.edges["e4"](child.vertices["v3"](child.edges["e2"](x))),
                              parent.edges["e4"](parent.vertices["v3"](parent.edges["e2"](x))), atol=1e-5)
    else:
        assert same_function(child, parent)
    assert report.reinitialised == 0  # every tensor kept its overlap
    # the paper's section 3.6 re-initialises the widened conv and its consumers: another function
    paper, _ = child_of(parent, child_dna, record, morph=False)
    assert not same_function(paper, parent)


def test_a_grown_kernel_keeps_the_parents_function_and_a_shrunk_one_its_centre():
    parent = parent_model(rich())
    grown = edited(rich(), "e4", filter_h=5.0, filter_w=5.0)
    record = MutationRecord(name="filter_size", details={"edge": "e4"}, changed_edges=["e4"])
    child, _ = child_of(parent, grown, record, morph=True)
    assert child.edges["e4"].weight.shape[2:] == (5, 5)
    assert same_function(child, parent)
    shrunk = edited(rich(), "e4", filter_h=1.0, filter_w=1.0)
    child, _ = child_of(parent, shrunk, record, morph=True)
    assert torch.equal(child.edges["e4"].weight[:, :, 0, 0], parent.edges["e4"].weight[:, :, 1, 1])


def test_a_linear_stride_one_insertion_keeps_the_parents_function():
    """Every place insert-convolution can choose on rich(), each with more channels than its
    input: the new conv starts as the identity on the shared channels, its consumer's new
    fan-in at zero."""
    parent = parent_model(rich())
    places = set()
    for seed in range(200):
        child_dna, record = insert_convolution(rich(), random.Random(seed), (40,))
        if record.details["activation"] != "linear" or record.details["stride"] != 1:
            continue
        places.add(record.details["after"])
        child, report = child_of(parent, child_dna, record, morph=True)
        assert report.reinitialised_names == [f"edges.{record.details['edge']}.weight",
                                              f"edges.{record.details['edge']}.bias"]
        assert same_function(child, parent), record.details
    assert places == {"v0", "v3", "v5"}  # all three backbone edges were tried


def test_the_new_parts_can_learn():
    """New fan-in starts at zero but gets a gradient (the new channels it reads are not zero),
    and the identity conv's extra output channels keep a random start: nothing is dead."""
    parent = parent_model(rich())
    child_dna = edited(rich(), "e4", out_channels=64.0)
    record = MutationRecord(name="alter_channels", details={"edge": "e4"}, changed_edges=["e4"])
    child, _ = child_of(parent, child_dna, record, morph=True)
    assert torch.count_nonzero(child.classifier.weight[:, 32:]) == 0
    child.train()
    loss = torch.nn.functional.cross_entropy(child(torch.randn(8, *SHAPE)), torch.randint(0, 10, (8,)))
    loss.backward()
    assert torch.count_nonzero(child.classifier.weight.grad[:, 32:]) > 0
    assert torch.count_nonzero(child.edges["e4"].weight[32:]) > 0  # new filters: He initialised

    for seed in range(50):
        child_dna, record = insert_convolution(rich(), random.Random(seed), (40,))
        if record.details["after"] == "v3":
            break
    child, _ = child_of(parent, child_dna, record, morph=True)
    w = child.edges[record.details["edge"]].weight
    assert torch.equal(w[:16, :, 1, 1], torch.eye(16))
    assert torch.count_nonzero(w[16:]) > 0


def test_morph_still_honours_a_reset_and_names_inserted_convolutions_in_a_chain():
    assert Provenance.morphism("p", MutationRecord(name="reset_weights", reset_all=True)).reset_all
    assert Provenance.morphism("p", None) == Provenance(default="p", morph=True)
    rng = random.Random(3)
    dna, record = mutate_many(rich(), rng, {"insert_convolution": 1.0}, n=3, insert_channels=(8,))
    ids = inserted_convolutions(record)
    assert len(ids) == 3 and all(any(e.id == i for e in dna.edges) for i in ids)
    assert Provenance.morphism("p", record).identity == tuple(f"edges.{i}.weight" for i in ids)
    assert inserted_convolutions(MutationRecord(name="identity")) == []


@pytest.mark.parametrize("morph", [True, False])
def test_a_real_worker_inherits_as_the_experiment_says(tmp_path, morph):
    """The switch reaches the workers through experiment.json: with morph, a child whose
    convolution changed width re-initialises nothing, one with an inserted convolution only
    the new layer's tensors; with
    the paper's inheritance, it re-initialises the changed tensors."""
    from lse.config import ExperimentConfig, WorkerOptions
    from lse.nn.synthetic import write_synthetic
    from lse.runners.worker import TorchTrainer, run_worker
    from lse.store import Store

    data = write_synthetic(tmp_path / "data", "idx", n_train=200, n_test=40, image_shape=(12, 12), seed=3)
    pop = tmp_path / "pop"
    Store(pop).create(ExperimentConfig(
        data_dir=str(data), validation_size=40, population_size=3, steps=2, eval_batch_size=40, max_individuals=10,
        morph=morph, insert_channels=[4], mutation_probabilities={"insert_convolution": 1, "alter_channels": 2}))
    opts = WorkerOptions(threads=1, device="cpu")
    run_worker(pop, opts, TorchTrainer(opts), worker_id="w", handle_signals=False, log_to_file=False)
    children = [r for r in Store(pop).open().records() if r.parents]
    widened = [r for r in children if r.mutation_name == "alter_channels" and r.mutation["changed_edges"]]
    assert widened, [r.mutation_name for r in children]
    if morph:
        assert all(r.inheritance.reinitialised == 0 for r in widened)
        inserted = [r for r in children if r.mutation_name == "insert_convolution"]
        # the new conv's weight and bias, and the new vertex's batch norm (5) where it has one
        assert all(r.inheritance.reinitialised in (2, 7) for r in inserted)
    else:
        assert all(r.inheritance.reinitialised >= 2 for r in widened)
