"""Seed 002 (PyCortex), the pure core: genome, size-aware mutation weights on hand-computed
networks, similarity (eq. 7-8), crossover and its weight provenance, logistic calibration
(sigma = 0 included), culling immunity and the species cap."""

from __future__ import annotations

import math
import random

import pytest

from lse.core import cortex, ecosystem
from lse.core.cortex import ConvLayer, CortexGenome


def g(conv=(), fc=(), classes=10, input=(1, 28, 28)):
    return CortexGenome(conv=tuple(ConvLayer(kernels=k, stride=s) for k, s in conv), fc=tuple(fc), input=input,
                        classes=classes)


def test_genome_rejects_even_kernels_and_kernels_over_half_the_input():
    with pytest.raises(ValueError, match="odd"):
        g(conv=[(((2, 3),), (1, 1))])
    with pytest.raises(ValueError, match="half"):
        g(conv=[(((15, 1),), (1, 1))])  # 15 > 28 / 2
    assert g(conv=[(((13, 1),), (1, 1))])  # 13 <= 14


def test_padding_keeps_the_size_and_strides_divide_it():
    net = g(conv=[(((1, 1), (5, 3)), (1, 1)), (((3, 3),), (2, 1))])
    assert net.conv[0].padding() == (2, 1)
    assert cortex.conv_shapes(net, (1, 28, 28)) == [(1, 28, 28), (2, 28, 28), (1, 14, 28)]


def test_mutation_weights_on_a_hand_computed_network():
    # conv: kernels 1x1 and 3x3 on 1 channel, stride 1 -> 2 maps of 6x6; fc 3 nodes; out 2 nodes
    net = g(conv=[(((1, 1), (3, 3)), (1, 1))], fc=[3], classes=2, input=(1, 6, 6))
    # fan-ins: kernels 1 and 9; fc nodes 2*6*6 = 72 each (3 of them); output nodes 3 each (2)
    mu_c = (1 + 9 + 72 * 3 + 3 * 2) / 7
    sizes = [2, 3, 2]
    mu_n = sum(sizes) / 3
    sigma_n = math.sqrt(sum((s - mu_n) ** 2 for s in sizes) / 3)
    w = cortex.mutation_weights(net, (1, 6, 6))
    assert w["layer"] == pytest.approx(1 / (mu_c * (mu_n + sigma_n)))
    assert w["node"] == pytest.approx(1 / mu_c)
    assert w["stride"] == pytest.approx(1 / (1 * 36))  # N_cl = 1, mu_o = 6*6 output positions
    assert w["kernel"] == pytest.approx(1 / (mu_n * 5.0))  # mean kernel area (1 + 9) / 2
    minimal = cortex.mutation_weights(cortex.minimal((1, 6, 6), 2), (1, 6, 6))
    assert minimal["stride"] == minimal["kernel"] == minimal["node"] == 0.0 and minimal["layer"] > 0


def test_similarity_formula():
    a = g(conv=[(((1, 1),) * 4, (1, 1))], fc=[8])  # nodes 4 + 8 + 10 = 22
    b = g(conv=[(((1, 1),) * 2, (1, 1)), (((1, 1),) * 3, (1, 1))], fc=[])  # 2 + 3 + 10 = 15
    overlap = min(4, 2) + 10  # conv layer 0, and the output layers; fc and conv 1 have no partner
    assert cortex.similarity(a, b) == pytest.approx(overlap / (22 + 15 - overlap))
    assert cortex.similarity(a, a) == 1.0
    assert cortex.species_key(a) == "c4.f8" and cortex.species_key(cortex.minimal()) == "c.f"


def test_kernel_mutation_changes_one_dimension_by_two_and_stays_odd():
    rng = random.Random(1)
    d = cortex.draft_of(g(conv=[(((3, 3),) * 4, (1, 1))]))
    for _ in range(50):
        d2, m = cortex.mutate(d, rng, weights={"kernel": 1.0})
        if m.failed:
            continue
        (h0, w0), (h1, w1) = m.details["from"], m.details["to"]
        assert sorted([abs(h1 - h0), abs(w1 - w0)]) == [0, 2] and h1 % 2 == 1 and w1 % 2 == 1
        assert max(h1, w1) <= 14
        d = d2


def test_structural_mutation_refused_at_the_species_cap():
    rng = random.Random(0)
    d = cortex.draft_of(g(fc=[4]))
    for _ in range(20):
        d2, m = cortex.mutate(d, rng, weights={"node": 1.0, "layer": 1.0}, allowed=lambda key: False)
        assert m.failed and "species cap" in m.failed
        assert cortex.species_key(d2.genome()) == "c.f4"
    assert not ecosystem.species_allowed("c.f99", {f"c.f{i}" for i in range(16)}, 16)
    assert ecosystem.species_allowed("c.f1", {f"c.f{i}" for i in range(16)}, 16)  # an existing species
    assert ecosystem.species_allowed("c.f99", {f"c.f{i}" for i in range(15)}, 16)


