"""The layer-list genome of EA4CNN (seed 001, section 3.2): a header and a list of layers.

    header: learning rate (a gene), the width of the hidden fully connected layer (a gene)
    body:   convolutions (kernel, filters, stride, padding), each followed by BN + ReLU,
            and pooling layers (max | avg, size, stride), in any order
    head:   flatten -> FC(fc_width) + ReLU -> FC(classes) -> softmax   (not in the body)

The paper's head is "a flattening layer and a fully connected layer, followed by a softmax"
whose number of neurons is a gene (MO5; 50 for MNIST, 70 for CIFAR-10 in its Table 1).  A
single FC layer with a softmax has as many neurons as classes, so the width gene only makes
sense for a hidden FC layer before the classifier: that is the reading taken here.

Every layer has a stable ``id`` (from the monotonic ``next_id``): the torch builder
(:mod:`lse.nn.layerlist`) names its tensors ``layers.L<id>.conv.*`` / ``layers.L<id>.bn.*``,
and the head ``fc.*`` / ``out.*``, so weights follow a layer through mutation and crossover.
:func:`provenance` says where each child tensor comes from, with the paper's repair: the
overlapping part of a tensor whose shape changed is copied, superfluous weights are cut off,
missing ones keep their fresh initialisation (section 3.4).

Pure: no torch, no filesystem.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lse.core.datasets import STANDARD
from lse.core.provenance import Provenance, TensorSource

#: (input side, classes) of the data sets lse reads; an experiment may override the side
#: (tests use small synthetic images under a real data set's name)
DATASET_SHAPES: dict[str, tuple[int, int]] = {d.name: (d.shape[1], d.classes) for d in STANDARD.values()}

KERNELS = (1, 3, 5, 7)


class Conv(BaseModel):
    """A convolution (always followed by batch-norm and ReLU)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["conv"] = "conv"
    id: int = Field(ge=0)
    kernel: int = Field(ge=1, le=7, description="square kernel side")
    filters: int = Field(ge=1, le=1024, description="output channels")
    stride: int = Field(1, ge=1, le=4)
    padding: int = Field(0, ge=0, le=3, description="zero padding on each side (at most kernel // 2)")

    @model_validator(mode="after")
    def _padding_fits(self) -> "Conv":
        if self.padding > self.kernel // 2:
            raise ValueError(f"padding {self.padding} > kernel {self.kernel} // 2")
        return self


class Pool(BaseModel):
    """A pooling layer (no weights)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["pool"] = "pool"
    id: int = Field(ge=0)
    mode: Literal["max", "avg"] = "max"
    size: int = Field(ge=2, le=8, description="square window side")
    stride: int = Field(ge=1, le=8)


Layer = Annotated[Union[Conv, Pool], Field(discriminator="kind")]


class LayerList(BaseModel):
    """One EA4CNN chromosome (the age lives in the record: it is not part of the network)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: int = Field(1, ge=1, le=1)
    layers: tuple[Layer, ...] = ()
    fc_width: int = Field(ge=1, le=8192, description="neurons of the hidden FC layer (MO5)")
    learning_rate: float = Field(gt=0.0, le=10.0, description="SGD learning rate (MO6)")
    next_id: int = Field(ge=0, description="the next layer id (monotonic: ids are never reused)")

    @model_validator(mode="after")
    def _ids(self) -> "LayerList":
        ids = [layer.id for layer in self.layers]
        if len(set(ids)) != len(ids):
            raise ValueError(f"layer ids repeat: {ids}")
        if ids and max(ids) >= self.next_id:
            raise ValueError(f"next_id {self.next_id} not above every layer id {ids}")
        return self

    # -- derived --------------------------------------------------------------------------
    def convs(self) -> list[Conv]:
        return [layer for layer in self.layers if isinstance(layer, Conv)]

    def layer(self, layer_id: int) -> Conv | Pool:
        for layer in self.layers:
            if layer.id == layer_id:
                return layer
        raise KeyError(layer_id)

    def with_layers(self, layers, **changes) -> "LayerList":
        layers = tuple(layers)
        next_id = max([self.next_id, *(x.id + 1 for x in layers)])
        return LayerList(layers=layers, fc_width=changes.get("fc_width", self.fc_width),
                         learning_rate=changes.get("learning_rate", self.learning_rate),
                         next_id=changes.get("next_id", next_id))


