"""The convolutional autoencoder genome of seed 000 (two-step evolution), its 9 mutations and
its validity rule.

Only the encoder is evolved: a sequence of convolutions and max-pools.  The decoder is derived
from it (:mod:`lse.nn.autoencoder`): the encoder mirrored, each pool becoming an up-sampling
and each convolution a transposed convolution of the same kernel and stride, the last one
giving back the input's channels (paper, Figure 1).

Validity (paper, section 3.1): a genome is valid only if its encoder's output z is smaller than
its input x (|z| < |x|, i.e. compression c = 1 - |z|/|x| > 0) and every layer fits the feature
map it receives.  A mutation whose result is invalid is drawn again (:func:`mutate`).

The initial individual (decided here; the paper does not say): ONE 3x3 convolution, stride 2,
with 2 x (input channels) filters.  Its code has (2C) x ceil(H/2) x ceil(W/2) values: half of
the input for even H and W (c = 0.5 on Fashion-MNIST and CIFAR-10), so it already compresses,
as the validity rule demands, and leaves evolution room either way.

Pure: no torch, no filesystem.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lse.core.mutations import MutationRecord

#: the paper's 9 autoencoder mutations (section 3.1), in its order
AE_MUTATION_NAMES: tuple[str, ...] = (
    "identity",
    "insert_convolution",
    "remove_convolution",
    "alter_stride",
    "insert_pool",
    "remove_pool",
    "alter_filters",
    "alter_filter_size",
    "alter_pool_size",
)

MAX_FILTERS = 256
MAX_KERNEL = 7
MAX_STRIDE = 3
MAX_POOL = 4
MAX_LAYERS = 16
MUTATION_TRIES = 50  # an invalid result is drawn again this many times before giving up


class AELayer(BaseModel):
    """One encoder layer.  ``id`` is stable for the layer's whole life: tensor names are made
    from it, so weight inheritance (section 3.6) finds the same layer in a child."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^L[0-9]{1,9}$")
    kind: Literal["conv", "pool"]
    filters: int | None = Field(None, ge=1, le=MAX_FILTERS, description="conv: output channels")
    kernel: tuple[int, int] | None = Field(None, description="conv: (kh, kw), each 1..7")
    stride: int | None = Field(None, ge=1, le=MAX_STRIDE, description="conv: stride in both dimensions")
    size: int | None = Field(None, ge=2, le=MAX_POOL, description="pool: window = stride (non-overlapping)")

    @model_validator(mode="after")
    def _fields_of_kind(self) -> "AELayer":
        if self.kind == "conv":
            if self.filters is None or self.kernel is None or self.stride is None or self.size is not None:
                raise ValueError(f"conv layer {self.id} needs filters, kernel, stride (and no size)")
            if not all(1 <= k <= MAX_KERNEL for k in self.kernel):
                raise ValueError(f"conv layer {self.id}: kernel {self.kernel} outside 1..{MAX_KERNEL}")
        elif self.size is None or self.filters is not None or self.kernel is not None or self.stride is not None:
            raise ValueError(f"pool layer {self.id} needs size only")
        return self

    def padding(self) -> tuple[int, int]:
        """'same'-style padding of a conv: (k - 1) // 2 per dimension."""
        assert self.kernel is not None
        return ((self.kernel[0] - 1) // 2, (self.kernel[1] - 1) // 2)


class AutoencoderGenome(BaseModel):
    """An encoder (the decoder is its mirror) for inputs of ``input_shape`` (C, H, W)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = 1
    input_shape: tuple[int, int, int]
    layers: tuple[AELayer, ...]
    next_id: int = Field(ge=0, description="monotonic counter for new layer ids")

    @model_validator(mode="after")
    def _valid(self) -> "AutoencoderGenome":
        problem = invalid_reason(self)
        if problem is not None:
            raise ValueError(problem)
        return self

    def to_json(self) -> str:
        return self.model_dump_json()

    def convs(self) -> list[AELayer]:
        return [layer for layer in self.layers if layer.kind == "conv"]

    def pools(self) -> list[AELayer]:
        return [layer for layer in self.layers if layer.kind == "pool"]


# ---------------------------------------------------------------------------------- shapes
def layer_output(layer: AELayer, shape: tuple[int, int, int]) -> tuple[int, int, int] | None:
    """(C, H, W) after ``layer`` on a ``shape`` input; None if it does not fit."""
    c, h, w = shape
    if layer.kind == "pool":
        s = layer.size or 2
        if h < s or w < s:
            return None
        return (c, h // s, w // s)
    (kh, kw), (ph, pw), s = layer.kernel, layer.padding(), layer.stride  # type: ignore[misc]
    oh, ow = (h + 2 * ph - kh) // s + 1, (w + 2 * pw - kw) // s + 1
    if oh < 1 or ow < 1:
        return None
    return (layer.filters or 1, oh, ow)


def shapes(input_shape: tuple[int, int, int], layers) -> list[tuple[int, int, int]] | None:
    """The feature-map shape before the first layer and after each; None if a layer does not
    fit."""
    out = [tuple(input_shape)]
    for layer in layers:
        nxt = layer_output(layer, out[-1])
        if nxt is None:
            return None
        out.append(nxt)
    return out  # type: ignore[return-value]


def code_shape(genome: AutoencoderGenome) -> tuple[int, int, int]:
    """(C, H, W) of the code z."""
    s = shapes(genome.input_shape, genome.layers)
    assert s is not None
    return s[-1]


def _size(shape) -> int:
    c, h, w = shape
    return c * h * w


def compression(genome: AutoencoderGenome) -> float:
    """c = 1 - |z| / |x| (the paper's compression ratio: 0 keeps every value, 1 would reduce
    a sample to nothing)."""
    return 1.0 - _size(code_shape(genome)) / _size(genome.input_shape)


def invalid_reason(genome: AutoencoderGenome) -> str | None:
    """Why ``genome`` is invalid, or None: at least one convolution, at most MAX_LAYERS
    layers, unique ids below ``next_id``, every layer fits, and the code is smaller than the
    input (the paper's rule)."""
    if not any(layer.kind == "conv" for layer in genome.layers):
        return "the encoder needs at least one convolution"
    if len(genome.layers) > MAX_LAYERS:
        return f"the encoder has {len(genome.layers)} layers (at most {MAX_LAYERS})"
    ids = [layer.id for layer in genome.layers]
    if len(set(ids)) != len(ids):
        return f"duplicate layer ids {ids}"
    if any(int(i[1:]) >= genome.next_id for i in ids):
        return f"next_id {genome.next_id} is not above every layer id"
    s = shapes(genome.input_shape, genome.layers)
    if s is None:
        return f"a layer does not fit its input (input {genome.input_shape})"
    if _size(s[-1]) >= _size(genome.input_shape):
        return f"the code {s[-1]} is not smaller than the input {tuple(genome.input_shape)} (no compression)"
    return None


def initial_autoencoder(input_shape: tuple[int, int, int]) -> AutoencoderGenome:
    """One 3x3 convolution, stride 2, 2C filters: compression 0.5 for even H, W (module doc)."""
    c = int(input_shape[0])
    conv = AELayer(id="L0", kind="conv", filters=min(2 * c, MAX_FILTERS), kernel=(3, 3), stride=2)
    return AutoencoderGenome(input_shape=tuple(int(v) for v in input_shape), layers=(conv,), next_id=1)


# ---------------------------------------------------------------------------------- mutations
def _new_conv(lid: str, filters: int) -> AELayer:
    """An inserted convolution: 3x3, stride 1, as many filters as its input has channels."""
    return AELayer(id=lid, kind="conv", filters=filters, kernel=(3, 3), stride=1)


def _apply(name: str, g: AutoencoderGenome, rng: random.Random) -> tuple[list[AELayer], int, dict, list[str]] | None:
    """(layers, next_id, details, changed layer ids) of one mutation, or None when it does not
    apply to ``g`` (e.g. no pool to remove)."""
    layers, nid = list(g.layers), g.next_id
    convs = [i for i, layer in enumerate(layers) if layer.kind == "conv"]
    pools = [i for i, layer in enumerate(layers) if layer.kind == "pool"]
    if name == "identity":
        return layers, nid, {}, []
    if name == "insert_convolution":
        at = rng.randrange(len(layers) + 1)
        before = shapes(g.input_shape, layers[:at])
        channels = before[-1][0] if before else g.input_shape[0]
        layer = _new_conv(f"L{nid}", channels)  # same channels as its input (section 3.2)
        layers.insert(at, layer)
        return layers, nid + 1, {"at": at, "layer": layer.id}, [layer.id]
    if name == "remove_convolution":
        if len(convs) < 2:
            return None
        i = rng.choice(convs)
        gone = layers.pop(i)
        return layers, nid, {"layer": gone.id}, [gone.id]
    if name == "alter_stride":
        i = rng.choice(convs)
        old = layers[i].stride or 1
        new = old + rng.choice((-1, 1))
        if not 1 <= new <= MAX_STRIDE:
            return None
        layers[i] = layers[i].model_copy(update={"stride": new})
        return layers, nid, {"layer": layers[i].id, "from": old, "to": new}, [layers[i].id]
    if name == "insert_pool":
        at = rng.randrange(len(layers) + 1)
        layer = AELayer(id=f"L{nid}", kind="pool", size=2)  # the paper: initial pool size 2x2
        layers.insert(at, layer)
        return layers, nid + 1, {"at": at, "layer": layer.id}, [layer.id]
    if name == "remove_pool":
        if not pools:
            return None
        gone = layers.pop(rng.choice(pools))
        return layers, nid, {"layer": gone.id}, [gone.id]
    if name == "alter_filters":
        i = rng.choice(convs)
        old = layers[i].filters or 1
        new = max(1, min(MAX_FILTERS, round(old * rng.choice((0.5, 2.0)))))  # halve or double
        if new == old:
            return None
        layers[i] = layers[i].model_copy(update={"filters": new})
        return layers, nid, {"layer": layers[i].id, "from": old, "to": new}, [layers[i].id]
    if name == "alter_filter_size":
        i = rng.choice(convs)
        k = list(layers[i].kernel or (3, 3))
        dim = rng.randrange(2)  # the paper: ONE of the dimensions, +-1
        k[dim] += rng.choice((-1, 1))
        if not 1 <= k[dim] <= MAX_KERNEL:
            return None
        layers[i] = layers[i].model_copy(update={"kernel": tuple(k)})
        return layers, nid, {"layer": layers[i].id, "dim": dim, "to": list(k)}, [layers[i].id]
    if name == "alter_pool_size":
        if not pools:
            return None
        i = rng.choice(pools)
        old = layers[i].size or 2
        new = old + rng.choice((-1, 1))
        if not 2 <= new <= MAX_POOL:
            return None
        layers[i] = layers[i].model_copy(update={"size": new})
        return layers, nid, {"layer": layers[i].id, "from": old, "to": new}, [layers[i].id]
    raise ValueError(f"unknown autoencoder mutation {name!r}; valid: {', '.join(AE_MUTATION_NAMES)}")


def mutate(g: AutoencoderGenome, rng: random.Random, probabilities: dict[str, float] | None = None,
           tries: int = MUTATION_TRIES) -> tuple[AutoencoderGenome, MutationRecord]:
    """One of the 9 mutations, drawn uniformly (or by ``probabilities``), whose result is
    valid; an inapplicable or invalid draw is redrawn, up to ``tries`` times (then ValueError:
    the worker gives up on this child and tries again).  ``changed_edges`` of the record are
    the layer ids whose tensors must not be inherited."""
    names = list(AE_MUTATION_NAMES)
    weights = [1.0] * len(names) if probabilities is None else [float(probabilities.get(n, 0.0)) for n in names]
    if sum(weights) <= 0:
        raise ValueError(f"mutation probabilities give no weight to any of {', '.join(names)}")
    for _ in range(tries):
        name = rng.choices(names, weights)[0]
        out = _apply(name, g, rng)
        if out is None:
            continue
        layers, nid, details, changed = out
        child = AutoencoderGenome.model_construct(input_shape=g.input_shape, layers=tuple(layers), next_id=nid,
                                                  schema_version=g.schema_version)
        if invalid_reason(child) is not None:
            continue
        return (AutoencoderGenome.model_validate(child.model_dump(mode="json")),
                MutationRecord(name=name, details=details, changed_edges=changed))
    raise ValueError(f"no valid autoencoder mutation of {render(g)} in {tries} draws")


# ---------------------------------------------------------------------------------- rendering
def render(g: AutoencoderGenome, num_classes: int | None = None) -> str:
    """One line, e.g. ``C3x3/2x2 > P2 | z 2x14x14 (c=0.50)``."""
    tokens = []
    for layer in g.layers:
        if layer.kind == "conv":
            kh, kw = layer.kernel or (0, 0)
            tokens.append(f"C{kh}x{kw}/{layer.stride}x{layer.filters}")
        else:
            tokens.append(f"P{layer.size}")
    s = shapes(g.input_shape, g.layers)
    z = "x".join(map(str, s[-1])) if s else "?"
    c = f"{compression(g):.2f}" if s else "?"
    return " > ".join(tokens) + f" | z {z} (c={c})"


def _genome_kind():
    from lse.core.genomes import GenomeKind

    return GenomeKind(
        name="autoencoder",
        parse=AutoencoderGenome.model_validate,
        dump=lambda g: g.model_dump(mode="json"),
        render=render,
        depth=lambda g: len(g.convs()),
    )


#: the autoencoder as a genome kind (lse.core.genomes)
GENOME = _genome_kind()
