"""Seed 003's genetic algorithms at the paper's scale, in one process.

The population store publishes every child as a folder, with a rename and an fsync: 35-100 ms of
store work per child on the development machine (docs/seed003), which is what a distributed
evolution of trained networks can afford and a weight GA cannot -- the paper's 10^4 iterations
of a 100-member generational population are 10^6 children, each judged on 32 images.  This
runner keeps the population in memory, as stacked tensors, and drives the SAME algorithm objects
through the same seam (``initial``, ``select``, ``vary``, ``slots``, ``replace``): the same
roulette, mating pools, gene plans (:func:`lse.core.chromosome.plan_variation`) and replacement.
What differs is the bookkeeping: ids are birth counters, nothing is written, and a generation's
children are assembled (:func:`lse.nn.chromosome.apply_plans`) and judged
(:func:`lse.nn.population.population_accuracy`) together.

Iterations, as the paper counts them (section 5: "each iteration of the training algorithm
inputs 32 images"): steady state, one child; generational and elitism, one generation.

Fitness (``WeightGAOptions.fitness_batch``):
  k    every iteration draws k images of the training split; every child made in that
       iteration is judged on them (the initial population on iteration 0's).  The store-based
       trainer draws a batch per child; here a generation shares its iteration's batch.
  None accuracy on the validation split, a fixed seeded subset of the training split.
With batches, an elite keeps the fitness of the batch it was judged on, and one lucky batch
(15 of 32 right, where the population knows 10%) keeps it elite for ever: ``rejudge`` judges the
survivors again on each iteration's batch, so the whole population that selection reads was
judged on one batch -- the paper's "in each generation, the fitness of each and every
individual is evaluated" (section 3).  The store cannot do this (a record never changes).
What is reported and never selected on: the fittest member's accuracy on the MONITOR set, the
last ``monitor`` images of the training split, which no fitness batch draws from and no baseline
trains on (in both fitness modes, so the two can be compared).  The test split is never read here.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from lse.algorithms import make_algorithm
from lse.algorithms.base import Context, Member, PopulationView
from lse.core.chromosome import Variation, chromosome, derive_seed, plan_variation
from lse.core.fixednet import FixedNet, tensor_shapes
from lse.nn.chromosome import apply_plans
from lse.nn.data import Dataset, normalize
from lse.nn.fixednet import initial_state
from lse.nn.population import population_accuracy
from lse.runners.weights import initial_seed


def images(dataset: Dataset, pad: int, device) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 images of ``dataset`` -> float, normalised, zero-padded by ``pad`` pixels on each
    side (raw zeros: the images' background), on ``device``."""
    scale, shift = dataset.normalization("cpu")

    def prepare(x: torch.Tensor) -> torch.Tensor:
        if pad:
            x = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        return normalize(x, scale, shift).to(device)

    return prepare


def log_marks(iterations: int, checkpoints: int) -> set[int]:
    """About ``checkpoints`` log-spaced iterations in 1..``iterations``, and the last."""
    marks = {int(round(10 ** (k * math.log10(max(iterations, 1)) / checkpoints))) for k in range(checkpoints + 1)}
    return marks | {iterations}


def split_monitor(dataset: Dataset, prepare, monitor: int, device) -> tuple[torch.Tensor, ...]:
    """(train_x, train_y, monitor_x, monitor_y): the training split less its last ``monitor``
    images, and those images (float, prepared, on ``device``)."""
    n = dataset.train_x.shape[0]
    if not 0 < monitor < n:
        raise ValueError(f"monitor set of {monitor} images: the training split has {n}; give 0 < monitor < {n}")
    x, y = prepare(dataset.train_x), dataset.train_y.to(device)
    return x[: n - monitor], y[: n - monitor], x[n - monitor:], y[n - monitor:]


@dataclass
class Point:
    """The population after ``iteration`` iterations (``children`` judged since the start)."""

    iteration: int
    children: int
    seconds: float  # wall seconds of the run so far (checkpoint evaluations excluded)
    best: float  # fitness of the fittest member
    mean: float  # mean fitness
    best_monitor: float  # accuracy of the fittest member on the monitor set (a report, never selected on)

    def row(self) -> list:
        return [self.iteration, self.children, round(self.seconds, 3), self.best, self.mean, self.best_monitor]