def out_side(layer: Conv | Pool, side: int) -> int:
    """Spatial side after ``layer`` (floor division, as torch computes it)."""
    if isinstance(layer, Conv):
        return (side + 2 * layer.padding - layer.kernel) // layer.stride + 1
    return (side - layer.size) // layer.stride + 1


def sides(genome: LayerList, input_side: int) -> list[int]:
    """The spatial side after each layer (may reach <= 0: then the genome does not fit)."""
    out, s = [], input_side
    for layer in genome.layers:
        s = out_side(layer, s) if s > 0 else 0
        out.append(s)
    return out


def fits(genome: LayerList, input_side: int) -> bool:
    """Whether every layer has an input at least as large as its window."""
    return all(s >= 1 for s in sides(genome, input_side))


def param_count(genome: LayerList, input_channels: int, input_side: int, num_classes: int) -> int:
    """Trainable parameters of the phenotype (convolution weights and biases, batch-norm scale
    and shift, both FC layers); the number the size-aware fitness divides."""
    c, n = input_channels, 0
    for layer in genome.layers:
        if isinstance(layer, Conv):
            n += layer.kernel * layer.kernel * c * layer.filters + layer.filters + 2 * layer.filters
            c = layer.filters
    side = sides(genome, input_side)[-1] if genome.layers else input_side
    flat = c * max(side, 0) ** 2
    return n + flat * genome.fc_width + genome.fc_width + genome.fc_width * num_classes + num_classes


def depth(genome: LayerList) -> int:
    """Layers as Table 2 counts them here: the body's layers plus the two FC layers."""
    return len(genome.layers) + 2


# -- random layers (initial networks, MO2) ----------------------------------------------------


