"""The trainer of EA4CNN children (seed 001): the template trainer with the paper's recipe
(plain SGD with the child's learning-rate gene, batch 32, ``epochs`` passes over
``data_fraction`` of the training split, no augmentation; all in the algorithm's Recipe), plus
what the default one does not measure.

* Evaluation: validation accuracy in float AND with Q7.8 fixed-point multiplications
  (:mod:`lse.nn.fixedpoint`); both go in the record, the fitness uses the one the options name.
* Seeding (section 5.2): an initial child marked ``seed_weights`` is the seed network with its
  trained weights, evaluated without training (the paper evaluates its initial population,
  Algorithm 1 line 2); its own size becomes the reference of s_rel.
"""

from __future__ import annotations

from lse.errors import ConfigError
from lse.runners.trainer import Extra, TorchTrainer


class EA4CNNTrainer(TorchTrainer):
    def prepare(self, config) -> None:
        from lse.algorithms import make_algorithm

        super().prepare(config)
        side, want = self.dataset.input_shape[1], make_algorithm(config).input_side
        if side != want:
            raise ConfigError(f"ea4cnn: the images are {side}x{side} but the algorithm assumes {want}",
                              f"create the experiment with -o input_size={side}")

    def sources(self, child, parent_states):
        path = child.details.get("seed_weights")
        if not path:
            return super().sources(child, parent_states)
        from safetensors.torch import load_file

        from lse.core.provenance import Provenance

        try:
            return {"seed": load_file(path)}, Provenance(default="seed")
        except OSError as e:
            raise ValueError(f"cannot read the seed weights {path}: {e}") from None

    def before_training(self, model, child, inheritance) -> Extra:
        if child.details.get("seed_weights") and inheritance["reinitialised"]:
            return Extra(failed_reason=f"the seed weights do not fit the seed genome ({inheritance['reinitialised']} "
                                       "tensors missing or of another shape)")
        return Extra()

    def after_training(self, model, child, trained) -> Extra:
        from lse.nn.fixedpoint import fixed_point
        from lse.nn.train import evaluate

        ds = self.dataset
        with fixed_point(model):
            fx = evaluate(model, ds.val_x, ds.val_y, self.config.eval_batch_size, dataset=ds)
        # the reference of s_rel is the child's (details), read by the algorithm's objectives()
        return Extra(metrics={"val_accuracy_fx": fx},
                     evaluations=-(-ds.val_x.shape[0] // self.config.eval_batch_size))
