"""Seed 003's fixed nets in torch (the pure description is :mod:`lse.core.fixednet`).

Tensor names are stable (``conv1.weight`` ... ``dense2.weight``): an individual's weights file
holds exactly these, and the genetic operators address filters and neurons as rows of them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lse.core.fixednet import FixedNet, TensorShape, layers, tensor_shapes

#: Keras' glorot_normal draws from a normal truncated at two standard deviations, rescaled so the
#: truncated distribution keeps the variance 2 / (fan_in + fan_out): stddev / this constant.
_TRUNCATED_STD = 0.87962566103423978


def glorot_std(t: TensorShape) -> float:
    """Standard deviation of the (untruncated) normal behind Keras' glorot_normal for ``t``."""
    return math.sqrt(2.0 / (t.fan_in + t.fan_out)) / _TRUNCATED_STD


def glorot_normal(t: TensorShape, generator: torch.Generator | None = None, leading: tuple[int, ...] = ()) -> torch.Tensor:
    """A fresh tensor of shape ``leading + t.shape`` from the Glorot-normal initialisation
    (section 4.1.1); ``leading`` (N,): N draws, the first equal to a draw without it."""
    std = glorot_std(t)
    out = torch.empty((*leading, *t.shape))
    nn.init.trunc_normal_(out, 0.0, std, -2 * std, 2 * std, generator=generator)
    return out


class FixedCNN(nn.Module):
    """Convolutions ("same" padding, ReLU, 2x2 pooling where the table has it), flatten, dense
    layers with ReLU between them; logits out.  No biases."""

    def __init__(self, genome: FixedNet, input_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        self.genome = genome
        self.shapes = tensor_shapes(genome.net, tuple(input_shape), num_classes)  # validates the input size
        self.plan = layers(genome.net, num_classes)
        channels = input_shape[0]
        for layer, t in zip(self.plan, self.shapes):
            if layer.kind == "conv":
                # "same" padding as Keras does it: an even kernel gets its extra row/column at
                # the end (explicit F.pad: torch's padding="same" copies the input for that)
                mod: nn.Module = nn.Conv2d(channels, layer.out, layer.kernel, bias=False)
                channels = layer.out
            else:
                mod = nn.Linear(t.row_size, layer.out, bias=False)
            setattr(self, layer.name, mod)
        with torch.no_grad():
            for layer, t in zip(self.plan, self.shapes):
                getattr(self, layer.name).weight.copy_(glorot_normal(t))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dense = [lay for lay in self.plan if lay.kind == "dense"]
        for layer in self.plan:
            if layer.kind == "conv":
                lo = (layer.kernel - 1) // 2
                hi = layer.kernel - 1 - lo
                x = torch.relu(getattr(self, layer.name)(nn.functional.pad(x, (lo, hi, lo, hi))))
                if layer.pool == "max":
                    x = nn.functional.max_pool2d(x, 2)
                elif layer.pool == "avg":
                    x = nn.functional.avg_pool2d(x, 2)
            else:
                if x.dim() > 2:
                    x = x.flatten(1)
                x = getattr(self, layer.name)(x)
                if layer is not dense[-1]:
                    x = torch.relu(x)
        return x


def build_fixed_net(genome: FixedNet, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """The builder of genome kind "fixed-net" (lse.nn.genomes.BUILDERS)."""
    return FixedCNN(genome, input_shape, num_classes)


def initial_state(genome: FixedNet, input_shape: tuple[int, int, int], num_classes: int, seed: int) -> dict:
    """The Glorot-normal weights of an initial individual, a function of ``seed`` only."""
    g = torch.Generator().manual_seed(seed)
    return {t.name: glorot_normal(t, g) for t in tensor_shapes(genome.net, tuple(input_shape), num_classes)}
