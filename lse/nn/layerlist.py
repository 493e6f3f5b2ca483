"""Building EA4CNN layer lists (lse.core.layerlist) as torch modules.

Tensor names are stable across variation: ``layers.L<id>.conv.*`` and ``layers.L<id>.bn.*`` for
a convolution with layer id ``id`` (batch-norm + ReLU after every convolution, section 3.2),
``fc.*`` for the hidden FC layer (its width is a gene) and ``out.*`` for the classifier (the
softmax is in the loss).  Weights start "close to zero" as the paper's TinyDNN networks do:
torch's default (Kaiming-uniform) initialisation.
"""

from __future__ import annotations

import torch
from torch import nn

from lse.core.layerlist import Conv, LayerList, fits, sides


class LayerListNet(nn.Module):
    def __init__(self, genome: LayerList, input_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        c, h, w = input_shape
        if h != w:
            raise ValueError(f"EA4CNN networks take square images; got {h}x{w}")
        if not fits(genome, h):
            raise ValueError(f"the layer list shrinks a {h}x{h} image below one pixel: {sides(genome, h)}")
        self.layers = nn.ModuleDict()
        self.order: list[str] = []
        for layer in genome.layers:
            key = f"L{layer.id}"
            if isinstance(layer, Conv):
                block = nn.Module()
                block.conv = nn.Conv2d(c, layer.filters, layer.kernel, layer.stride, layer.padding)
                block.bn = nn.BatchNorm2d(layer.filters)
                self.layers[key] = block
                c = layer.filters
            else:
                pool = nn.MaxPool2d if layer.mode == "max" else nn.AvgPool2d
                self.layers[key] = pool(layer.size, layer.stride)
            self.order.append(key)
        side = sides(genome, h)[-1] if genome.layers else h
        self.fc = nn.Linear(c * side * side, genome.fc_width)
        self.out = nn.Linear(genome.fc_width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for key in self.order:
            m = self.layers[key]
            x = torch.relu(m.bn(m.conv(x))) if hasattr(m, "conv") else m(x)
        return self.out(torch.relu(self.fc(torch.flatten(x, 1))))


def build_layerlist(genome: LayerList, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """The phenotype of ``genome`` (the builder lse.nn.genomes registers for kind "layerlist")."""
    return LayerListNet(genome, tuple(input_shape), num_classes)
