"""Weight inheritance (section 3.6): a table of how many parent tensors each mutation lets
the child keep, plus: exact copies, BN statistics copied, changed edges and reset honoured."""

from __future__ import annotations

import random

import pytest
import torch

from lse.nn.build import build_model
from lse.core.dna import DNA, initial_dna
from lse.nn.inherit import inherit_weights
from lse.core.mutations import MUTATION_NAMES, MUTATIONS, MutationRecord, mutate

from _dna_helpers import rich

SHAPE = (3, 16, 16)


def trained_parent(dna: DNA):
    torch.manual_seed(0)
    m = build_model(dna, SHAPE, 10)
    m.train()
    m(torch.randn(4, *SHAPE))  # moves BN running statistics away from their initial values
    return m


def alter_channels_kept(r: MutationRecord) -> int:
    if not r.changed_edges:  # rounded width unchanged: everything kept
        return 11
    # e2 wider/narrower: e2.* (2), v3.bn tensors with a channel dim (4), e4.weight (in-channels)
    # e4 wider/narrower: e4.* (2), classifier.weight (in-features)
    return {"e2": 4, "e4": 8}[r.details["edge"]]


def remove_convolution_kept(r: MutationRecord) -> int:
    # e2 removed: v3 (and its BN) merged into the input, e4 reads 3 channels: e4.bias + classifier.* kept
    # e4 removed: v5 merged into v3, the output has 16 channels: e2.*, v3.bn.*, classifier.bias kept
    return {"e2": 3, "e4": 8}[r.details["edge"]]


# name -> parent tensors the child inherits (of 11)
EXPECTED_KEPT = {
    "alter_learning_rate": lambda r: 11,
    "identity": lambda r: 11,
    "reset_weights": lambda r: 0,
    "insert_convolution": lambda r: 11,  # the new conv keeps its input's width: nothing else changes shape
    "remove_convolution": remove_convolution_kept,
    "alter_stride": lambda r: 11,  # conv weights do not depend on the stride
    "alter_channels": alter_channels_kept,
    # only the mutated conv's weight and bias, and only when its built size changed
    "filter_size": lambda r: 9 if r.details["size_from"] != r.details["size_to"] else 11,
    "insert_one_to_one": lambda r: 11,
    "add_skip": lambda r: 11,
    "remove_skip": lambda r: 11,
}


@pytest.mark.parametrize("name", MUTATION_NAMES)
@pytest.mark.parametrize("seed", range(4))
def test_inheritance_table(name, seed):
    parent_dna = rich()
    parent = trained_parent(parent_dna)
    pstate = {k: v.clone() for k, v in parent.state_dict().items()}
    assert len(pstate) == 11
    child_dna, record = MUTATIONS[name](parent_dna, random.Random(seed))
    child = build_model(child_dna, SHAPE, 10)
    report = inherit_weights(child, pstate, record)
    cstate = child.state_dict()
    assert report.kept + report.reinitialised == len(cstate)
    assert report.kept == EXPECTED_KEPT[name](record), (record, report.reinitialised_names)
    for n in report.kept_names:  # kept tensors are exact copies
        assert torch.equal(cstate[n], pstate[n])
    for e in record.changed_edges:
        assert not any(n.startswith(f"edges.{e}.") for n in report.kept_names)
    assert report.summary() == {"kept": report.kept, "reinitialised": report.reinitialised,
                                "by_parent": {"parent": report.kept} if report.kept else {}}


def test_identity_child_computes_exactly_what_the_parent_computes():
    parent = trained_parent(rich()).eval()
    child_dna, record = mutate(rich(), random.Random(0), {"identity": 1.0})
    child = build_model(child_dna, SHAPE, 10)
    report = inherit_weights(child, parent.state_dict(), record)
    assert report.reinitialised == 0
    x = torch.randn(3, *SHAPE)
    assert torch.equal(child.eval()(x), parent(x))


def test_bn_running_statistics_and_counter_are_inherited():
    parent = trained_parent(rich())
    child = build_model(rich(), SHAPE, 10)
    inherit_weights(child, parent.state_dict(), None)
    for n in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.equal(getattr(child.vertices["v3"].bn, n), getattr(parent.vertices["v3"].bn, n))
    assert child.vertices["v3"].bn.num_batches_tracked.item() == 1


def test_reset_weights_keeps_nothing_and_no_record_blocks_nothing():
    parent = trained_parent(rich())
    child = build_model(rich(), SHAPE, 10)
    r = inherit_weights(child, parent.state_dict(), MutationRecord(name="reset_weights", reset_all=True))
    assert (r.kept, r.reinitialised) == (0, 11)
    assert not torch.equal(child.edges["e2"].weight, parent.edges["e2"].weight)
    r = inherit_weights(child, parent.state_dict(), None)
    assert (r.kept, r.reinitialised) == (11, 0)


def test_changed_edges_are_not_copied_even_when_shapes_match():
    parent = trained_parent(rich())
    child = build_model(rich(), SHAPE, 10)
    r = inherit_weights(child, parent.state_dict(), MutationRecord(name="x", changed_edges=["e4"]))
    assert sorted(r.reinitialised_names) == ["edges.e4.bias", "edges.e4.weight"]


def test_inherits_along_a_chain_of_mutations():
    rng, dna = random.Random(7), initial_dna()
    torch.manual_seed(0)
    model = build_model(dna, SHAPE, 10)
    for _ in range(30):
        child_dna, record = mutate(dna, rng)
        child = build_model(child_dna, SHAPE, 10)
        r = inherit_weights(child, model.state_dict(), record)
        if record.name in ("identity", "alter_learning_rate"):
            assert r.reinitialised == 0
        assert child(torch.randn(2, *SHAPE)).shape == (2, 10)
        dna, model = child_dna, child