def test_crossover_within_a_species_takes_each_node_by_relative_fitness():
    a = g(conv=[(((1, 1),) * 40, (1, 1))], fc=[40])
    b = g(conv=[(((3, 3),) * 40, (1, 1))], fc=[40])
    draft = cortex.crossover(a, 0.9, b, 0.1, random.Random(3))
    nodes = [o for lay in draft.layers for o in lay.origins]
    share_a = sum(o.parent == 0 for o in nodes) / len(nodes)
    assert 0.8 < share_a < 0.97  # expected 0.9 of 90 nodes
    assert cortex.species_key(draft.genome()) == cortex.species_key(a)
    conv = draft.layers[0]
    for o, k in zip(conv.origins, conv.kernels):
        assert k == ((1, 1) if o.parent == 0 else (3, 3))  # a node keeps its own kernel shape


def test_crossover_without_speciation_inherits_extras_with_the_larger_parents_fitness():
    small = g(fc=[2])
    large = g(fc=[6, 5])
    rng = random.Random(0)
    extra_layers = extra_nodes = 0
    n = 400
    for _ in range(n):
        d = cortex.crossover(small, 0.5, large, 0.25, rng)
        fcs = [lay for lay in d.layers if lay.kind == "fc"]
        extra_layers += len(fcs) - 1
        extra_nodes += len(fcs[0].origins) - 2
    assert extra_layers / n == pytest.approx(0.25, abs=0.07)
    assert extra_nodes / (4 * n) == pytest.approx(0.25, abs=0.05)


def test_provenance_moves_each_node_with_its_fan_in():
    a = g(conv=[(((1, 1), (3, 3)), (1, 1))], fc=[3], classes=2, input=(1, 6, 6))
    b = g(conv=[(((3, 1), (1, 1)), (1, 1))], fc=[3], classes=2, input=(1, 6, 6))
    draft = cortex.draft_of(a)
    # node 1 of the conv layer from b, fc node 2 from b
    draft.layers[0].origins[1] = cortex.Origin(1, "conv", 0, 1)
    draft.layers[0].kernels[1] = (1, 1)
    draft.layers[1].origins[2] = cortex.Origin(1, "fc", 0, 2)
    prov = cortex.provenance(draft, ["A", "B"], [a, b])
    k1 = prov.sources["conv.0.kernels.1"]
    assert (k1.parent, k1.name, k1.centred, k1.cols) == ("B", "conv.0.kernels.1", True, (0,))
    pieces = {p.parent: p for p in prov.sources["fc.0.weight"]}
    assert pieces["A"].rows == (0, 1) and pieces["A"].into == (0, 1)
    assert pieces["B"].rows == (2,) and pieces["B"].into == (2,)
    assert pieces["A"].cols == tuple(range(72))  # 2 channels x 6x6, matched channel by channel
    # a removed conv node: the fc fan-in drops that channel's 36 columns, the rest shift up
    d2 = cortex.draft_of(a)
    d2.layers[0].origins.pop(0)
    d2.layers[0].kernels.pop(0)
    p2 = cortex.provenance(d2, ["A"], [a])
    assert p2.sources["fc.0.weight"][0].cols == tuple(range(36, 72))


def test_logistic_calibration_and_sigma_zero():
    assert ecosystem.relative([0.7]) == [0.5]
    assert ecosystem.relative([0.3, 0.3, 0.3]) == [0.5, 0.5, 0.5]
    fr = ecosystem.relative([0.2, 0.4, 0.6])
    sigma = math.sqrt(((0.2) ** 2 + 0 + 0.2 ** 2) / 3)
    assert fr[0] == pytest.approx(1 / (1 + math.exp(0.2 / sigma)))
    assert fr[1] == pytest.approx(0.5) and fr[0] + fr[2] == pytest.approx(1.0)
    nets = [ecosystem.Network("a", "s1", 0.9, 100, 2), ecosystem.Network("b", "s1", 0.5, 1000, 2),
            ecosystem.Network("c", "s2", 0.1, 10, 2)]
    cal = ecosystem.calibrate(nets, speciation=True)
    assert cal["c"] == (0.5, 0.5)  # alone in its species
    assert cal["a"][0] > 0.5 > cal["b"][0] and cal["a"][1] > cal["b"][1]  # simpler scores higher
    assert ecosystem.calibrate(nets, speciation=False)["c"][0] < 0.5  # against the ecosystem


def test_culling_spares_offspring_and_champions_and_weighs_age_over_fitness():
    nets = [ecosystem.Network("champ", "s", 0.9, 10, 9), ecosystem.Network("kid", "s", 0.1, 10, 1, offspring=True),
            ecosystem.Network("old", "s", 0.5, 10, 20), ecosystem.Network("young", "s", 0.5, 10, 1),
            ecosystem.Network("solo", "t", 0.2, 10, 50)]  # champion of its own species
    w = ecosystem.cull_weights(nets, speciation=True)
    assert set(w) == {"old", "young"} and w["old"] == pytest.approx(20 * w["young"])
    rng = random.Random(0)
    for _ in range(50):
        victims = ecosystem.cull(nets, limit=3, rng=rng, speciation=True)
        assert len(victims) == 2 and set(victims) == {"old", "young"}
    assert ecosystem.cull(nets, limit=5, rng=rng, speciation=True) == []
    assert ecosystem.cull(nets, limit=5, rng=rng, speciation=True, incoming=1) != []
    # without speciation only the ecosystem champion is immune: "solo" may go
    assert "solo" in ecosystem.cull_weights(nets, speciation=False)
    # nobody left to cull: the limit is exceeded rather than an immune network killed
    assert ecosystem.cull(nets[:2], limit=1, rng=rng, speciation=True) == []
