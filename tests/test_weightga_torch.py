"""Seed 003 in torch and on the store: the fixed nets, the operators carried out on weights
(complementary children, Gaussian noise on mutated filters, nothing else touched), and the
schemes on the real worker loop -- elitism's top individuals pass unchanged through the
barrier; the steady state runs with several workers at once."""

from __future__ import annotations

import pytest
import torch

from _generation_helpers import check_barrier
from _reliability_helpers import check_alive_evaluate
from _store_helpers import run_workers_in_threads

from lse.algorithms import make_algorithm
from lse.config import ExperimentConfig
from lse.core.chromosome import Variation, chromosome, plan_variation
from lse.core.fixednet import FixedNet, tensor_shapes
from lse.nn.chromosome import apply_plan
from lse.nn.fixednet import build_fixed_net, glorot_std, initial_state
from lse.nn.synthetic import write_synthetic
from lse.store import Store
from lse.store.generations import Generations

SHAPE = (1, 28, 28)
MNIST = tensor_shapes("mnist-table2", SHAPE, 10)


def _parents():
    g = FixedNet()
    return [initial_state(g, SHAPE, 10, s) for s in (1, 2)]


def test_mnist_net_builds_with_4540_weights_no_biases_and_glorot_normal_init():
    model = build_fixed_net(FixedNet(), SHAPE, 10)
    assert sum(p.numel() for p in model.parameters()) == 4540
    assert all(name.endswith(".weight") for name, _ in model.named_parameters())
    assert model(torch.zeros(3, *SHAPE)).shape == (3, 10)
    conv2 = initial_state(FixedNet(), SHAPE, 10, 0)["conv2.weight"]
    t = next(t for t in MNIST if t.name == "conv2.weight")
    # truncated at 2 sigma, variance 2 / (fan_in + fan_out) as Keras' glorot_normal
    assert conv2.abs().max() <= 2 * glorot_std(t) + 1e-6
    assert conv2.std().item() == pytest.approx((2 / (t.fan_in + t.fan_out)) ** 0.5, rel=0.1)


@pytest.mark.parametrize("encoding", ["accordion", "traditional"])
def test_complementary_children_split_the_parents_genes(encoding):
    """Child 1 + child 2 == parent A + parent B everywhere; Accordion moves whole filters/neurons."""
    a, b = _parents()
    chrom = chromosome(MNIST, encoding)
    v = Variation(op="crossover", encoding=encoding, mask_seed=11)
    c1 = apply_plan(chrom, [a, b], plan_variation(chrom, v), seed=0, filter_sigma=0.5)
    c2 = apply_plan(chrom, [a, b], plan_variation(chrom, v.model_copy(update={"complement": True})), seed=0,
                    filter_sigma=0.5)
    for name in a:
        assert torch.equal(c1[name] + c2[name], a[name] + b[name])
        from_a = (c1[name] == a[name]) | (c1[name] == b[name])
        assert bool(from_a.all())
        if encoding == "accordion":  # a row comes whole from one parent
            for row in range(a[name].shape[0]):
                assert torch.equal(c1[name][row], a[name][row]) or torch.equal(c1[name][row], b[name][row])


def test_mutation_adds_gaussian_noise_to_filters_and_init_draws_to_neurons_only_at_its_sites():
    a, _ = _parents()
    chrom = chromosome(MNIST, "traditional")  # 378 filter scalars and 76 neuron weights: enough to measure
    deltas = {"features": [], "classifier": []}
    for seed in range(8):
        v = Variation(op="mutation", encoding="traditional", mutation_seed=seed)
        plan = plan_variation(chrom, v)
        child = apply_plan(chrom, [a], plan, seed=seed, filter_sigma=0.5)
        changed = 0
        for t, start in zip(chrom.tensors, chrom.offsets):
            d = (child[t.name] - a[t.name]).flatten()
            sites = torch.tensor([i - start for i in plan.mutate if start <= i < start + t.size], dtype=torch.int64)
            keep = torch.ones(t.size, dtype=torch.bool)
            keep[sites] = False
            assert bool((d[keep] == 0).all()), t.name  # nothing outside the sites moves
            changed += int((d[sites] != 0).sum())
            if t.section == "features":
                deltas["features"].append(d[sites])
            else:
                deltas["classifier"].append(d[sites] / glorot_std(t))
        assert changed == len(plan.mutate)
    f = torch.cat(deltas["features"])
    assert f.mean().item() == pytest.approx(0.0, abs=0.05) and f.std().item() == pytest.approx(0.5, rel=0.08)
    c = torch.cat(deltas["classifier"])  # Glorot draws, in units of that layer's sigma: truncated at 2
    assert c.abs().max().item() <= 2 + 1e-5 and c.std().item() == pytest.approx(0.88, rel=0.15)


