"""The trainer of seed 000's autoencoders (lse.runners.trainer.Trainer): build the genome's
autoencoder, inherit by layer id, train on the MSE, measure compression and reconstruction on
the validation split.  The data set, device and threads are TorchTrainer's."""

from __future__ import annotations

import math

from lse.errors import StopRequested
from lse.runners.trainer import ChildResult, TorchTrainer


class AutoencoderTrainer(TorchTrainer):
    #: SGD learning rate of the MSE training when the recipe gives none
    learning_rate = 0.01

    def train_child(self, child, parent_states, recipe, *, seed, should_stop) -> ChildResult:
        import torch

        from lse.core.autoencoder import compression
        from lse.nn.autoencoder import autoencoder_flops, build_autoencoder, train_autoencoder
        from lse.nn.inherit import inherit

        cfg, ds, genome = self.config, self.dataset, child.dna
        assert cfg is not None and ds is not None, "prepare() first"
        steps = self.steps(child, recipe, cfg.batch_size)
        lr = recipe.learning_rate if recipe.learning_rate is not None else self.learning_rate
        try:
            torch.manual_seed(seed)
            model = build_autoencoder(genome, ds.input_shape)
            if parent_states and child.provenance is not None:
                inheritance = inherit(model, parent_states, child.provenance).summary()
            else:
                inheritance = {"kept": 0, "reinitialised": len(model.state_dict())}
            ft, fv, params = autoencoder_flops(genome, cfg.batch_size, cfg.eval_batch_size)
            res = train_autoencoder(model, ds, steps=steps, learning_rate=lr, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay, batch_size=cfg.batch_size, seed=seed,
                                    should_stop=should_stop, eval_batch_size=cfg.eval_batch_size, device=self.device)
        except StopRequested:
            raise
        except torch.OutOfMemoryError as e:
            return ChildResult(None, f"out of memory: {str(e).splitlines()[0]}")
        n_eval = math.ceil(ds.val_x.shape[0] / cfg.eval_batch_size) if res.failed_reason is None else 0
        ok = res.failed_reason is None
        return ChildResult(
            val_accuracy=None,
            failed_reason=res.failed_reason,
            state_dict={k: v.detach().to("cpu") for k, v in model.state_dict().items()} if ok else None,
            inheritance=inheritance,
            flops={"train_per_batch": ft, "eval_per_batch": fv, "total": ft * res.steps + fv * n_eval},
            params=params,
            steps=res.steps,
            examples=res.examples,
            train_seconds=res.train_seconds,
            eval_seconds=res.eval_seconds,
            extra={"device": str(self.device), "mse": res.mse, "pixel_accuracy": res.pixel_accuracy}
            if ok else {"device": str(self.device)},
            metrics={"compression": compression(genome), "reconstruction": res.reconstruction} if ok else {},
        )