def random_layer(rng: random.Random, layer_id: int, *, max_filters: int, max_pool: int) -> Conv | Pool:
    """A layer with random hyperparameters (Table 1's bounds: filters <= max_filters, pooling
    window <= max_pool); convolutions twice as likely as pooling."""
    if rng.random() < 2 / 3:
        k = rng.choice(KERNELS[:3])  # 1, 3, 5 for new layers; MO4 may reach 7
        return Conv(id=layer_id, kernel=k, filters=rng.randint(1, max_filters), stride=1 if rng.random() < 0.8 else 2,
                    padding=rng.choice((0, k // 2)))
    size = rng.randint(2, max(2, max_pool))
    return Pool(id=layer_id, mode=rng.choice(("max", "avg")), size=size, stride=rng.randint(1, size))


def random_genome(rng: random.Random, *, input_side: int, min_layers: int = 1, max_layers: int = 8,
                  max_filters: int = 12, max_pool: int = 4, fc_width: int = 50,
                  learning_rate: float = 0.1) -> LayerList:
    """An initial network of the paper (section 4): 1 to 8 random layers that fit the input."""
    n = rng.randint(min_layers, max_layers)
    layers: list[Conv | Pool] = []
    side = input_side
    for i in range(n):
        for _ in range(20):  # a layer whose window exceeds what is left is drawn again
            layer = random_layer(rng, i, max_filters=max_filters, max_pool=max_pool)
            if out_side(layer, side) >= 1:
                layers.append(layer)
                side = out_side(layer, side)
                break
    ids = [Conv(id=j, **{k: v for k, v in x.model_dump().items() if k != "id"}) if isinstance(x, Conv)
           else Pool(id=j, **{k: v for k, v in x.model_dump().items() if k != "id"}) for j, x in enumerate(layers)]
    return LayerList(layers=tuple(ids), fc_width=fc_width, learning_rate=learning_rate, next_id=len(ids))


# -- weight inheritance with repair -----------------------------------------------------------

#: where a child's piece comes from: (parent id, the piece's id in that parent, its genome)
Origin = tuple[str, int, LayerList]


def provenance(child: LayerList, origins: Mapping[int, Origin], head: tuple[str, LayerList] | None, *,
               num_classes: int, reset: frozenset[str] = frozenset()) -> Provenance:
    """The inheritance plan of ``child``: each convolution (and its batch-norm) from the layer
    ``origins[id]`` names, the FC head from ``head``'s parent, with the paper's repair.

    Same shape: the tensor is copied whole.  Otherwise the overlapping rows (output channels or
    neurons) and, of each row, the overlapping corner of its fan-in are copied (superfluous
    weights cut off); what is missing keeps its fresh initialisation.  ``reset`` names child
    pieces ("L<id>", "fc", "out") that inherit nothing (MO1)."""
    sources: dict[str, TensorSource] = {}

    def rows(name: str, parent: str, src_name: str, n_child: int, n_parent: int) -> None:
        # rows = output channels / neurons; of each row the overlapping corner of its fan-in
        # (all of it when the shapes match)
        n = min(n_child, n_parent)
        sources[name] = TensorSource(parent, src_name, rows=tuple(range(n)), into=tuple(range(n)))

    for layer in child.convs():
        key = f"L{layer.id}"
        if key in reset or layer.id not in origins:
            continue
        parent, pid, pgenome = origins[layer.id]
        try:
            src = pgenome.layer(pid)
        except KeyError:
            continue
        if not isinstance(src, Conv):
            continue
        for part, names in (("conv", ("weight", "bias")), ("bn", ("weight", "bias", "running_mean", "running_var"))):
            for t in names:
                rows(f"layers.{key}.{part}.{t}", parent, f"layers.L{pid}.{part}.{t}", layer.filters, src.filters)
        sources[f"layers.{key}.bn.num_batches_tracked"] = TensorSource(parent, f"layers.L{pid}.bn.num_batches_tracked")
    if head is not None:
        parent, pgenome = head
        if "fc" not in reset:
            for t in ("weight", "bias"):
                rows(f"fc.{t}", parent, f"fc.{t}", child.fc_width, pgenome.fc_width)
        if "out" not in reset:
            for t in ("weight", "bias"):
                rows(f"out.{t}", parent, f"out.{t}", num_classes, num_classes)
    return Provenance(default=None, sources=sources)


# -- rendering, genome kind -------------------------------------------------------------------


def render_line(genome: LayerList, num_classes: int | None = None) -> str:
    """``C3x12/1p1 > Pmax2/2 > ... > FC50 > FC10 (lr 0.1)``."""
    tokens = []
    for layer in genome.layers:
        if isinstance(layer, Conv):
            tokens.append(f"C{layer.kernel}x{layer.filters}/{layer.stride}p{layer.padding}")
        else:
            tokens.append(f"P{layer.mode}{layer.size}/{layer.stride}")
    tokens += [f"FC{genome.fc_width}", f"FC{num_classes}" if num_classes is not None else "FC"]
    return " > ".join(tokens) + f" (lr {genome.learning_rate:.3g})"


def _genome_kind():
    from lse.core.genomes import GenomeKind

    return GenomeKind(name="layerlist", parse=LayerList.model_validate, dump=lambda g: g.model_dump(mode="json"),
                      render=render_line, depth=depth)


#: EA4CNN's layer list as a genome kind (lse.core.genomes)
GENOME = _genome_kind()

__all__ = ["Conv", "DATASET_SHAPES", "GENOME", "LayerList", "Pool", "depth", "fits", "param_count", "provenance",
           "random_genome", "random_layer", "render_line", "sides"]
