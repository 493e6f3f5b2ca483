"""Seed 003 in memory (lse.runners.ga_memory): a population of fixed nets judged at once gives
each individual's own accuracy, N children assembled together are the children one at a time,
and the three schemes keep their invariants -- the same initial population for the same
init_seed, the steady state's best never falls, elitism's elites pass unchanged, generational
replaces everyone; fitness batches never touch the monitor set."""

from __future__ import annotations

import pytest
import torch

from lse.algorithms.base import Context
from lse.config import ExperimentConfig
from lse.core.chromosome import Variation, chromosome, plan_variation
from lse.core.fixednet import FixedNet, tensor_shapes
from lse.nn.chromosome import apply_plan, apply_plans
from lse.nn.data import load_dataset
from lse.nn.fixednet import FixedCNN, initial_state
from lse.nn.population import population_accuracy, population_logits
from lse.nn.synthetic import write_synthetic
from lse.runners.ga_memory import MemoryGA, backprop_baseline, split_monitor
from lse.runners.weights import initial_seed


@pytest.mark.parametrize("net,shape", [("mnist-table2", (1, 28, 28)), ("lenet-table3", (1, 32, 32)),
                                       ("mnist-table2", (3, 30, 30))])
def test_population_forward_is_each_individuals_own_forward(net, shape):
    states = [initial_state(FixedNet(net=net), shape, 10, s) for s in range(5)]
    stacked = {n: torch.stack([s[n] for s in states]) for n in states[0]}
    x = torch.randn(7, *shape)
    with torch.no_grad():
        logits = population_logits(net, stacked, x, 10)
        for k, s in enumerate(states):
            m = FixedCNN(FixedNet(net=net), shape, 10)
            m.load_state_dict(s)
            assert torch.allclose(logits[k], m(x), atol=1e-5), k
    y = torch.randint(0, 10, (7,))
    whole = population_accuracy(net, stacked, x, y, 10)
    assert torch.equal(whole, (logits.argmax(-1) == y).float().mean(1))
    for group, chunk in ((1, 0), (2, 3), (0, 1)):  # passes of any size: the same accuracies
        assert torch.equal(population_accuracy(net, stacked, x, y, 10, group=group, chunk=chunk), whole)


@pytest.mark.parametrize("encoding", ["accordion", "traditional"])
def test_children_assembled_together_are_the_children_one_at_a_time(encoding):
    shapes = tensor_shapes("mnist-table2", (1, 28, 28), 10)
    chrom = chromosome(shapes, encoding)
    parents = [initial_state(FixedNet(), (1, 28, 28), 10, s) for s in range(4)]
    pairs = [(0, 1), (2, 3), (1, 1)]  # the last: a clone
    variations = [Variation(op="crossover", encoding=encoding, mask_seed=5),
                  Variation(op="crossover", encoding=encoding, mask_seed=5, complement=True),
                  Variation(op="mutation", encoding=encoding, mutation_seed=9)]
    plans = [plan_variation(chrom, v) for v in variations]
    first = {n: torch.stack([parents[a][n] for a, _ in pairs]) for n in parents[0]}
    second = {n: torch.stack([parents[b][n] for _, b in pairs]) for n in parents[0]}
    source = torch.tensor([p.source for p in plans], dtype=torch.bool)
    mutate = torch.zeros(3, chrom.length, dtype=torch.bool)
    mutate[2, list(plans[2].mutate)] = True
    out = apply_plans(chrom, first, second, source, mutate, torch.Generator().manual_seed(0), 0.5)
    for k in (0, 1):  # no mutation: exactly the one-at-a-time child
        a, b = pairs[k]
        one = apply_plan(chrom, [parents[a], parents[b]], plans[k], seed=0, filter_sigma=0.5)
        for n in one:
            assert torch.equal(out[n][k], one[n])
    # the mutated clone differs from its parent exactly on the mutated genes' weights
    one = apply_plan(chrom, [parents[1]], plans[2], seed=0, filter_sigma=0.5)
    for n in one:
        assert torch.equal(out[n][2] != parents[1][n], one[n] != parents[1][n])
    assert any(bool((out[n][2] != parents[1][n]).any()) for n in one)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = write_synthetic(tmp_path_factory.mktemp("data"), n_train=900, n_test=100, seed=2)
    return str(folder), load_dataset("fashion-mnist", str(folder), validation_size=64, seed=0)


def _config(data_dir, scheme, population=12, **options):
    return ExperimentConfig(dataset="fashion-mnist", data_dir=data_dir, validation_size=64, seed=0,
                            population_size=population,
                            algorithm={"name": scheme, "options": {"init_seed": 3, **options}})


def test_the_same_init_seed_gives_every_scheme_the_store_runs_initial_population(data):
    data_dir, ds = data
    pops = {}
    for scheme in ("ga-steady-state", "ga-elitism", "ga-generational"):
        ga = MemoryGA(_config(data_dir, scheme, fitness_batch=32), ds, monitor=100)
        pops[scheme] = ga.initial_population()
    ref = pops["ga-steady-state"]
    for pop in pops.values():
        assert pop.fitness == ref.fitness  # the same first fitness batch, too
        for n, w in pop.weights.items():
            assert torch.equal(w, ref.weights[n])
    # and individual k is the store-based run's initial individual k
    ga = MemoryGA(_config(data_dir, "ga-steady-state"), ds, monitor=100)
    child = ga.algo.initial(ga.rng, 1, Context(slot=4))
    state = initial_state(FixedNet(), (1, 28, 28), 10, initial_seed(child.details))
    for n, t in state.items():
        assert torch.equal(ref.weights[n][4], t)