@dataclass
class Population:
    """Alive individuals: ids (birth counters, so they sort by birth), fitness, stacked weights."""

    ids: list[str]
    fitness: list[float]
    weights: dict[str, torch.Tensor]  # name -> (P, *shape)

    def view(self) -> PopulationView:
        return PopulationView([Member(i, f) for i, f in zip(self.ids, self.fitness)])

    def fittest(self) -> int:
        return max(range(len(self.ids)), key=lambda k: (self.fitness[k], self.ids[k]))

    def member(self, k: int) -> dict[str, torch.Tensor]:
        return {n: t[k] for n, t in self.weights.items()}


@dataclass
class GARun:
    points: list[Point]
    population: Population
    iterations: int
    children: int
    seconds: dict = field(default_factory=dict)  # select (incl. plans), assemble, evaluate


class MemoryGA:
    """One of seed 003's schemes (``config.algorithm``: ga-steady-state, ga-generational,
    ga-elitism) on ``dataset``, in memory.  ``pad``: zero pixels added on each side of every
    image (the Table-3 LeNet on 28x28 Fashion-MNIST: pad 2 -> 32x32)."""

    def __init__(self, config, dataset: Dataset, *, device: str = "cpu", pad: int = 0, chunk: int = 0,
                 group: int | None = None, monitor: int = 2000, rejudge: bool = False) -> None:
        self.config = config
        self.algo = make_algorithm(config)
        if not self.algo.name.startswith("ga-"):
            raise ValueError(f"{self.algo.name} is not one of seed 003's weight GAs (ga-steady-state, "
                             "ga-generational, ga-elitism)")
        self.options = self.algo.options
        if rejudge and not (self.algo.generational and self.options.fitness_batch):
            raise ValueError("rejudge is for the generational schemes with fitness on batches (fitness_batch)")
        self.rejudge = rejudge
        self.device = torch.device(device)
        self.chunk = chunk  # images per evaluation pass (0: all)
        # individuals per evaluation pass: on a CPU one at a time (measured fastest), on a GPU all
        self.group = group if group is not None else (0 if self.device.type == "cuda" else 1)
        prepare = images(dataset, pad, self.device)
        self.train_x, self.train_y, self.mon_x, self.mon_y = split_monitor(dataset, prepare, monitor, self.device)
        self.val_x, self.val_y = prepare(dataset.val_x), dataset.val_y.to(self.device)
        self.input_shape = tuple(self.train_x.shape[1:])
        self.num_classes = dataset.num_classes
        self.net = self.options.net
        self.shapes = tensor_shapes(self.net, self.input_shape, self.num_classes)
        self.chrom = chromosome(self.shapes, self.options.encoding)
        self.batches = torch.Generator().manual_seed(derive_seed("fitness-batches", config.seed, self.options.init_seed))
        self.rng = random.Random(derive_seed("ga-memory", config.seed, self.options.init_seed))
        self.births = 0
        self.seconds = {"select": 0.0, "assemble": 0.0, "evaluate": 0.0}

    # -- pieces ------------------------------------------------------------------------------
    def _new_id(self) -> str:
        self.births += 1
        return f"{self.births:09d}"

    def fitness_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The images this iteration's children are judged on."""
        k = self.options.fitness_batch
        if not k:
            return self.val_x, self.val_y
        idx = torch.randint(0, self.train_x.shape[0], (int(k),), generator=self.batches).to(self.device)
        return self.train_x[idx], self.train_y[idx]

    def judge(self, weights: dict[str, torch.Tensor], data: tuple[torch.Tensor, torch.Tensor]) -> list[float]:
        t = time.perf_counter()
        acc = population_accuracy(self.net, weights, data[0], data[1], self.num_classes, group=self.group, chunk=self.chunk)
        self.seconds["evaluate"] += time.perf_counter() - t
        return [float(a) for a in acc.cpu()]

    def initial_population(self) -> Population:
        """The population of generation 0 (or the steady state's first births): the same
        weights as the store-based run with the same ``init_seed`` gives them."""
        genome = FixedNet(net=self.net)
        ids, states = [], []
        for k in range(self.config.population_size):
            ctx = Context(generation=0 if self.algo.generational else None, slot=k)
            child = self.algo.initial(self.rng, self.input_shape[0], ctx)
            states.append(initial_state(genome, self.input_shape, self.num_classes, initial_seed(child.details)))
            ids.append(self._new_id())
        weights = {t.name: torch.stack([s[t.name] for s in states]).to(self.device) for t in self.shapes}
        return Population(ids, self.judge(weights, self.fitness_data()), weights)

    def make_children(self, pop: Population, selections: list[tuple[tuple[str, ...], Variation]],
                      generation: int) -> dict[str, torch.Tensor]:
        """The children of (parents, variation) pairs, assembled together."""
        t = time.perf_counter()
        row = {i: k for k, i in enumerate(pop.ids)}
        first = torch.tensor([row[p[0]] for p, _ in selections], device=self.device)
        second = torch.tensor([row[p[-1]] for p, _ in selections], device=self.device)
        plans = [plan_variation(self.chrom, v) for _, v in selections]
        source = torch.tensor([p.source for p in plans], dtype=torch.bool)
        mutate = torch.zeros(len(plans), self.chrom.length, dtype=torch.bool)
        for k, p in enumerate(plans):
            if p.mutate:
                mutate[k, list(p.mutate)] = True
        noise = torch.Generator().manual_seed(derive_seed("noise", self.config.seed, self.options.init_seed,
                                                          generation, self.births))
        out = apply_plans(self.chrom, {n: w[first] for n, w in pop.weights.items()},
                          {n: w[second] for n, w in pop.weights.items()}, source, mutate, noise,
                          self.options.filter_sigma)
        self.seconds["assemble"] += time.perf_counter() - t
        return out

    def _select(self, view: PopulationView, ctx: Context, full: bool):
        t = time.perf_counter()
        sel = self.algo.select(view, self.rng, full=full, ctx=ctx)
        members = {m.id: m for m in view.members}
        parents = [members[p] for p in sel.parents]
        child = self.algo.vary(parents, self.rng, plan=sel.plan, ctx=ctx)
        v = Variation.model_validate(child.details["variation"])
        self.seconds["select"] += time.perf_counter() - t
        return sel, (child.parents, v)

    # -- the schemes -------------------------------------------------------------------------
    def steady_state_iteration(self, pop: Population) -> int:
        view = pop.view()
        sel, choice = self._select(view, Context(), full=True)
        child = self.make_children(pop, [choice], 0)
        [fit] = self.judge(child, self.fitness_data())
        if not sel.kills:  # a population of two: both were parents; the child is dropped
            return 1
        victim = pop.ids.index(sel.kills[0])
        pop.ids[victim], pop.fitness[victim] = self._new_id(), fit
        for n, w in pop.weights.items():
            w[victim] = child[n][0]
        return 1

    def generation(self, pop: Population, g: int) -> int:
        view = pop.view()
        choices = [self._select(view, Context(generation=g, slot=k), full=False)[1] for k in range(self.algo.slots(g))]
        children = self.make_children(pop, choices, g)
        data = self.fitness_data()
        fits = self.judge(children, data)
        child_ids = [self._new_id() for _ in fits]
        plan = self.algo.replace([Member(i, f) for i, f in zip(pop.ids, pop.fitness)],
                                 [Member(i, f) for i, f in zip(child_ids, fits)])
        keep = [k for k, i in enumerate(pop.ids) if i not in set(plan.kill)]
        born = [k for k, i in enumerate(child_ids) if i in set(plan.alive)]
        pop.ids = [pop.ids[k] for k in keep] + [child_ids[k] for k in born]
        pop.fitness = [pop.fitness[k] for k in keep] + [fits[k] for k in born]
        keep_t, born_t = torch.tensor(keep, dtype=torch.long), torch.tensor(born, dtype=torch.long)
        pop.weights = {n: torch.cat([w[keep_t.to(w.device)], children[n][born_t.to(w.device)]])
                       for n, w in pop.weights.items()}
        if self.rejudge and keep:  # the survivors (elites) judged on this iteration's batch, too
            pop.fitness[:len(keep)] = self.judge({n: w[:len(keep)] for n, w in pop.weights.items()}, data)
        return len(fits)

    # -- a run -------------------------------------------------------------------------------
    def point(self, pop: Population, iteration: int, children: int, seconds: float) -> Point:
        best = pop.fittest()
        [val] = population_accuracy(self.net, {n: w[best:best + 1] for n, w in pop.weights.items()},
                                    self.mon_x, self.mon_y, self.num_classes, group=self.group, chunk=self.chunk).tolist()
        return Point(iteration, children, seconds, pop.fitness[best], sum(pop.fitness) / len(pop.fitness), val)

    def run(self, iterations: int, *, checkpoints: int = 40, seconds: float | None = None,
            progress: Callable[[Point], None] | None = None) -> GARun:
        """``iterations`` iterations (or until ``seconds`` of wall time), with the population
        measured at about ``checkpoints`` log-spaced iterations and at the end."""
        marks = log_marks(iterations, checkpoints)
        pop = self.initial_population()
        spent = 0.0  # wall time of the run, checkpoint evaluations excluded
        points = [self.point(pop, 0, 0, 0.0)]
        children, it = 0, 0
        mark = time.perf_counter()
        while it < iterations:
            it += 1
            children += self.generation(pop, it) if self.algo.generational else self.steady_state_iteration(pop)
            if it in marks or (seconds is not None and spent + time.perf_counter() - mark >= seconds):
                spent += time.perf_counter() - mark
                points.append(self.point(pop, it, children, spent))
                if progress:
                    progress(points[-1])
                mark = time.perf_counter()
                if seconds is not None and spent >= seconds:
                    break
        return GARun(points, pop, it, children, dict(self.seconds))


