"""The trainer seam: what turns a child (a genome and its parents' weights) into a trained,
evaluated child, for any genome kind.

A trainer is chosen by the genome kind of the algorithm's children (:data:`TRAINERS`, beside
the builders of :mod:`lse.nn.genomes`), and every setting of a child's training comes in its
:class:`~lse.algorithms.base.Recipe`: an algorithm names *what* (optimiser, steps or epochs,
batch size, learning rate, momentum, weight decay, augmentation), never *which code*, so
algorithms import nothing from here.

:class:`TorchTrainer` is the template: it loads the data set once per process and runs the
skeleton every kind shares (count FLOPs, build, inherit, train, evaluate, weights to the host);
the kinds that differ override a hook (:meth:`TorchTrainer.sources`, :meth:`~TorchTrainer.build`,
:meth:`~TorchTrainer.before_training`, :meth:`~TorchTrainer.after_training`).  A new genome kind
needs its core module, its nn module, and one line in each registry (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from lse.algorithms.base import Child, Recipe
from lse.config import ExperimentConfig, WorkerOptions
from lse.core.budget import REFUSED, steps_within
from lse.errors import StopRequested

ShouldStop = Callable[[], bool]

#: genome kind -> "module:class" of its trainer (the builders are in lse.nn.genomes.BUILDERS)
TRAINERS: dict[str, str] = {
    "dna": "lse.runners.trainer:TorchTrainer",
    "cortex": "lse.runners.cortex:CortexTrainer",  # seed 002
    "layerlist": "lse.runners.ea4cnn_trainer:EA4CNNTrainer",  # seed 001
    "fixed-net": "lse.runners.weights:WeightTrainer",  # seed 003
    "autoencoder": "lse.runners.autoencoder:AutoencoderTrainer",  # seed 000
}


def make_trainer(kind: str, options: WorkerOptions) -> "Trainer":
    """The trainer of genome kind ``kind`` (imported on first use: torch only in workers)."""
    target = TRAINERS.get(kind)
    if target is None:
        raise ValueError(f"no trainer for genome kind {kind!r} (known: {', '.join(TRAINERS)})")
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)(options)


@dataclass
class ChildResult:
    """What training one child produced; everything the record needs."""

    val_accuracy: float | None  # None (or ignored) when failed_reason is set
    failed_reason: str | None = None
    state_dict: dict | None = None  # weights to publish (None for a failed child)
    inheritance: dict | None = None  # {"kept", "reinitialised", "by_parent"}; None: initial child
    flops: dict | None = None  # {"train_per_batch", "eval_per_batch", "total"} (section 3.5)
    params: int | None = None
    steps: int = 0
    examples: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # further measurements the algorithm's objectives use


class Trainer(Protocol):
    """Turns a DNA (and its parent's weights) into a trained, evaluated child.

    ``prepare`` is called once per worker process (load the data set there); ``input_channels``
    is valid after it.  ``train_child`` builds ``child.dna``, inherits what ``child.provenance``
    names from ``parent_states`` (parent id -> weights; empty: nothing is inherited), trains it
    as ``recipe`` says and evaluates it on the validation split.  It must poll ``should_stop`` and let
    :class:`~lse.errors.StopRequested` propagate; any other failure of the child is reported in
    ``ChildResult.failed_reason`` rather than raised.
    """

    input_channels: int

    def prepare(self, config: ExperimentConfig) -> None: ...

    def train_child(
        self,
        child: Child,
        parent_states: Mapping[str, dict],
        recipe: Recipe,
        *,
        seed: int,
        should_stop: ShouldStop,
    ) -> ChildResult: ...


@dataclass
class Extra:
    """What a hook adds to a child's result: metrics for the objectives, details for the record,
    evaluation passes to count in its FLOPs, or a reason the child failed."""

    metrics: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    evaluations: int = 0
    failed_reason: str | None = None


class TorchTrainer:
    """The template trainer, and the classifier trainer of the paper's DNA: lse.nn.genomes (build,
    FLOPs), lse.nn.inherit and lse.nn.train on one device."""

    #: train in the channels_last layout (faster convolutions; off for seed 002's masked kernels)
    channels_last = True

    def __init__(self, options: WorkerOptions) -> None:
        self.options = options
        self.config: ExperimentConfig | None = None
        self.dataset: Any = None
        self.device: Any = None
        self.input_channels = 1

    def prepare(self, config: ExperimentConfig) -> None:
        import torch

        from lse.nn.data import load_dataset
        from lse.nn.train import resolve_device, set_threads

        set_threads(self.options.threads)
        dev = resolve_device(self.options.device)
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                from lse.errors import ConfigError

                raise ConfigError("--device cuda but no CUDA device is visible", "use --device cpu or auto")
            dev = torch.device("cuda", self.options.gpu_index or 0)
            torch.cuda.set_device(dev)
        self.device = dev
        self.config = config
        # Loaded once per process; every child trains on the same tensors (section 3.4).
        self.dataset = load_dataset(
            config.dataset, config.data_dir, validation_size=config.validation_size, seed=config.seed, device=dev,
            flip=config.flip, image=config.image_options(),
        )
        self.input_channels = self.dataset.input_shape[0]
        self.input_shape = tuple(self.dataset.input_shape)

    # -- hooks -------------------------------------------------------------------------------
    def sources(self, child: Child, parent_states: Mapping[str, dict]) -> tuple[dict, Any]:
        """The weights the child inherits from, and the provenance saying which tensor comes from
        where (default: its parents' weights, as its variation planned)."""
        return dict(parent_states), child.provenance

    def build(self, child: Child):
        from lse.nn.genomes import build

        ds = self.dataset
        return build(child.genome, child.dna, ds.input_shape, ds.num_classes)

    def count_flops(self, child: Child, batch_size: int):
        from lse.nn.genomes import flops

        ds = self.dataset
        return flops(child.genome, child.dna, ds.input_shape, ds.num_classes, batch_size, self.config.eval_batch_size)

    def before_training(self, model, child: Child, inheritance: dict) -> Extra:
        """After inheritance, before training (seed 002 evaluates offspring here)."""
        return Extra()

    def after_training(self, model, child: Child, trained) -> Extra:
        """After a successful training and validation (seed 001 adds its fixed-point accuracy)."""
        return Extra()

    def steps(self, child: Child, recipe: Recipe, batch_size: int) -> int:
        """Training steps: the recipe's, or its epochs over its share of the training split, or
        the experiment's; none for a child that is only evaluated."""
        if recipe.optimizer == "none" or child.details.get("evaluate_only"):
            return 0
        if recipe.epochs is not None:
            return max(1, math.ceil(recipe.epochs * self.dataset.train_x.shape[0] * recipe.data_fraction / batch_size))
        return recipe.steps if recipe.steps is not None else self.config.steps

    # -- the skeleton ------------------------------------------------------------------------
    def train_child(self, child, parent_states, recipe, *, seed, should_stop) -> ChildResult:
        import torch

        from lse.nn.inherit import inherit
        from lse.nn.train import train

        cfg, ds = self.config, self.dataset
        assert cfg is not None and ds is not None, "prepare() first"
        batch = recipe.batch_size or cfg.batch_size
        steps = self.steps(child, recipe, batch)
        # milliseconds of each part of this child's cost but the training itself (docs/GPU.md)
        clock, timings = time.perf_counter, {}
        try:
            t = clock()
            fc = self.count_flops(child, batch)
            timings["flops_ms"] = (clock() - t) * 1e3
            budgeted = steps_within(steps, fc.train_per_batch, cfg.child_flops, cfg.min_child_steps)
            if budgeted is None:
                return ChildResult(None, f"{REFUSED}: {cfg.min_child_steps} steps would cost "
                                         f"{cfg.min_child_steps * fc.train_per_batch:.3g} FLOPs > child_flops "
                                         f"{cfg.child_flops:.3g}",  # what it would have cost; it spent nothing
                                   flops=fc.record(0, 0), params=fc.params)
            steps = budgeted
            t = clock()
            torch.manual_seed(seed)  # model initialisation; train() seeds batches and augmentation
            model = self.build(child)
            timings["build_ms"] = (clock() - t) * 1e3
            t = clock()
            states, provenance = self.sources(child, parent_states)
            if states and provenance is not None:
                inheritance = inherit(model, states, provenance).summary()
            else:
                inheritance = {"kept": 0, "reinitialised": len(model.state_dict())}
            timings["inherit_ms"] = (clock() - t) * 1e3
            before = self.before_training(model, child, inheritance)
            if before.failed_reason:
                return ChildResult(None, before.failed_reason)
            params = sum(p.numel() for p in model.parameters())
            lr = recipe.learning_rate
            if lr is None:
                lr = getattr(child.dna, "learning_rate", cfg.initial_learning_rate)
            res = train(
                model, ds, learning_rate=lr, steps=steps, batch_size=batch,
                momentum=cfg.momentum if recipe.momentum is None else recipe.momentum,
                weight_decay=cfg.weight_decay if recipe.weight_decay is None else recipe.weight_decay,
                seed=seed, augment=cfg.augment if recipe.augment is None else recipe.augment,
                should_stop=should_stop, device=self.device, eval_batch_size=cfg.eval_batch_size,
                optimizer="sgd" if recipe.optimizer == "none" else recipe.optimizer,
                data_fraction=recipe.data_fraction, lr_schedule=recipe.lr_schedule or cfg.lr_schedule,
                precision=self.options.precision, cuda_graph=self.options.cuda_graph,
                channels_last=self.channels_last,
            )
            after = self.after_training(model, child, res) if res.failed_reason is None else Extra()
        except StopRequested:
            raise
        except torch.OutOfMemoryError as e:
            return ChildResult(None, f"out of memory: {str(e).splitlines()[0]}")
        ok = res.failed_reason is None
        n_eval = math.ceil(ds.val_x.shape[0] / cfg.eval_batch_size) if ok else 0
        n_eval += before.evaluations + after.evaluations
        t = clock()
        state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()} if ok else None
        timings["to_host_ms"] = (clock() - t) * 1e3
        return ChildResult(
            val_accuracy=res.val_accuracy if ok else None,
            failed_reason=res.failed_reason,
            state_dict=state,
            inheritance=inheritance,
            flops=fc.record(res.steps, n_eval),
            params=params,
            steps=res.steps,
            examples=res.examples,
            train_seconds=res.train_seconds,
            eval_seconds=res.eval_seconds,
            extra={"device": str(self.device), "graphed": res.graphed,
                   "timings": {k: round(v, 3) for k, v in timings.items()}, **before.details, **after.details},
            metrics={**before.metrics, **after.metrics} if ok else {},
        )
