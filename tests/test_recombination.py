"""Section 5's three recombinations: evolved mutation probabilities (with structure from one
parent and distribution from another), weight recombination, structure fusion.

Each child is a valid DNA that builds, trains and counts its FLOPs; weights come from both
parents and are counted (record.inheritance.by_parent); distributions stay distributions.
"""

from __future__ import annotations

import json
import random

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from _dna_helpers import rich
from lse.algorithms import make_algorithm
from lse.config import ExperimentConfig, WorkerOptions
from lse.core.crossover import recombine
from lse.core.distribution import check_distribution, evolve, normalise
from lse.core.dna import DNA, initial_dna
from lse.core.fusion import fuse, leaky_skips
from lse.core.mutations import MUTATION_NAMES, mutate, mutate_many
from lse.core.records import IndividualRecord, new_id
from lse.errors import DNAError
from lse.nn.build import build_model
from lse.nn.flops import count_flops
from lse.nn.inherit import inherit

SHAPE, CLASSES = (3, 12, 12), 10


def _grown(seed: int, steps: int = 12) -> DNA:
    """A DNA grown from the trivial model by a seeded chain of mutations favouring growth."""
    rng = random.Random(seed)
    dna = initial_dna()
    probs = {"insert_convolution": 4, "alter_channels": 1, "filter_size": 1, "add_skip": 1, "alter_stride": 0.3,
             "insert_one_to_one": 1, "remove_skip": 0.5, "remove_convolution": 0.5}
    for _ in range(steps):
        dna, _ = mutate(dna, rng, probs)
    return dna


def _trained_state(dna: DNA, seed: int) -> dict:
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in build_model(dna, SHAPE, CLASSES).state_dict().items()}


# ------------------------------------------------------------------ evolved distributions
def test_dna_without_a_distribution_is_byte_identical():
    d = rich().model_dump(mode="json")
    assert "mutation_probabilities" not in d and "mutation_probabilities" not in rich().to_json()
    assert json.dumps(DNA.model_validate(d).model_dump(mode="json"), sort_keys=True) == json.dumps(d, sort_keys=True)
    with_p = rich().model_copy(update={"mutation_probabilities": normalise(None)})
    again = DNA.model_validate(with_p.model_dump(mode="json"))
    assert again.mutation_probabilities == pytest.approx(normalise(None))


@pytest.mark.parametrize("bad, says", [
    ({"identity": 1.0}, "must name exactly"),
    ({**normalise(None), "identity": 0.0}, "finite and > 0"),
    ({n: 0.5 for n in MUTATION_NAMES}, "sum to 1"),
])
def test_invalid_distribution_is_refused_naming_the_field(bad, says):
    with pytest.raises(DNAError, match=f"mutation_probabilities.*{says}"):
        DNA.model_validate({**rich().model_dump(mode="json"), "mutation_probabilities": bad})


@settings(max_examples=60, deadline=None)
@given(weights=st.lists(st.floats(0.0, 100.0), min_size=11, max_size=11).filter(lambda w: sum(w) > 1e-6),
       seed=st.integers(0, 2**31), steps=st.integers(1, 40), sigma=st.floats(0.01, 5.0))
def test_evolved_probabilities_stay_a_valid_distribution(weights, seed, steps, sigma):
    p = normalise(dict(zip(MUTATION_NAMES, weights)))
    assert check_distribution(p) is None
    rng = random.Random(seed)
    for _ in range(steps):
        p = evolve(p, rng, sigma)
        assert check_distribution(p) is None
    # and a DNA carrying it survives mutations with it
    dna, _ = mutate_many(rich().model_copy(update={"mutation_probabilities": p}), rng, p, 3)
    assert dna.mutation_probabilities == p


def _record(dna: DNA, fitness: float = 0.5) -> IndividualRecord:
    return IndividualRecord(id=new_id(), dna=dna.model_dump(mode="json"), val_accuracy=fitness, fitness=fitness,
                            objectives={"val_accuracy": fitness})


def _algo(kind: str, **opts) -> object:
    return make_algorithm(ExperimentConfig(algorithm={"name": "recombination", "options": {"recombination": kind, **opts}}))