def test_steady_state_replaces_the_least_fit_and_its_best_never_falls(data):
    data_dir, ds = data
    ga = MemoryGA(_config(data_dir, "ga-steady-state"), ds, monitor=100)  # fitness: the fixed subset
    pop = ga.initial_population()
    best = max(pop.fitness)
    for _ in range(30):
        old = dict(zip(pop.ids, pop.fitness))
        assert ga.steady_state_iteration(pop) == 1
        [gone] = set(old) - set(pop.ids)
        [born] = set(pop.ids) - set(old)
        assert len(pop.ids) == 12 and born > max(old)  # ids count births
        # the least fit died (its two parents, whoever they were, were spared)
        assert old[gone] <= sorted(old.values())[2]
        assert max(pop.fitness) >= best
        best = max(pop.fitness)


def test_elitism_passes_its_elites_unchanged_and_generational_replaces_everyone(data):
    data_dir, ds = data
    ga = MemoryGA(_config(data_dir, "ga-elitism", elites=3, pool_size=4, fitness_batch=16), ds, monitor=100)
    pop = ga.initial_population()
    ranked = sorted(range(12), key=lambda k: (-pop.fitness[k], pop.ids[k]))[:3]
    elites = {pop.ids[k]: {n: w[k].clone() for n, w in pop.weights.items()} for k in ranked}
    assert ga.generation(pop, 1) == 9  # population - elites children
    assert len(pop.ids) == 12 and set(elites) <= set(pop.ids)
    for i, w in elites.items():
        k = pop.ids.index(i)
        assert all(torch.equal(pop.weights[n][k], t) for n, t in w.items())
    gen = MemoryGA(_config(data_dir, "ga-generational", fitness_batch=16), ds, monitor=100)
    pop = gen.initial_population()
    before = set(pop.ids)
    assert gen.generation(pop, 1) == 12
    assert not before & set(pop.ids) and len(pop.ids) == 12
    # each child's recorded fitness is its accuracy on that iteration's batch: re-judge one
    r = gen.run(3, checkpoints=2)
    assert r.iterations == 3 and r.children == 36 and r.points[-1].iteration == 3


def test_a_run_reports_on_the_monitor_set_that_no_fitness_batch_draws_from(data):
    data_dir, ds = data
    calls = []
    prepare = lambda x: x.float()  # noqa: E731
    train_x, _, mon_x, _ = split_monitor(ds, prepare, 100, "cpu")
    assert train_x.shape[0] + mon_x.shape[0] == ds.train_x.shape[0]
    assert torch.equal(mon_x, ds.train_x[-100:].float())
    with pytest.raises(ValueError, match="monitor"):
        split_monitor(ds, prepare, ds.train_x.shape[0], "cpu")
    ga = MemoryGA(_config(data_dir, "ga-steady-state", fitness_batch=8), ds, monitor=100)
    orig = ga.fitness_data

    def spy():
        x, y = orig()
        calls.append(x)
        return x, y

    ga.fitness_data = spy
    r = ga.run(20, checkpoints=4, progress=lambda p: None)
    assert len(calls) == 21  # iteration 0's batch (the initial population) + one per iteration
    for x in calls:  # every batch image is a training image outside the monitor set
        assert not any(bool((m == x).flatten(1).all(1).any()) for m in ga.mon_x[:20])
    assert [p.iteration for p in r.points][0] == 0 and r.points[-1].iteration == 20
    assert all(0 <= p.best_monitor <= 1 for p in r.points)


def test_backprop_baseline_learns_and_refuses_an_unknown_optimizer(data):
    _, ds = data
    member = initial_state(FixedNet(), (1, 28, 28), 10, 0)
    points, model = backprop_baseline(ds, member, "mnist-table2", optimizer="adam", iterations=150, lr=3e-3,
                                      monitor=100, checkpoints=3)
    assert points[0][0] == 0 and points[-1][0] == 150
    assert points[-1][2] > points[0][2] + 0.2  # the synthetic classes are learnable
    with pytest.raises(ValueError, match="sgd or adam"):
        backprop_baseline(ds, member, "mnist-table2", optimizer="rmsprop", iterations=1, lr=0.1, monitor=100)


def test_memory_ga_refuses_an_algorithm_that_is_not_a_weight_ga(data):
    data_dir, ds = data
    cfg = ExperimentConfig(dataset="fashion-mnist", data_dir=data_dir, validation_size=64, population_size=4)
    with pytest.raises(ValueError, match="not one of seed 003's weight GAs"):
        MemoryGA(cfg, ds)


def test_rejudge_puts_the_whole_population_on_one_batch(data):
    data_dir, ds = data
    ga = MemoryGA(_config(data_dir, "ga-elitism", elites=3, pool_size=4, fitness_batch=16), ds, monitor=100,
                  rejudge=True)
    pop = ga.initial_population()
    seen = []
    orig = ga.fitness_data

    def spy():
        seen.append(orig())
        return seen[-1]

    ga.fitness_data = spy
    for g in (1, 2):
        ga.generation(pop, g)
        x, y = seen[-1]
        now = population_accuracy("mnist-table2", pop.weights, x, y, 10).tolist()
        assert pop.fitness == now  # elites too: judged on this iteration's batch
    stale = MemoryGA(_config(data_dir, "ga-elitism", elites=3, pool_size=4, fitness_batch=16), ds, monitor=100)
    spop = stale.initial_population()
    before = dict(zip(spop.ids, spop.fitness))
    stale.generation(spop, 1)
    kept = [i for i in spop.ids if i in before]
    assert len(kept) == 3 and all(spop.fitness[spop.ids.index(i)] == before[i] for i in kept)
    with pytest.raises(ValueError, match="rejudge"):
        MemoryGA(_config(data_dir, "ga-steady-state", fitness_batch=16), ds, monitor=100, rejudge=True)
