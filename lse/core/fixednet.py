"""Fixed architectures whose WEIGHTS are evolved (seed 003, tables 2 and 3), as a genome kind.

Seed 003 keeps the architecture fixed and evolves the weights, so the genome is small: which
net.  The weights live in each individual's ``weights.safetensors`` as for every other kind; the
torch builder is :func:`lse.nn.fixednet.build_fixed_net`.  No biases, ReLU, Glorot-normal
initialisation (section 4.1.1), "same" padding (the tables keep the spatial size through every
convolution).

The MNIST net of Table 2.  The table's output shapes and its parameter counts disagree: it
prints conv2d_2 with 40 output channels, but 3,200 parameters over a 40-channel input with the
2x2 kernels of the other layers is 20 filters, which is also what max_pooling2d_2 prints
(7, 7, 20) and what conv2d_3's 400 = 5 x (2x2x20) needs.  We follow the parameters (issue 16):

    conv1  40 filters 2x2x1    160     max pool 2  28 -> 14
    conv2  20 filters 2x2x40   3,200   max pool 2  14 -> 7
    conv3   5 filters 2x2x20   400     max pool 2   7 -> 3
    conv4   1 filter  2x2x5    20      flatten 3x3x1 = 9
    dense1 40 neurons x 9      360
    dense2 10 neurons x 40     400     total 4,540 parameters

so the Accordion chromosome has 40+20+5+1 = 66 filter genes and 40+10 = 50 neuron genes:
116 genes, not the paper's 136 (which counts conv2 as 40 filters).

The LeNet of Table 3 (CIFAR-10): 6, 16, 120 filters of 5x5, average pooling, dense 120, 84, 10.
Its parameter counts are those of a GREY 32x32 input (conv1: 150 = 6 x 5x5x1; a colour input
would give 450): built on the data set's own input, it has 291,870 parameters on 32x32x1 and
292,170 on 32x32x3.  Its Accordion chromosome has 6+16+120 = 142 filter and 120+84+10 = 214
neuron genes: 356, as the paper says.

Pure: no torch, no filesystem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

NET_NAMES = ("mnist-table2", "lenet-table3")


@dataclass(frozen=True)
class Layer:
    """One weight tensor of a fixed net.  ``section``: "features" (convolutions: a gene of the
    Accordion encoding is one filter) or "classifier" (dense: one neuron's incoming weights)."""

    name: str  # the module's attribute; its tensor is "<name>.weight"
    kind: Literal["conv", "dense"]
    out: int  # filters / neurons: the rows of the weight tensor (dimension 0)
    kernel: int = 0  # convolutions: square kernel size
    pool: Literal["max", "avg", "none"] = "none"  # 2x2 pooling after the layer (convolutions)

    @property
    def section(self) -> str:
        return "features" if self.kind == "conv" else "classifier"

    @property
    def tensor(self) -> str:
        return f"{self.name}.weight"


#: the layers of each net, in order (the last dense layer is sized by the data set's classes)
NETS: dict[str, tuple[Layer, ...]] = {
    "mnist-table2": (
        Layer("conv1", "conv", 40, 2, "max"),
        Layer("conv2", "conv", 20, 2, "max"),
        Layer("conv3", "conv", 5, 2, "max"),
        Layer("conv4", "conv", 1, 2, "none"),
        Layer("dense1", "dense", 40),
        Layer("dense2", "dense", 10),
    ),
    "lenet-table3": (
        Layer("conv1", "conv", 6, 5, "avg"),
        Layer("conv2", "conv", 16, 5, "avg"),
        Layer("conv3", "conv", 120, 5, "avg"),
        Layer("dense1", "dense", 120),
        Layer("dense2", "dense", 84),
        Layer("dense3", "dense", 10),
    ),
}


class FixedNet(BaseModel):
    """The genome of seed 003: which fixed net (its weights are in the individual's weights file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    net: Literal["mnist-table2", "lenet-table3"] = Field(
        "mnist-table2", description="mnist-table2: Table 2 (4,540 parameters on 28x28x1); lenet-table3: Table 3")


@dataclass(frozen=True)
class TensorShape:
    """A weight tensor of a built net: ``rows`` genes of ``row_size`` scalars each in the
    Accordion encoding (dimension 0 is the output channel / neuron)."""

    name: str
    section: str
    rows: int
    row_size: int
    shape: tuple[int, ...]
    fan_in: int
    fan_out: int

    @property
    def size(self) -> int:
        return self.rows * self.row_size


def layers(net: str, num_classes: int) -> tuple[Layer, ...]:
    if net not in NETS:
        raise ValueError(f"unknown fixed net {net!r}; valid: {', '.join(NET_NAMES)}")
    out = list(NETS[net])
    last = out[-1]
    out[-1] = Layer(last.name, last.kind, num_classes)
    return tuple(out)


def tensor_shapes(net: str, input_shape: tuple[int, int, int], num_classes: int) -> tuple[TensorShape, ...]:
    """Every weight tensor of ``net`` built on ``input_shape`` (C, H, W): names, shapes, fans
    (Glorot's fan_in/fan_out as Keras counts them: kernel area x channels)."""
    channels, h, w = input_shape
    out: list[TensorShape] = []
    features = channels * h * w
    for layer in layers(net, num_classes):
        if layer.kind == "conv":
            area = layer.kernel * layer.kernel
            out.append(TensorShape(layer.tensor, layer.section, layer.out, area * channels,
                                   (layer.out, channels, layer.kernel, layer.kernel), area * channels, area * layer.out))
            channels = layer.out  # "same" padding keeps h, w
            if layer.pool != "none":
                h, w = h // 2, w // 2
            features = channels * h * w
        else:
            out.append(TensorShape(layer.tensor, layer.section, layer.out, features, (layer.out, features),
                                   features, layer.out))
            features = layer.out
    if h < 1 or w < 1:
        raise ValueError(f"{net} needs a larger input than {input_shape} (pooling leaves {h}x{w})")
    return tuple(out)


def parameter_count(net: str, input_shape: tuple[int, int, int], num_classes: int) -> int:
    return sum(t.size for t in tensor_shapes(net, input_shape, num_classes))


def render(genome: FixedNet, num_classes: int | None = None) -> str:
    names = [f"{lay.kind}{lay.out}" + (f"k{lay.kernel}" if lay.kind == "conv" else "")
             for lay in layers(genome.net, num_classes or 10)]
    return f"{genome.net}: " + " > ".join(names)


def _genome_kind():
    from lse.core.genomes import GenomeKind

    return GenomeKind(
        name="fixed-net",
        parse=FixedNet.model_validate,
        dump=lambda g: g.model_dump(mode="json"),
        render=render,
        depth=lambda g: sum(1 for lay in NETS[g.net] if lay.kind == "conv"),
    )


#: seed 003's genome kind (lse.core.genomes)
GENOME = _genome_kind()