def test_child_takes_structure_from_one_parent_and_distribution_from_the_other():
    algo = _algo("probabilities", probability_sigma=0.01)
    pa = normalise({"identity": 1.0})   # A: almost only identity
    pb = normalise({"alter_learning_rate": 1.0})  # B: almost only the learning rate
    a = _record(rich().model_copy(update={"mutation_probabilities": pa}))
    b = _record(_grown(3).model_copy(update={"mutation_probabilities": pb}))
    for seed in range(10):
        child = algo.vary([a, b], random.Random(seed))
        assert child.parents == (a.id, b.id) and child.details["probabilities_from"] == b.id
        p = child.dna.mutation_probabilities
        assert check_distribution(p) is None and p["alter_learning_rate"] > 0.9
        # structure: A's (a learning-rate or identity mutation leaves the graph as it was)
        assert [e.id for e in child.dna.edges] == [e.id for e in rich().edges]
        assert child.provenance.default == a.id  # the weights follow the structure


def test_evolving_probabilities_alone_starts_from_the_experiment_distribution():
    algo = make_algorithm(ExperimentConfig(mutation_probabilities={"identity": 1, "add_skip": 3},
                                           algorithm={"name": "recombination", "options": {"evolve_probabilities": True}}))
    child = algo.initial(random.Random(0), 1)
    p = child.dna.mutation_probabilities
    assert check_distribution(p) is None and p["add_skip"] == pytest.approx(3 * p["identity"])


# ------------------------------------------------------------------ weight recombination
def test_weight_recombination_builds_and_takes_weights_from_both_parents():
    a_dna, a_id, b_id = rich(), "A", "B"
    b_dna = rich().model_copy(update={"learning_rate": 0.01})  # the same structure, other weights
    sa, sb = _trained_state(a_dna, 1), _trained_state(b_dna, 2)
    seen: set = set()
    for seed in range(8):
        child, prov = recombine(a_dna, a_id, b_dna, b_id, random.Random(seed))
        model = build_model(child, SHAPE, CLASSES)
        report = inherit(model, {a_id: sa, b_id: sb}, prov)
        assert report.kept == len(model.state_dict()) and report.reinitialised == 0
        assert sum(report.by_parent.values()) == report.kept
        for name, t in model.state_dict().items():  # each tensor is exactly one parent's
            assert torch.equal(t, sa[name]) or torch.equal(t, sb[name])
        seen |= set(report.by_parent)
        count_flops(child, SHAPE, CLASSES, 50)
    assert seen == {a_id, b_id}


# ------------------------------------------------------------------ structure fusion
def test_fusion_puts_both_backbones_side_by_side_with_both_parents_weights():
    a = rich()                       # 16 then 32 channels, 3x3
    b = DNA.model_validate({
        "vertices": [{"id": "v0"}, {"id": "v3", "activation": "bn_relu"}, {"id": "v1"}],
        "edges": [{"id": "e2", "src": "v0", "dst": "v3", "kind": "conv", "filter_h": 5.0, "filter_w": 1.0,
                   "stride_log2": 0.0, "out_channels": 8.0},
                  {"id": "e4", "src": "v3", "dst": "v1", "kind": "identity"}],
        "learning_rate": 0.05, "input_id": "v0", "output_id": "v1", "next_id": 5,
    })
    child, prov = fuse(b, "B", a, "A")  # the deeper parent (A) gives the topology
    assert prov.default == "A"
    c0, c1 = child.conv_edges()
    assert (c0.channels(), c0.kernel(), c1.channels()) == (24, (5, 3), 32)
    sa, sb = _trained_state(a, 1), _trained_state(b, 2)
    model = build_model(child, SHAPE, CLASSES)
    report = inherit(model, {"A": sa, "B": sb}, prov)
    assert set(report.by_parent) == {"A", "B"} and report.by_parent["B"] >= 6
    w = model.state_dict()["edges.e2.weight"]  # (24, 3, 5, 3)
    assert torch.equal(w[:16, :, 1:4, :], sa["edges.e2.weight"])  # A's 3x3 filters, centred
    assert torch.equal(w[16:, :, :, 1:2], sb["edges.e2.weight"])  # B's 5x1 filters, centred
    bn = model.state_dict()["vertices.v3.bn.running_var"]
    assert torch.equal(bn[:16], sa["vertices.v3.bn.running_var"]) and torch.equal(bn[16:], sb["vertices.v3.bn.running_var"])
    # A's second convolution reads A's 16 channels, as in A
    assert torch.equal(model.state_dict()["edges.e4.weight"][:, :16], sa["edges.e4.weight"])
    fc = count_flops(child, SHAPE, CLASSES, 50)
    assert fc.train_per_batch > count_flops(a, SHAPE, CLASSES, 50).train_per_batch
    model(torch.zeros(2, *SHAPE)).sum().backward()  # trains


