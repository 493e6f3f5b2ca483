"""Seed 000's pure core: the autoencoder genome, its 9 mutations and validity rule, TOPSIS on the
paper's Table 2, and the Pareto tournament against hand-computed fronts."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lse.algorithms.base import Member, PopulationView
from lse.algorithms.twostep import pareto_tournament
from lse.core.autoencoder import (
    AE_MUTATION_NAMES, AELayer, AutoencoderGenome, code_shape, compression, initial_autoencoder, invalid_reason,
    mutate, render,
)
from lse.core.genomes import parse_genome
from lse.core.pareto import crowding, fronts, rank_and_crowding
from lse.core.records import IndividualRecord
from lse.core.topsis import pick, topsis

# ------------------------------------------------------------------------- genome and validity


def test_initial_compresses_by_half():
    for shape, z in [((1, 28, 28), (2, 14, 14)), ((3, 32, 32), (6, 16, 16)), ((1, 12, 12), (2, 6, 6))]:
        g = initial_autoencoder(shape)
        assert code_shape(g) == z
        assert compression(g) == pytest.approx(0.5)


def _conv(i, f=4, k=(3, 3), s=1):
    return AELayer(id=f"L{i}", kind="conv", filters=f, kernel=k, stride=s)


@pytest.mark.parametrize("layers, valid", [
    ((_conv(0, f=1, s=2),), True),  # 1x14x14 < 1x28x28
    ((_conv(0, f=1),), False),  # same size: no compression
    ((_conv(0, f=8), AELayer(id="L1", kind="pool", size=2)), False),  # 8x14x14 > 784
    ((_conv(0, f=2), AELayer(id="L1", kind="pool", size=2)), True),  # 2x14x14 = 392
    ((AELayer(id="L0", kind="pool", size=2),), False),  # no convolution
    ((_conv(0, f=1, s=3),) + tuple(AELayer(id=f"L{i}", kind="pool", size=4) for i in range(1, 4)), False),  # 0 px
])
def test_validity_rule(layers, valid):
    data = {"input_shape": [1, 28, 28], "layers": [la.model_dump() for la in layers], "next_id": 9}
    if valid:
        assert invalid_reason(AutoencoderGenome.model_validate(data)) is None
    else:
        with pytest.raises(ValueError):
            AutoencoderGenome.model_validate(data)


def test_genome_round_trips_through_its_kind():
    g = initial_autoencoder((1, 28, 28))
    assert parse_genome("autoencoder", g.model_dump(mode="json")) == g
    assert render(g) == "C3x3/2x2 | z 2x14x14 (c=0.50)"


@pytest.mark.parametrize("name", AE_MUTATION_NAMES)
def test_each_mutation_does_what_it_says(name):
    g = AutoencoderGenome(input_shape=(1, 28, 28), layers=(_conv(0, f=2, s=2), AELayer(id="L1", kind="pool", size=2),
                                                            _conv(2, f=2)), next_id=3)
    seen = False
    for seed in range(200):
        child, rec = mutate(g, random.Random(seed), {name: 1.0})
        assert rec.name == name and invalid_reason(child) is None and compression(child) > 0
        seen = True
        convs, pools = len(child.convs()), len(child.pools())
        if name == "identity":
            assert child == g and rec.changed_edges == []
        elif name == "insert_convolution":
            assert convs == 3 and child.next_id == 4 and "L3" in rec.changed_edges
        elif name == "remove_convolution":
            assert convs == 1
        elif name == "insert_pool":
            assert pools == 2 and any(la.kind == "pool" and la.size == 2 and la.id == "L3" for la in child.layers)
        elif name == "remove_pool":
            assert pools == 0
        else:
            changed = [a for a, b in zip(child.layers, g.layers) if a != b]
            assert len(changed) == 1 and [changed[0].id] == rec.changed_edges
            a, b = changed[0], next(la for la in g.layers if la.id == changed[0].id)
            if name == "alter_stride":
                assert abs(a.stride - b.stride) == 1
            elif name == "alter_filters":
                assert a.filters in (b.filters * 2, b.filters // 2)
            elif name == "alter_filter_size":
                assert sum(abs(x - y) for x, y in zip(a.kernel, b.kernel)) == 1  # ONE dimension, +-1
            elif name == "alter_pool_size":
                assert abs(a.size - b.size) == 1
    assert seen


def test_impossible_mutation_raises_so_the_worker_retries():
    g = initial_autoencoder((1, 28, 28))
    with pytest.raises(ValueError, match="no valid autoencoder mutation"):
        mutate(g, random.Random(0), {"remove_pool": 1.0})  # there is no pool


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 25))
def test_any_chain_of_mutations_stays_valid(seed, n):
    rng = random.Random(seed)
    g = initial_autoencoder((1, 28, 28))
    for _ in range(n):
        g, _rec = mutate(g, rng)
        assert invalid_reason(g) is None and 0 < compression(g) < 1
    assert AutoencoderGenome.model_validate(g.model_dump(mode="json")) == g

# ------------------------------------------------------------------------- TOPSIS (paper, Table 2)


#: Table 2 of seed 000: (CAE generation, compression rate, accuracy)
TABLE2 = [(0, 1.0, 0.0), (507, 0.66, 0.7028), (574, 0.75, 0.4289), (266, 0.83, 0.3710), (67, 0.91, 0.3054),
          (611, 0.92, 0.2255), (355, 0.95, 0.2123), (882, 0.97, 0.1885), (841, 0.98, 0.1493),
          (130, 0.66, 0.5650), (725, 0.66, 0.4271)]


def test_topsis_on_table2_picks_507():
    points = [(c, a) for _, c, a in TABLE2]
    scores = topsis(points)
    by_gen = {g: s for (g, _, _), s in zip(TABLE2, scores)}
    assert TABLE2[pick(points)][0] == 507
    assert by_gen[507] == pytest.approx(0.681, abs=5e-4)
    assert by_gen[130] == pytest.approx(0.611, abs=5e-4)
    assert sorted(by_gen, key=by_gen.get, reverse=True)[:2] == [507, 130]


def test_topsis_weights_and_fixed_ideals():
    assert topsis([(1.0, 1.0), (0.0, 0.0)]) == [1.0, 0.0]  # the ideal and the anti-ideal themselves
    # more weight on accuracy moves the pick towards it
    pts = [(0.9, 0.3), (0.5, 0.6)]
    assert pick(pts, (0.9, 0.1)) == 0 and pick(pts, (0.1, 0.9)) == 1
    with pytest.raises(ValueError, match="weights"):
        topsis(pts, (1.0, -1.0))

# ------------------------------------------------------------------------- Pareto ranking by hand


def test_fronts_and_crowding_hand_computed():
    # (compression, reconstruction): A,B,C on front 0; D dominated by B only; E by everyone
    pts = [(0.9, 0.2), (0.6, 0.6), (0.2, 0.9), (0.5, 0.5), (0.1, 0.1)]
    assert fronts(pts) == [[0, 1, 2], [3], [4]]
    d = crowding(pts, [0, 1, 2])
    # B's neighbours are A and C: (0.9-0.2)/(0.9-0.2) + (0.9-0.2)/(0.9-0.2) = 2
    assert d[1] == pytest.approx(2.0) and d[0] == d[2] == float("inf")
    keys = rank_and_crowding(pts)
    rng = random.Random(0)
    ids = ["A", "B", "C", "D", "E"]
    for _ in range(100):
        w, lo = pareto_tournament(ids, keys, rng)
        assert keys[ids.index(w)][0] <= keys[ids.index(lo)][0]
        if {w, lo} == {"A", "B"}:
            assert w == "A"  # same front: the extreme (infinite crowding) wins
        if {w, lo} == {"D", "B"}:
            assert w == "B"  # the better front wins


def _rec(i, c, r):
    return IndividualRecord(id=f"20250101T000000{i:06d}Z-0000000{i}", dna={}, objectives={"compression": c,
                            "reconstruction": r}, fitness=0.5, val_accuracy=None, genome="autoencoder")


def test_selection_ranks_the_whole_alive_population_through_the_view():
    from lse.algorithms import make_algorithm
    from lse.config import ExperimentConfig

    algo = make_algorithm(ExperimentConfig(algorithm={"name": "autoencoder"}, population_size=4))
    recs = [_rec(1, 0.9, 0.2), _rec(2, 0.6, 0.6), _rec(3, 0.5, 0.5), _rec(4, 0.1, 0.1)]
    view = PopulationView([Member(r.id, r.fitness) for r in recs], {r.id: r for r in recs})
    rng = random.Random(1)
    for _ in range(50):
        sel = algo.select(view, rng, full=True)
        assert len(sel.parents) == 1 and len(sel.kills) == 1
        # the dominated-by-all individual never wins; a front-0 member loses only to the other one
        assert sel.parents[0] != recs[3].id
        if sel.kills[0] in (recs[0].id, recs[1].id):
            assert sel.parents[0] in (recs[0].id, recs[1].id)
        assert algo.select(view, rng, full=False).kills == ()
    assert algo.fitness({"compression": 0.66, "reconstruction": 0.7028}) == pytest.approx(0.681, abs=5e-4)
