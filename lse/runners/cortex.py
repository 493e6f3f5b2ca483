"""The trainer of seed 002 (PyCortex): builds a layered genome, inherits each node's weights
through the child's provenance, measures the offspring's validation accuracy BEFORE training
(Table I's "offspring fitness before BP"), trains one epoch of Adadelta, batch 128, on a fresh
random 10% of the training split (no augmentation, no weight decay), and evaluates on the
validation split.  The test split is never touched."""

from __future__ import annotations

import math
import time

from lse.runners.worker import ChildResult, TorchTrainer


class CortexTrainer(TorchTrainer):
    def __init__(self, options, algorithm_options) -> None:
        super().__init__(options)
        self.algo = algorithm_options

    def train_child(self, child, parent_states, recipe, *, seed, should_stop) -> ChildResult:
        import torch

        from lse.core.cortex import bind
        from lse.errors import StopRequested
        from lse.nn.cortex import CortexNet
        from lse.nn.genomes import flops
        from lse.nn.inherit import inherit
        from lse.nn.train import evaluate, train

        cfg, ds, opts = self.config, self.dataset, self.algo
        assert cfg is not None and ds is not None, "prepare() first"
        n_train = ds.train_x.shape[0]
        steps = max(1, math.ceil(recipe.epochs * n_train * recipe.data_fraction / opts.batch_size))
        try:
            genome = bind(child.dna, ds.input_shape, ds.num_classes)
            fc = flops("cortex", genome, ds.input_shape, ds.num_classes, opts.batch_size, cfg.eval_batch_size)
            torch.manual_seed(seed)  # N(0, 0.1) initialisation of everything not inherited
            model = CortexNet(genome, ds.input_shape, ds.num_classes).to(self.device)
            before = None
            if parent_states and child.provenance is not None:
                inheritance = inherit(model, parent_states, child.provenance).summary()
                if child.details.get("step") == "offspring":
                    t0 = time.perf_counter()
                    before = evaluate(model, ds.val_x, ds.val_y, cfg.eval_batch_size, dataset=ds)
                    before_seconds = time.perf_counter() - t0
            else:
                inheritance = {"kept": 0, "reinitialised": len(model.state_dict())}
            params = sum(p.numel() for p in model.parameters())
            res = train(model, ds, learning_rate=opts.learning_rate, steps=steps, batch_size=opts.batch_size,
                        momentum=0.0, weight_decay=0.0, seed=seed, augment=False, should_stop=should_stop,
                        device=self.device, eval_batch_size=cfg.eval_batch_size, optimizer="adadelta",
                        data_fraction=recipe.data_fraction, channels_last=False)
        except StopRequested:
            raise
        except torch.OutOfMemoryError as e:
            return ChildResult(None, f"out of memory: {str(e).splitlines()[0]}")
        n_eval = math.ceil(ds.val_x.shape[0] / cfg.eval_batch_size) if res.failed_reason is None else 0
        state = None
        if res.failed_reason is None:
            state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
        extra = {"device": str(self.device), "input_shape": list(ds.input_shape), "classes": ds.num_classes}
        metrics = {}
        if before is not None:
            metrics["val_accuracy_before_training"] = float(before)
            extra["before_seconds"] = before_seconds
        return ChildResult(
            val_accuracy=None if res.failed_reason else res.val_accuracy, failed_reason=res.failed_reason,
            state_dict=state, inheritance=inheritance,
            flops={"train_per_batch": fc.train_per_batch, "eval_per_batch": fc.eval_per_batch,
                   "total": fc.cost(res.steps, n_eval + (n_eval if before is not None else 0))},
            params=params, steps=res.steps, examples=res.examples, train_seconds=res.train_seconds,
            eval_seconds=res.eval_seconds, extra=extra, metrics=metrics)
