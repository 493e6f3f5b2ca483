"""Computation cost of an individual (paper, section 3.5).

``count_flops`` gives, for a DNA at an input shape, the FLOPs of one training batch ``F_t``
(forward + backward) and of one validation batch ``F_v`` (forward), so that an individual
costs ``F_t * N_t + F_v * N_v`` (:meth:`FlopCount.cost`), plus its parameter count.

How: ``torch.utils.flop_counter.FlopCounterMode`` (a maintained counter, rather than
hand-written formulas) around one forward + backward (cross-entropy loss) and one no-grad
forward of the phenotype, built on ``device="meta"``: shapes only, no data, tens of
milliseconds.  The counts equal those taken around the same passes on real tensors
(``tests/test_flops.py`` checks it on evolved DNAs).

Convention: one multiply-add = 2 FLOPs.  Counted: convolutions (forward; backward w.r.t.
the input where an input gradient is needed -- not for the first layer reading the data --
and w.r.t. the weights) and the classifier's matrix products (forward and backward).
NOT counted (like the paper's coarse estimate, these are small or constant in model size):
batch-norm, ReLU, bias additions and bias gradients, global pooling, the skip reshapes and
sums, the loss, the optimizer update and weight decay, data loading and augmentation,
input/output and memory copies.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lse.nn.build import build_model
from lse.core.dna import DNA


class FlopCount(BaseModel):
    """Per-batch FLOPs of one individual (2 FLOPs per multiply-add) and its parameters."""

    model_config = ConfigDict(frozen=True)

    train_per_batch: int = Field(description="F_t: forward + backward of one training batch")
    eval_per_batch: int = Field(description="F_v: forward of one validation batch")
    params: int = Field(description="trainable parameters")

    def cost(self, n_train_batches: int, n_eval_batches: int) -> int:
        """F_t * N_t + F_v * N_v (section 3.5)."""
        return self.train_per_batch * n_train_batches + self.eval_per_batch * n_eval_batches

    def record(self, n_train_batches: int, n_eval_batches: int) -> dict:
        """The FLOPs an individual's record keeps (lse.core.records.Flops): the per-batch counts
        and the cost of ``n_train_batches`` training and ``n_eval_batches`` validation batches."""
        return {"train_per_batch": self.train_per_batch, "eval_per_batch": self.eval_per_batch,
                "total": self.cost(n_train_batches, n_eval_batches)}


def measure_flops(
    model: nn.Module, input_shape: tuple[int, int, int], num_classes: int, batch_size: int,
    eval_batch_size: int | None = None, device: str | torch.device = "meta",
) -> tuple[int, int]:
    """(train FLOPs per batch, eval FLOPs per batch) counted around one forward+backward and
    one no-grad forward of ``model`` on zero inputs on ``device``.  Restores the model's
    train/eval mode; leaves gradients in ``.grad`` (callers pass a throwaway model)."""
    eval_batch_size = eval_batch_size or batch_size
    was_training = model.training
    x = torch.zeros((batch_size, *input_shape), device=device)
    y = torch.zeros(batch_size, dtype=torch.long, device=device)
    model.train()
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y % num_classes).backward()
    train = counter.get_total_flops()
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros((eval_batch_size, *input_shape), device=device))
    model.train(was_training)
    return int(train), int(counter.get_total_flops())


@lru_cache(maxsize=1024)
def _count(dna_json: str, input_shape: tuple[int, int, int], num_classes: int, batch_size: int, eval_batch_size: int) -> FlopCount:
    dna = DNA.from_json(dna_json)
    with torch.device("meta"):
        model = build_model(dna, input_shape, num_classes)
    train, evaluation = measure_flops(model, input_shape, num_classes, batch_size, eval_batch_size, device="meta")
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return FlopCount(train_per_batch=train, eval_per_batch=evaluation, params=params)


def count_flops(
    dna: DNA, input_shape: tuple[int, int, int], num_classes: int, batch_size: int, eval_batch_size: int | None = None
) -> FlopCount:
    """F_t, F_v and the parameter count of ``dna`` for inputs (C, H, W), ``num_classes``,
    training batches of ``batch_size`` and validation batches of ``eval_batch_size``
    (default: ``batch_size``).  Cached by the DNA's canonical JSON."""
    return _count(
        dna.to_json(), tuple(int(x) for x in input_shape), int(num_classes), int(batch_size),
        int(eval_batch_size or batch_size),
    )
