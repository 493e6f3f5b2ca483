"""Seed 003's pure core: the fixed nets' gene counts, the two encodings, uniform crossover with
complementary children, per-section mutation counts, roulette selection, and the three schemes'
decisions (steady-state kills, complementary pairs on the barrier, elitism).  No torch."""

from __future__ import annotations

import random

import pytest

from lse.algorithms import make_algorithm
from lse.algorithms.base import Context, Member, PopulationView
from lse.config import ExperimentConfig
from lse.core.chromosome import Variation, chromosome, complement, crossover_mask, mutation_sites, plan_variation
from lse.core.fixednet import FixedNet, parameter_count, tensor_shapes
from lse.core.genomes import parse_genome
from lse.core.records import IndividualRecord
from lse.core.selection import least_fit, mating_pool, roulette

MNIST = tensor_shapes("mnist-table2", (1, 28, 28), 10)


@pytest.mark.parametrize("net,shape,params,accordion,features,classifier", [
    ("mnist-table2", (1, 28, 28), 4540, 116, 66, 50),    # Table 2 (136 in the paper: conv2 as 40 filters)
    ("lenet-table3", (1, 32, 32), 291870, 356, 142, 214),  # Table 3's counts: a GREY 32x32 input
    ("lenet-table3", (3, 32, 32), 292170, 356, 142, 214),  # colour: 300 more weights in conv1
])
def test_fixed_nets_have_the_tables_parameters_and_gene_counts(net, shape, params, accordion, features, classifier):
    assert parameter_count(net, shape, 10) == params
    acc = chromosome(tensor_shapes(net, shape, 10), "accordion")
    assert acc.length == accordion and acc.section_genes() == {"features": features, "classifier": classifier}
    assert chromosome(tensor_shapes(net, shape, 10), "traditional").length == params


def test_genome_kind_round_trips_and_refuses_unknown_nets():
    assert parse_genome("fixed-net", {"net": "lenet-table3"}) == FixedNet(net="lenet-table3")
    with pytest.raises(ValueError):
        parse_genome("fixed-net", {"net": "vgg"})
    with pytest.raises(ValueError, match="larger input"):
        tensor_shapes("lenet-table3", (1, 4, 4), 10)


def test_crossover_children_are_complementary():
    chrom = chromosome(MNIST, "traditional")
    v = Variation(op="crossover", encoding="traditional", mask_seed=7)
    first = plan_variation(chrom, v).source
    second = plan_variation(chrom, v.model_copy(update={"complement": True})).source
    assert len(first) == chrom.length and set(first) == {0, 1}
    assert all(a + b == 1 for a, b in zip(first, second))  # every gene from the other parent
    assert complement(crossover_mask(10, random.Random(1))) == tuple(1 - m for m in crossover_mask(10, random.Random(1)))
    # uniform: each parent gives about half
    assert abs(first.count(0) / len(first) - 0.5) < 0.05


@pytest.mark.parametrize("encoding,features,classifier", [("accordion", 6, 5), ("traditional", 378, 76)])
def test_mutation_picks_int_tenth_of_each_section(encoding, features, classifier):
    """Section 5: int(0.1 x section genes) per section (the paper's 136-gene example gives 8 and
    5; our 116 genes give int(6.6) = 6 filters and 5 neurons)."""
    chrom = chromosome(MNIST, encoding)
    for seed in range(5):
        sites = mutation_sites(chrom, random.Random(seed), 0.1)
        assert len(set(sites)) == len(sites)
        assert sum(s in chrom.section_range("features") for s in sites) == features
        assert sum(s in chrom.section_range("classifier") for s in sites) == classifier
    v = Variation(op="mutation", encoding=encoding, mutation_seed=3)
    plan = plan_variation(chrom, v)
    assert set(plan.source) == {0} and plan.counts(chrom)["mutated"] == {"features": features, "classifier": classifier}


def test_roulette_selects_in_proportion_to_fitness():
    """P_i = f_i / sum f: 40,000 seeded draws against the expected counts (chi-square, 4 d.o.f.;
    the 0.999 quantile is 18.5)."""
    cands = [("a", 0.1), ("b", 0.2), ("c", 0.3), ("d", 0.15), ("e", 0.25)]
    rng = random.Random(2024)
    n = 40_000
    counts = {c: 0 for c, _ in cands}
    for _ in range(n):
        counts[roulette(cands, rng)] += 1
    total = sum(f for _, f in cands)
    chi2 = sum((counts[c] - n * f / total) ** 2 / (n * f / total) for c, f in cands)
    assert chi2 < 18.5, (chi2, counts)
    # nothing has fitness: uniform; zero fitness is never drawn while others have some
    assert {roulette([("x", 0.0), ("y", 0.0)], random.Random(i)) for i in range(50)} == {"x", "y"}
    assert {roulette([("x", 0.0), ("y", 0.5)], random.Random(i)) for i in range(50)} == {"y"}
    assert len(mating_pool(cands, 100, random.Random(0))) == 100
    assert least_fit([("b", 0.2), ("a", 0.2), ("c", 0.9)]) == "a"


