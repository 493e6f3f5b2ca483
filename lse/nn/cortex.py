"""The PyCortex network in torch (seed 002): convolutions whose kernels each have their own odd
shape, then fully connected layers, then the output layer; ReLU between layers; no pooling.

A convolution layer keeps every kernel as its own parameter of its own shape (1, C, h, w), as
PyCortex does (section III-E: "keeping the kernels as separate tensors and stacking them into a
single weight tensor ... right before evaluation").  :meth:`CortexConv.weight` stacks them
centre-aligned into the layer's largest shape by zero padding: that is the *mask* -- outside
its own shape a kernel's weight is exactly zero, and no gradient can reach it there, because no
parameter exists there.  Padding floor(largest / 2) keeps the response at the input's size before
the stride, so a kernel stacked in a larger layer computes exactly the convolution of its own
shape (tests/test_cortex_nn.py proves it).

Weights are N(0, std) (0.1 in the paper), biases 0.  Tensor names are stable by position
(lse.core.cortex.tensor_names): ``conv.<i>.kernels.<j>``, ``conv.<i>.bias``, ``fc.<i>.weight``,
``fc.<i>.bias``, ``out.weight``, ``out.bias``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lse.core.cortex import CortexGenome, bind, conv_shapes

#: N(0, 0.1): the paper's initialisation of every connection, initial or added by a mutation
INIT_STD = 0.1


class CortexConv(nn.Module):
    def __init__(self, in_channels: int, kernels: tuple[tuple[int, int], ...], stride: tuple[int, int],
                 std: float = INIT_STD) -> None:
        super().__init__()
        self.kernels = nn.ParameterList(
            [nn.Parameter(torch.randn(1, in_channels, h, w) * std) for h, w in kernels])
        self.bias = nn.Parameter(torch.zeros(len(kernels)))
        self.shape = (max(h for h, _ in kernels), max(w for _, w in kernels))
        H, W = self.shape
        # F.pad order: (left, right, top, bottom); odd extents, so both sides pad equally
        self.pads = [((W - w) // 2, (W - w) // 2, (H - h) // 2, (H - h) // 2) for h, w in kernels]
        self.uniform = all(p == (0, 0, 0, 0) for p in self.pads)
        self.stride = tuple(stride)
        self.padding = (H // 2, W // 2)

    def weight(self) -> torch.Tensor:
        """The stacked, centre-aligned, masked weight (kernels, C, H, W)."""
        if self.uniform:
            return torch.cat(list(self.kernels))
        return torch.cat([F.pad(k, p) for k, p in zip(self.kernels, self.pads)])

    def mask(self) -> torch.Tensor:
        """1 inside each kernel's own shape, 0 outside (kernels, 1, H, W)."""
        m = torch.zeros(len(self.pads), 1, *self.shape)
        for j, (l, r, t, b) in enumerate(self.pads):
            m[j, 0, t:self.shape[0] - b, l:self.shape[1] - r] = 1
        return m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight(), self.bias, self.stride, self.padding)


class CortexNet(nn.Module):
    def __init__(self, genome: CortexGenome, input_shape: tuple[int, int, int], num_classes: int,
                 std: float = INIT_STD) -> None:
        super().__init__()
        shapes = conv_shapes(genome, input_shape)
        self.conv = nn.ModuleList(
            [CortexConv(shapes[i][0], layer.kernels, layer.stride, std) for i, layer in enumerate(genome.conv)])
        c, h, w = shapes[-1]
        width = c * h * w
        self.fc = nn.ModuleList()
        for n in genome.fc:
            self.fc.append(_linear(width, n, std))
            width = n
        self.out = _linear(width, num_classes, std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.conv:
            x = F.relu(layer(x))
        x = x.flatten(1)
        for layer in self.fc:
            x = F.relu(layer(x))
        return self.out(x)


def _linear(fan_in: int, nodes: int, std: float) -> nn.Linear:
    lin = nn.Linear(fan_in, nodes)
    with torch.no_grad():
        lin.weight.normal_(0.0, std)
        lin.bias.zero_()
    return lin


def build_cortex(genome: CortexGenome, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """The model of ``genome`` on this data set (the genome is bound to it first: an initial
    genome drawn before the data set was known gets its kernels fitted, lse.core.cortex.bind)."""
    g = bind(genome, input_shape, num_classes)
    return CortexNet(g, tuple(input_shape), num_classes)
