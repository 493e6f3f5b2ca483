"""The trainer of EA4CNN children (seed 001): the default trainer's pieces with the paper's
recipe, plus what the default one does not measure.

* Training: plain SGD (momentum and weight decay from the algorithm's options; TinyDNN's
  default is neither), the child's learning-rate gene, batch 32, ``epochs`` passes over
  ``data_fraction`` of the training split, no augmentation (the paper uses none).
* Evaluation: validation accuracy in float AND with Q7.8 fixed-point multiplications
  (:mod:`lse.nn.fixedpoint`); both go in the record, the fitness uses the one the options name.
* Seeding (section 5.2): an initial child marked ``seed_weights`` is the seed network with its
  trained weights, evaluated without training (the paper evaluates its initial population,
  Algorithm 1 line 2); its own size becomes the reference of s_rel.
"""

from __future__ import annotations

import math

from lse.errors import ConfigError, StopRequested
from lse.runners.worker import ChildResult, TorchTrainer


class EA4CNNTrainer(TorchTrainer):
    def __init__(self, options, algorithm) -> None:
        super().__init__(options)
        self.algorithm = algorithm

    def prepare(self, config) -> None:
        super().prepare(config)
        side = self.dataset.input_shape[1]
        if side != self.algorithm.input_side:
            raise ConfigError(f"ea4cnn: the images are {side}x{side} but the algorithm assumes {self.algorithm.input_side}",
                              f"create the experiment with -o input_size={side}")

    def train_child(self, child, parent_states, recipe, *, seed, should_stop) -> ChildResult:
        import torch
        from safetensors.torch import load_file

        from lse.core.provenance import Provenance
        from lse.nn.fixedpoint import fixed_point
        from lse.nn.genomes import build, flops
        from lse.nn.inherit import inherit
        from lse.nn.train import evaluate, train

        cfg, ds, o = self.config, self.dataset, self.algorithm.options
        states, prov = dict(parent_states), child.provenance
        if child.details.get("seed_weights"):
            try:
                states, prov = {"seed": load_file(child.details["seed_weights"])}, Provenance(default="seed")
            except OSError as e:
                return ChildResult(None, f"cannot read the seed weights {child.details['seed_weights']}: {e}")
        steps = 0 if child.details.get("evaluate_only") else math.ceil(
            recipe.epochs * ds.train_x.shape[0] * recipe.data_fraction / o.batch_size)
        try:
            fc = flops(child.genome, child.dna, ds.input_shape, ds.num_classes, o.batch_size, cfg.eval_batch_size)
            torch.manual_seed(seed)
            model = build(child.genome, child.dna, ds.input_shape, ds.num_classes)
            report = inherit(model, states, prov).summary() if states and prov is not None else \
                {"kept": 0, "reinitialised": len(model.state_dict())}
            if child.details.get("seed_weights") and report["reinitialised"]:
                return ChildResult(None, f"the seed weights do not fit the seed genome ({report['reinitialised']} "
                                         "tensors missing or of another shape)")
            params = sum(p.numel() for p in model.parameters())
            res = train(model, ds, learning_rate=child.dna.learning_rate, steps=steps, batch_size=o.batch_size,
                        momentum=o.momentum, weight_decay=o.weight_decay, seed=seed, augment=False,
                        should_stop=should_stop, device=self.device, eval_batch_size=cfg.eval_batch_size,
                        data_fraction=recipe.data_fraction)
            fx = None
            if res.failed_reason is None:
                with fixed_point(model):
                    fx = evaluate(model, ds.val_x, ds.val_y, cfg.eval_batch_size, dataset=ds)
        except StopRequested:
            raise
        except torch.OutOfMemoryError as e:
            return ChildResult(None, f"out of memory: {str(e).splitlines()[0]}")
        n_eval = 2 * math.ceil(ds.val_x.shape[0] / cfg.eval_batch_size) if res.failed_reason is None else 0
        ref = params if child.details.get("reference") == "self" else int(child.details.get("reference_params", 0))
        return ChildResult(
            val_accuracy=None if res.failed_reason else res.val_accuracy,
            failed_reason=res.failed_reason,
            state_dict=None if res.failed_reason else {k: v.detach().to("cpu") for k, v in model.state_dict().items()},
            inheritance=report,
            flops={"train_per_batch": fc.train_per_batch, "eval_per_batch": fc.eval_per_batch,
                   "total": fc.cost(res.steps, n_eval)},
            params=params, steps=res.steps, examples=res.examples, train_seconds=res.train_seconds,
            eval_seconds=res.eval_seconds, extra={"device": str(self.device)},
            metrics={} if fx is None else {"val_accuracy_fx": fx, "reference_params": float(ref)},
        )