def test_fusion_of_equal_depths_widens_the_classifier_with_both_parents_columns():
    a, b = _grown(1), _grown(2)
    while len(b.conv_edges()) != len(a.conv_edges()):
        b, _ = mutate(b, random.Random(len(b.conv_edges())),
                      {"insert_convolution": 1} if len(b.conv_edges()) < len(a.conv_edges()) else {"remove_convolution": 1})
    child, prov = fuse(a, "A", b, "B")
    sa, sb = _trained_state(a, 1), _trained_state(b, 2)
    model = build_model(child, SHAPE, CLASSES)
    report = inherit(model, {"A": sa, "B": sb}, prov)
    if a.conv_edges():
        ca = sa["classifier.weight"].shape[1]
        cls = model.state_dict()["classifier.weight"]
        assert cls.shape[1] == ca + sb["classifier.weight"].shape[1]
        # A's columns; B's features enter with zero weight (the child computes A's logits)
        assert torch.equal(cls[:, :ca], sa["classifier.weight"]) and not cls[:, ca:].any()
        assert set(report.by_parent) == {"A", "B"}


@settings(max_examples=15, deadline=None)
@given(sa=st.integers(0, 10**6), sb=st.integers(0, 10**6), n=st.integers(0, 14), m=st.integers(0, 14))
def test_any_two_grown_dnas_fuse_into_a_valid_dna_that_builds(sa, sb, n, m):
    a, b = _grown(sa, n), _grown(sb, m)
    child, prov = fuse(a, "A", b, "B")
    assert DNA.model_validate(child.model_dump(mode="json")) == child
    deeper = a if len(a.conv_edges()) >= len(b.conv_edges()) else b
    assert len(child.conv_edges()) == len(deeper.conv_edges())
    assert child.total_channels() == a.total_channels() + b.total_channels()
    model = build_model(child, SHAPE, CLASSES)
    report = inherit(model, {"A": _trained_state(a, 1), "B": _trained_state(b, 2)}, prov)
    assert report.kept + report.reinitialised == len(model.state_dict())
    if a.conv_edges() and b.conv_edges():
        assert set(report.by_parent) == {"A", "B"}
    assert model(torch.zeros(2, *SHAPE)).shape == (2, CLASSES)
    count_flops(child, SHAPE, CLASSES, 50)


def _random_state(dna: DNA, seed: int) -> dict:
    """Weights and batch-norm statistics far from their initial values (so a copy that misses
    a block, or a block that is not zero, shows in the outputs)."""
    torch.manual_seed(seed)
    state = build_model(dna, SHAPE, CLASSES).state_dict()
    out = {}
    for k, v in state.items():
        if not v.is_floating_point():
            out[k] = v.clone()
        elif k.endswith("running_var"):
            out[k] = torch.rand_like(v) + 0.5
        else:
            out[k] = torch.randn_like(v) * 0.5
    return out


