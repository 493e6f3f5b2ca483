"""The trainer of seed 002 (PyCortex): builds a layered genome, inherits each node's weights
through the child's provenance, measures the offspring's validation accuracy BEFORE training
(Table I's "offspring fitness before BP"), then trains as the algorithm's recipe says (one
epoch of Adadelta, batch 128, on a fresh random 10% of the training split, no augmentation, no
weight decay) and evaluates on the validation split.  The test split is never touched."""

from __future__ import annotations

import time

from lse.runners.trainer import Extra, TorchTrainer


class CortexTrainer(TorchTrainer):
    channels_last = False  # the masked per-kernel convolutions

    def _bound(self, child):
        from lse.core.cortex import bind

        return bind(child.dna, self.dataset.input_shape, self.dataset.num_classes)

    def build(self, child):
        from lse.nn.cortex import CortexNet

        ds = self.dataset
        return CortexNet(self._bound(child), ds.input_shape, ds.num_classes)  # N(0, 0.1) where not inherited

    def count_flops(self, child, batch_size):
        from lse.nn.genomes import flops

        ds = self.dataset
        return flops("cortex", self._bound(child), ds.input_shape, ds.num_classes, batch_size, self.config.eval_batch_size)

    def before_training(self, model, child, inheritance) -> Extra:
        ds = self.dataset
        extra = Extra(details={"input_shape": list(ds.input_shape), "classes": ds.num_classes})
        if child.details.get("step") == "offspring" and child.provenance is not None:
            from lse.nn.train import evaluate

            t0 = time.perf_counter()
            before = evaluate(model.to(self.device), ds.val_x, ds.val_y, self.config.eval_batch_size, dataset=ds)
            extra.metrics["val_accuracy_before_training"] = float(before)
            extra.details["before_seconds"] = time.perf_counter() - t0
            extra.evaluations = -(-ds.val_x.shape[0] // self.config.eval_batch_size)
        return extra
