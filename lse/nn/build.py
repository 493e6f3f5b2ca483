"""DNA -> phenotype: a ``torch.nn.Module`` for a given input shape and class count.

* Each conv edge becomes ``edges.<edge id>`` (a ``Conv2d`` with "same" padding, odd filters
  of the rounded DNA sizes, stride ``2 ** round(stride_log2)``); each bn_relu vertex becomes
  ``vertices.<vertex id>.bn`` (``BatchNorm2d``, then ReLU); global average pooling over the
  OUTPUT vertex feeds ``classifier`` (``Linear``).  Names derive from the stable DNA ids, so
  a child inherits its parent's tensors by name (section 3.6, :mod:`lse.nn.inherit`), e.g.
  ``edges.e7.weight``, ``vertices.v3.bn.running_mean``, ``classifier.weight``.
* Where edges meet at a vertex their outputs are SUMMED, then the vertex's activation is
  applied.  The primary (non-skip) edge fixes the vertex's shape; each skip is reshaped to it
  by zeroth-order interpolation of the spatial size and truncation / zero-padding of the
  channels, as in He et al. 2016 (section 3.2).  Zeroth order here means: the rows and
  columns the backbone's strided convolutions centre on (0, s, 2s, ...), a strided slice.
  ``F.interpolate(mode="nearest")`` picks others (7 -> 4: rows 0, 1, 3, 5 against the
  stride-2 centres 0, 2, 4, 6; 28 -> 4: 0, 7, 14, 21 against 0, 8, 16, 24).
* Shapes are resolved once, at build time, for ``input_shape``; the forward pass is plain
  ops (convolution, batch-norm, slicing, padding), fine with
  ``channels_last`` and without ``torch.compile`` (NOTES.md: compiling cost more than it saved).
* Spatial size never collapses: with odd filters and padding ``k // 2`` a convolution maps
  H to ``floor((H - 1) / s) + 1 >= 1``; strides larger than the map are clamped to it (same
  output, saner convolution).

Weights are initialised as in He et al. 2015 (Kaiming normal, fan-in); biases zero.  Seed
torch before building for reproducible weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lse.core.dna import DNA


class VertexActivation(nn.Module):
    """Batch-norm then ReLU, applied at a vertex after its inputs are summed."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(x))


class _Step:
    """How one non-input vertex is computed (resolved at build time)."""

    __slots__ = ("vertex", "src", "edge", "skips")

    def __init__(self, vertex: str, src: str, edge: str | None,
                 skips: list[tuple[str, tuple[int, int, int], tuple[int, int]]]):
        self.vertex = vertex  # vertex id
        self.src = src  # source vertex of the primary edge
        self.edge = edge  # conv edge id, None for identity
        self.skips = skips  # (source vertex, target (C, H, W), (row step, column step)) per skip


class Phenotype(nn.Module):
    """The network a DNA describes.  ``shapes`` maps vertex id -> (C, H, W)."""

    def __init__(self, dna: DNA, input_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        if len(input_shape) != 3 or min(input_shape) < 1 or num_classes < 1:
            raise ValueError(f"input_shape must be (C, H, W) of positive ints and num_classes >= 1, got {input_shape}, {num_classes}")
        self.dna = dna
        self.input_shape = tuple(int(x) for x in input_shape)
        self.num_classes = int(num_classes)
        self.input_id = dna.input_id
        self.output_id = dna.output_id
        self.edges = nn.ModuleDict()
        self.vertices = nn.ModuleDict()

        shapes: dict[str, tuple[int, int, int]] = {dna.input_id: self.input_shape}
        # Row j (column i) of a vertex is centred on input row j * grid[v][0] (column
        # i * grid[v][1]): the product of the strides on the backbone up to it.
        grid: dict[str, tuple[int, int]] = {dna.input_id: (1, 1)}
        steps: list[_Step] = []
        for e in dna.backbone_edges():
            c, h, w = shapes[e.src]
            gh, gw = grid[e.src]
            if e.kind == "conv":
                kh, kw = e.kernel()
                s = e.stride()
                sh, sw = min(s, h), min(s, w)  # a stride beyond the map gives 1 either way
                self.edges[e.id] = nn.Conv2d(c, e.channels(), (kh, kw), stride=(sh, sw), padding=(kh // 2, kw // 2))
                shape = (e.channels(), (h - 1) // sh + 1, (w - 1) // sw + 1)
                conv = e.id
                gh, gw = gh * sh, gw * sw
            else:
                shape, conv = (c, h, w), None
            shapes[e.dst] = shape
            grid[e.dst] = (gh, gw)
            skips = []
            for sk in dna.skips_into(e.dst):
                # the skip's source lies earlier on the backbone: its grid divides ours
                (ah, aw), (_, ha, wa) = grid[sk.src], shapes[sk.src]
                step = (gh // ah, gw // aw)
                assert (ha - 1) // step[0] + 1 == shape[1] and (wa - 1) // step[1] + 1 == shape[2], (sk.id, step)
                skips.append((sk.src, shape, step))
            steps.append(_Step(e.dst, e.src, conv, skips))
        for v in dna.vertices:
            if v.activation == "bn_relu":
                self.vertices[v.id] = VertexActivation(shapes[v.id][0])
        self.shapes = shapes
        self._steps = steps
        self.classifier = nn.Linear(shapes[dna.output_id][0], self.num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He et al. 2015 initialisation (the paper's reset-weights); BN to identity."""
        for conv in self.edges.values():
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        for act in self.vertices.values():
            act.bn.reset_parameters()
        self.classifier.reset_parameters()

    def _activate(self, vid: str, x: torch.Tensor) -> torch.Tensor:
        return self.vertices[vid](x) if vid in self.vertices else x

    @staticmethod
    def _reshape(x: torch.Tensor, target: tuple[int, int, int], step: tuple[int, int]) -> torch.Tensor:
        """A skip's activations to the primary's shape: every ``step``-th row and column (the
        points the backbone's strided convolutions centre on) for H, W, truncation or
        zero-padding for channels (He et al. 2016, option A)."""
        c, h, w = target
        if step != (1, 1):
            x = x[:, :, :: step[0], :: step[1]]  # (N, C, h, w): ceil(H / step) == h
        if x.shape[1] > c:
            x = x[:, :c]
        elif x.shape[1] < c:
            x = F.pad(x, (0, 0, 0, 0, 0, c - x.shape[1]))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, C, H, W) -> logits (N, classes)
        acts = {self.input_id: self._activate(self.input_id, x)}
        for step in self._steps:
            y = acts[step.src]
            if step.edge is not None:
                y = self.edges[step.edge](y)
            for src, target, grid_step in step.skips:
                y = y + self._reshape(acts[src], target, grid_step)  # the merge: summed, never dropped
            acts[step.vertex] = self._activate(step.vertex, y)
        pooled = acts[self.output_id].mean(dim=(2, 3))  # global average pooling: (N, C)
        return self.classifier(pooled)


def build_model(dna: DNA, input_shape: tuple[int, int, int], num_classes: int) -> Phenotype:
    """Build the phenotype of ``dna`` for inputs of shape (C, H, W) and ``num_classes``
    logits.  Build under ``with torch.device("meta"):`` for shape-only work (FLOP counts)."""
    return Phenotype(dna, input_shape, num_classes)
