"""The trainer of seed 003's children: no gradient, the weights ARE the genome.

A child is assembled from its parents' weights by its gene plan (:mod:`lse.core.chromosome`
decides, :mod:`lse.nn.chromosome` carries it out), or drawn from the Glorot-normal initialisation
(an initial individual, seeded by ``init_seed`` and its index), then evaluated: one forward pass
over the validation split -- a fixed, seeded subset of the training split, of
``--validation-size`` images -- in batches of ``eval_batch_size`` (as large as memory allows: the
evaluation is the whole cost of a child).  With the algorithm's ``fitness_batch`` k, the fitness
is the accuracy on k training images drawn afresh for each child (the paper's iteration: one
batch of 32), and the validation accuracy is still measured and recorded, for reports.  The
test split is never read here.
"""

from __future__ import annotations

import math
import time

from lse.algorithms.base import Child, Recipe
from lse.core.chromosome import Variation, chromosome, derive_seed, plan_variation
from lse.core.fixednet import FixedNet, tensor_shapes
from lse.runners.trainer import ChildResult, TorchTrainer


def initial_seed(details: dict) -> int:
    """The seed of an initial individual's Glorot-normal weights, from its record's details
    (``init``: the experiment's init_seed and the individual's index, or a fresh draw)."""
    init = details.get("init", {})
    return derive_seed("init", init.get("seed", 0), init.get("index"), init.get("draw"))


class WeightTrainer(TorchTrainer):
    """:class:`~lse.runners.trainer.TorchTrainer`'s data loading and device; its own child."""

    def train_child(self, child: Child, parent_states, recipe: Recipe, *, seed: int, should_stop) -> ChildResult:
        import torch

        from lse.nn.chromosome import apply_plan
        from lse.nn.fixednet import build_fixed_net, initial_state
        from lse.nn.genomes import flops
        from lse.nn.train import evaluate

        cfg, ds = self.config, self.dataset
        assert cfg is not None and ds is not None, "prepare() first"
        genome = child.dna if isinstance(child.dna, FixedNet) else FixedNet.model_validate(child.dna)
        shapes = tensor_shapes(genome.net, ds.input_shape, ds.num_classes)
        t0 = time.perf_counter()
        extra: dict = {"device": str(self.device)}
        v = child.details.get("variation")
        if v is None:
            state = initial_state(genome, ds.input_shape, ds.num_classes, initial_seed(child.details))
            inheritance = None
        else:
            variation = Variation.model_validate(v)
            chrom = chromosome(shapes, variation.encoding)
            missing = [p for p in child.parents if p not in parent_states]
            if missing:
                return ChildResult(None, f"weights of parent(s) {', '.join(missing)} not given")
            plan = plan_variation(chrom, variation)
            noise_seed = variation.mutation_seed if variation.mutation_seed is not None else 0
            state = apply_plan(chrom, [parent_states[p] for p in child.parents], plan, seed=noise_seed,
                               filter_sigma=variation.filter_sigma)
            counts = plan.counts(chrom)
            extra["genes"] = counts
            by_parent = {child.parents[0]: counts["from_first"]}
            if len(child.parents) > 1:
                by_parent[child.parents[1]] = counts["from_second"]
            # kept: every tensor comes from the parents; by_parent counts GENES (the
            # chromosome's unit), not tensors
            inheritance = {"kept": len(shapes), "reinitialised": 0, "by_parent": by_parent}
        model = build_fixed_net(genome, ds.input_shape, ds.num_classes).to(self.device)
        model.load_state_dict(state, strict=True)
        if any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
            # the layout lse.nn.train evaluates in (and anyone re-evaluating a stored individual)
            model.to(memory_format=torch.channels_last)
        t1 = time.perf_counter()
        if should_stop():
            from lse.errors import StopRequested

            raise StopRequested("stop requested")
        metrics = {}
        k = child.details.get("fitness_batch")
        if k:  # the paper's iteration: the child is judged on one fresh batch of training images
            g = torch.Generator().manual_seed(derive_seed("fitness-batch", seed))
            idx = torch.randint(0, ds.train_x.shape[0], (int(k),), generator=g).to(ds.train_x.device)
            metrics["batch_accuracy"] = evaluate(model, ds.train_x[idx], ds.train_y[idx], cfg.eval_batch_size, dataset=ds)
        acc = evaluate(model, ds.val_x, ds.val_y, cfg.eval_batch_size, dataset=ds)
        t2 = time.perf_counter()
        if not all(math.isfinite(x) for x in (acc, *metrics.values())):
            return ChildResult(None, "non-finite accuracy")
        fc = flops("fixed-net", genome, ds.input_shape, ds.num_classes, cfg.batch_size, cfg.eval_batch_size)
        n_eval = math.ceil(ds.val_x.shape[0] / cfg.eval_batch_size)
        del torch
        return ChildResult(
            val_accuracy=acc,
            state_dict={k: t.detach().cpu() for k, t in model.state_dict().items()},
            inheritance=inheritance,
            flops=fc.record(0, n_eval),
            params=sum(t.size for t in shapes),
            train_seconds=t1 - t0,  # assembling the child (crossover, mutation): no gradient
            eval_seconds=t2 - t1,
            extra=extra,
            metrics=metrics,
        )