@settings(max_examples=25, deadline=None)
@given(sa=st.integers(0, 10**6), sb=st.integers(0, 10**6), n=st.integers(0, 14), m=st.integers(0, 14))
def test_a_fused_child_computes_what_its_first_parent_computes(sa, sb, n, m):
    a, b = _grown(sa, n), _grown(sb, m)
    child, prov = fuse(a, "A", b, "B")
    first = a if len(a.conv_edges()) >= len(b.conv_edges()) else b  # the deeper parent gives the topology
    assume(not leaky_skips(first, child))  # the one structural exception (lse.core.fusion)
    states = {"A": _random_state(a, 1), "B": _random_state(b, 2)}
    parent = build_model(first, SHAPE, CLASSES)
    parent.load_state_dict(states["A" if first is a else "B"])
    model = build_model(child, SHAPE, CLASSES)
    inherit(model, states, prov)
    parent.eval(), model.eval()
    x = torch.randn(4, *SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(model(x), parent(x), rtol=1e-4, atol=1e-4)


def test_a_leaky_skip_is_named_and_is_where_the_fused_child_departs_from_its_first_parent():
    a, b = _grown(1067, 5), _grown(0, 1)  # a's skip joins a 3-channel vertex to a 4-channel one
    child, prov = fuse(a, "A", b, "B")
    assert leaky_skips(a, child) == ["e7"]
    states = {"A": _random_state(a, 1), "B": _random_state(b, 2)}
    parent, model = build_model(a, SHAPE, CLASSES), build_model(child, SHAPE, CLASSES)
    parent.load_state_dict(states["A"])
    inherit(model, states, prov)
    parent.eval(), model.eval()
    x = torch.randn(4, *SHAPE)
    with torch.no_grad():
        assert not torch.allclose(model(x), parent(x), atol=1e-4)
        # silence B's channels at the skip's source and the child is A again
        for name, t in model.state_dict().items():
            if name in ("vertices.v3.bn.weight", "vertices.v3.bn.bias"):
                t[3:] = 0
        torch.testing.assert_close(model(x), parent(x), rtol=1e-4, atol=1e-4)


def test_a_child_says_whether_it_really_recombined():
    algo = _algo("fusion")
    trivial = _record(initial_dna())
    grown_a, grown_b = _record(_grown(5)), _record(_grown(6))
    assert grown_a.dna != grown_b.dna and DNA.model_validate(grown_b.dna).conv_edges()
    both = algo.vary([grown_a, grown_b], random.Random(0))
    assert both.details["recombined"] is True
    # two trivial parents have nothing to fuse: the child is the first one's
    assert algo.vary([trivial, _record(initial_dna())], random.Random(0)).details["recombined"] is False
    assert _algo("weights").vary([trivial], random.Random(0)).details["recombined"] is False


def test_a_mutation_after_fusion_keeps_the_zeroed_blocks_of_the_edges_it_did_not_change():
    a, b = _grown(3), _grown(4)
    child, prov = fuse(a, "A", b, "B")
    assert prov.zero_rest
    changed = child.conv_edges()[0].id
    record = type("Record", (), {"changed_edges": (changed,), "reset_all": False})()
    after = prov.then(record)
    assert not any(n.startswith(f"edges.{changed}.") for n in after.zero_rest)
    assert set(after.zero_rest) == {n for n in prov.zero_rest if not n.startswith(f"edges.{changed}.")}


# ------------------------------------------------------------------ on the seam, in a real worker
@pytest.mark.parametrize("kind", ["probabilities", "weights", "fusion"])
def test_each_recombination_runs_in_a_worker_and_records_both_parents(tmp_path, kind):
    from lse.nn.synthetic import write_synthetic
    from lse.runners.worker import run_worker
    from lse.store import Store

    data = write_synthetic(tmp_path / "data", "cifar10", n_train=300, n_test=50, seed=4)
    pop = tmp_path / "pop"
    Store(pop).create(ExperimentConfig(
        dataset="cifar10", data_dir=str(data), validation_size=100, population_size=4, steps=2, eval_batch_size=100,
        max_individuals=14, seed=5, mutation_probabilities={"insert_convolution": 1, "alter_channels": 1, "identity": 2},
        # initial individuals with convolutions (--initial-dna): unrelated parents share modules
        initial_dna=rich().model_dump(mode="json"),
        algorithm={"name": "recombination", "options": {"recombination": kind}}))
    s = run_worker(pop, WorkerOptions(threads=1, device="cpu"), worker_id="w", handle_signals=False, log_to_file=False)
    assert s.births == 14 and s.variation_failures == 0
    recs = Store(pop).open().records()
    two = [r for r in recs if len(r.parents) == 2]
    assert two and all(r.extra["recombination"] == kind for r in two)
    assert all(r.fitness is not None for r in recs)
    if kind == "probabilities":
        assert all(check_distribution(r.dna["mutation_probabilities"]) is None for r in recs)
        # the report draws how the distributions moved: each period's mean is a distribution
        from lse.reports import curves as cv
        from lse.reports import figures

        xs, trend = cv.distribution_trend(recs, min(r.born_at for r in recs), bins=4)
        assert xs and set(trend) == set(MUTATION_NAMES)
        assert all(abs(sum(trend[n][k] for n in trend) - 1) < 1e-6 for k in range(len(xs)))
        assert figures.distributions_figure(xs, trend, tmp_path / "d.png").stat().st_size > 0
    else:
        assert all("mutation_probabilities" not in r.dna for r in recs)
        both = [r for r in two if len(r.inheritance.by_parent) == 2]
        assert both, "no child inherited weights from both parents"
        for r in both:
            assert sum(r.inheritance.by_parent.values()) >= r.inheritance.kept