def _ids(n, day=1):
    return [f"202401{day:02d}T0000000000{i:02d}Z-000000{i:02d}" for i in range(n)]


def _view(fits):
    return PopulationView([Member(i, f) for i, f in zip(_ids(len(fits)), fits)])


def _rec(iid, fitness, parents=()):
    return IndividualRecord(id=iid, dna={"net": "mnist-table2"}, genome="fixed-net", fitness=fitness,
                            val_accuracy=fitness, parents=list(parents))


def _algo(name, **options):
    return make_algorithm(ExperimentConfig(population_size=100, algorithm={"name": name, "options": options}))


def test_steady_state_kills_the_least_fit_and_crosses_over_seventy_percent():
    algo = _algo("ga-steady-state")
    fits = [0.1 + 0.005 * i for i in range(100)]
    view = _view(fits)
    rng = random.Random(5)
    two = 0
    for _ in range(2000):
        sel = algo.select(view, rng, full=True)
        two += len(sel.parents) == 2
        assert len(set(sel.parents)) == len(sel.parents)
        rest = [(m.id, m.fitness) for m in view.members if m.id not in sel.parents]
        assert sel.kills == (min(rest, key=lambda c: c[1])[0],)
    assert abs(two / 2000 - 0.7) < 0.04
    assert algo.select(view, rng, full=False).kills == ()
    cross = algo.vary([_rec(view.members[0].id, 0.1), _rec(view.members[1].id, 0.2)], rng)
    assert cross.details["variation"]["op"] == "crossover" and cross.genome == "fixed-net"
    mut = algo.vary([_rec(view.members[0].id, 0.1)], rng)
    assert mut.details["variation"]["op"] == "mutation" and mut.details["variation"]["mutation_seed"] is not None


def test_generational_slots_pair_into_complementary_children_from_one_mating_pool():
    """Slots 2k and 2k+1 of a generation: the same two parents, complementary masks, decided by
    P_g alone -- two workers (two algorithm instances, different rngs) agree."""
    a, b = _algo("ga-generational"), _algo("ga-generational")
    view = _view([0.05 + 0.01 * i for i in range(100)])
    mutated = 0
    for slot in range(0, 100, 2):
        c0, c1 = Context(generation=3, slot=slot), Context(generation=3, slot=slot + 1)
        s0 = a.select(view, random.Random(1), full=False, ctx=c0)
        v0 = Variation.model_validate(a.vary([_rec(p, 0.1) for p in s0.parents], random.Random(1), s0.plan, c0
                                             ).details["variation"]) if len(s0.parents) == 2 else None
        s1 = b.select(view, random.Random(99), full=False, ctx=c1)
        assert s0.parents == s1.parents
        if v0 is None:
            continue
        v1 = Variation.model_validate(b.vary([_rec(p, 0.1) for p in s1.parents], random.Random(2), s1.plan, c1
                                             ).details["variation"])
        assert v0.mask_seed == v1.mask_seed and not v0.complement and v1.complement
        mutated += (v0.mutation_seed is not None) + (v1.mutation_seed is not None)
    assert 5 <= mutated <= 40  # p = 0.2 of 100 children
    c1, c2 = _ids(2, day=2)
    plan = a.replace([_rec(i, 0.5) for i in _ids(3)], [_rec(c1, 0.4), _rec(c2, None)])
    assert set(plan.kill) == set(_ids(3)) and plan.alive == (c1,) and plan.dead == (c2,)


def test_elitism_keeps_the_top_ten_unchanged_and_breeds_ninety():
    algo = _algo("ga-elitism")
    assert algo.slots(0) == 100 and algo.slots(1) == 90
    ids = _ids(100)
    fits = [random.Random(i).random() for i in range(100)]
    parents = [_rec(i, f) for i, f in zip(ids, fits)]
    children = [_rec(c, 0.5) for c in _ids(90, day=2)]
    plan = algo.replace(parents, children)
    top = {r.id for r in sorted(parents, key=lambda r: -r.fitness)[:10]}
    assert set(ids) - set(plan.kill) == top and len(plan.alive) == 90
    # each child: one crossover child of two draws from a 20-member pool, the same on any worker
    view = _view(fits)
    pools = set()
    for slot in range(90):
        sel = algo.select(view, random.Random(slot), full=False, ctx=Context(generation=1, slot=slot))
        assert 1 <= len(sel.parents) <= 2
        pools.update(sel.parents)
    assert len(pools) <= 20