def _pop(tmp_path, algorithm, population, **options):
    data = write_synthetic(tmp_path / "data", fmt="idx", n_train=400, n_test=50, image_shape=(12, 12), seed=3)
    cfg = ExperimentConfig(dataset="fashion-mnist", data_dir=str(data), validation_size=60, eval_batch_size=60,
                           population_size=population, algorithm={"name": algorithm, "options": options})
    pop = tmp_path / "pop"
    Store(pop).create(cfg)
    return pop, cfg


def _run(pop, workers, max_individuals):
    store = Store(pop).open()
    cfg = store.config.model_copy(update={"max_individuals": max_individuals})
    store.replace_config(cfg)
    run_workers_in_threads(pop, workers, device="cpu")


def test_elitism_passes_the_fittest_unchanged_through_the_barrier(tmp_path):
    pop, _ = _pop(tmp_path, "ga-elitism", 10, elites=3, pool_size=4)
    _run(pop, 2, 10 + 7 * 3)
    store = Store(pop).open()
    store.register_worker("checker", auto_heartbeat=False)
    algo = make_algorithm(store.config)
    gens = Generations(store, slots=algo.slots(1), initial_slots=algo.slots(0))
    closed = gens.advance(algo.replace)
    check_barrier(store, gens, closed)
    assert closed >= 3
    fit = {r.id: r.fitness for r in store.records()}
    best_so_far = []
    for g in range(closed):
        plan = gens.plan(g)
        parents = sorted(plan.parents, key=lambda i: (-fit[i], i))
        if g > 0:
            assert set(parents[:3]) <= set(plan.survivors)  # the top 3 pass
            assert len(plan.children) == 7
        best_so_far.append(max(fit[i] for i in plan.survivors))
    assert best_so_far == sorted(best_so_far)  # elitism: the best never gets worse
    alive = len(store.list_alive())
    store.close()
    # every alive individual (elites included) reproduces its fitness from its weights file
    assert check_alive_evaluate(pop) == alive


def test_steady_state_runs_with_several_workers_and_keeps_its_size(tmp_path):
    pop, _ = _pop(tmp_path, "ga-steady-state", 8)
    _run(pop, 3, 40)
    store = Store(pop).open()
    recs = store.records()
    assert len(recs) == 40
    assert {r.worker for r in recs} >= {"w0", "w1", "w2"} or len({r.worker for r in recs}) >= 2
    assert 7 <= len(store.list_alive()) <= 10
    ops = {r.extra["variation"]["op"] for r in recs if r.parents}
    assert ops == {"crossover", "mutation"}
    initial = sorted(r.extra["init"]["index"] for r in recs if not r.parents)
    # Never more initial individuals than the population, each from a slot of it.  Two claims
    # created in one timestamp tick that see each other take the same slot
    # (lse.runners.worker.initial_rank), so with 3 workers a slot can repeat and one go unused.
    assert 6 <= len(initial) <= 8 and all(0 <= i < 8 for i in initial) and len(set(initial)) >= 6
    killed = [r for r in recs if r.killed_at]
    assert killed and all(r.killed_by for r in killed)
    assert check_alive_evaluate(pop) == len(store.list_alive())


def test_fitness_on_changing_batches_is_each_childs_own_batch_and_the_validation_is_still_recorded(tmp_path):
    from lse.nn.data import load_dataset
    from lse.nn.fixednet import build_fixed_net
    from lse.nn.train import evaluate
    from lse.core.chromosome import derive_seed

    pop, cfg = _pop(tmp_path, "ga-steady-state", 6, fitness_batch=8)
    _run(pop, 1, 20)
    store = Store(pop).open()
    recs = store.records()
    assert len(recs) == 20
    for r in recs:
        assert r.extra["fitness_batch"] == 8
        assert r.fitness == r.objectives["batch_accuracy"]  # selection sees the batch's accuracy
        assert r.val_accuracy == r.objectives["val_accuracy"]  # reports still see the validation split
        assert r.fitness in {k / 8 for k in range(9)}
    assert len({round(r.val_accuracy, 6) for r in recs}) > 1
    # the batch is the child's own: drawn from its training seed, out of the training split
    ds = load_dataset("fashion-mnist", cfg.data_dir, validation_size=60, seed=cfg.seed)
    rec = next(r for r in recs if r.parents and store.find(r.id) is not None)
    model = build_fixed_net(FixedNet.model_validate(rec.dna), ds.input_shape, ds.num_classes)
    model.load_state_dict(store.load_weights(rec.id))
    model.to(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(derive_seed("fitness-batch", rec.extra["seed"]))
    idx = torch.randint(0, ds.train_x.shape[0], (8,), generator=g)
    assert evaluate(model, ds.train_x[idx], ds.train_y[idx], 60, dataset=ds) == rec.fitness