def backprop_baseline(dataset: Dataset, member: dict[str, torch.Tensor], net: str, *, optimizer: str,
                      iterations: int, lr: float, batch: int = 32, seed: int = 0, pad: int = 0, monitor: int = 2000,
                      checkpoints: int = 40, device: str = "cpu") -> tuple[list[list], torch.nn.Module]:
    """The paper's comparison (section 5): one member of the initial population trained by
    backpropagation with ``optimizer`` ("sgd" or "adam"), batches of ``batch`` training images,
    one iteration per batch, drawn from the training split less the monitor set.  Returns
    [iteration, seconds, monitor accuracy] points and the model (the caller may report its test
    accuracy)."""
    from lse.nn.fixednet import build_fixed_net

    dev = torch.device(device)
    train_x, train_y, mon_x, mon_y = split_monitor(dataset, images(dataset, pad, dev), monitor, dev)
    model = build_fixed_net(FixedNet(net=net), tuple(train_x.shape[1:]), dataset.num_classes).to(dev)
    model.load_state_dict({k: v.detach().to(dev) for k, v in member.items()}, strict=True)
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    elif optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    else:
        raise ValueError(f"optimizer {optimizer!r}: use sgd or adam")
    g = torch.Generator().manual_seed(derive_seed("backprop-batches", seed))
    marks = log_marks(iterations, checkpoints)

    def val() -> float:
        model.eval()
        with torch.no_grad():
            out = float((model(mon_x).argmax(1) == mon_y).float().mean())
        model.train()
        return out

    points = [[0, 0.0, val()]]
    spent = 0.0
    for it in range(1, iterations + 1):
        t = time.perf_counter()
        idx = torch.randint(0, train_x.shape[0], (batch,), generator=g).to(dev)
        loss = torch.nn.functional.cross_entropy(model(train_x[idx]), train_y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        spent += time.perf_counter() - t
        if it in marks:
            points.append([it, round(spent, 3), val()])
    model.eval()
    return points, model
