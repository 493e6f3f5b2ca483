"""The PyCortex genome (seed 002): a layered network, convolutions first, then
fully connected layers, then the output layer; no pooling.

Every convolution *kernel* is a node with its own odd height and width (section III-E): the
kernels of a layer are stacked centre-aligned into the layer's largest shape, the padding is
floor(largest / 2) in each dimension, so the response has the input's size before the stride.
A fully connected node is a neuron with its fan-in.  Two networks are of one *species* when
they have the same number of layers of each type with the same number of nodes in each
(section III); the output layer is the same in every network and counts as a layer.

This module is the pure part: the genome, its statistics (the size-aware mutation weights of
section III-D, eqs. 3-6), the similarity of eq. 7-8, mutation and crossover (III-F) on a
:class:`Draft` that remembers where every node came from, and the :class:`Provenance` that
moves each node's trained weights (with its whole fan-in) into the child (Lamarckian
inheritance).  No torch, no filesystem; the torch side is :mod:`lse.nn.cortex`.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lse.core.provenance import Provenance, TensorSource

#: the mutation types of section III-D, each with its probability weighting (eqs. 3-6)
MUTATION_TYPES = ("layer", "node", "stride", "kernel")


class ConvLayer(BaseModel):
    """A convolution layer: one (height, width) per kernel, both odd, and a stride per dimension."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kernels: tuple[tuple[int, int], ...] = Field(min_length=1, description="(height, width) of each kernel, odd")
    stride: tuple[int, int] = Field((1, 1), description="(vertical, horizontal) stride, >= 1")

    @field_validator("kernels")
    @classmethod
    def _odd(cls, v):
        for h, w in v:
            if h < 1 or w < 1 or h % 2 == 0 or w % 2 == 0:
                raise ValueError(f"kernel {h}x{w}: heights and widths must be odd and >= 1")
        return v

    @field_validator("stride")
    @classmethod
    def _stride(cls, v):
        if min(v) < 1:
            raise ValueError(f"stride {v} must be >= 1 in each dimension")
        return v

    def padding(self) -> tuple[int, int]:
        """floor(largest kernel / 2) per dimension: the response keeps the input's size."""
        return (max(h for h, _ in self.kernels) // 2, max(w for _, w in self.kernels) // 2)


class CortexGenome(BaseModel):
    """A layered network.  ``input``/``classes`` are the data set's (C, H, W) and class count;
    an initial genome drawn before the data set was seen has them None until the trainer binds
    it (:func:`bind`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(1, ge=1, le=1)
    conv: tuple[ConvLayer, ...] = ()
    fc: tuple[int, ...] = Field((), description="node count of each hidden fully connected layer")
    input: tuple[int, int, int] | None = Field(None, description="(channels, height, width) of the input")
    classes: int | None = Field(None, ge=1, description="nodes of the output layer")

    @field_validator("fc")
    @classmethod
    def _fc(cls, v):
        if any(n < 1 for n in v):
            raise ValueError(f"fully connected layers need at least one node, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _fits(self):
        if self.input is not None:
            problem = fit_problem(self, self.input)
            if problem:
                raise ValueError(problem)
        return self

    def to_json(self) -> str:
        return self.model_dump_json()


# ------------------------------------------------------------------------------------------
# shapes and statistics


def conv_shapes(g: CortexGenome, input_shape: Sequence[int]) -> list[tuple[int, int, int]]:
    """(channels, height, width) entering each convolution layer, then leaving the last one."""
    c, h, w = input_shape
    out = [(c, h, w)]
    for layer in g.conv:
        sh, sw = layer.stride
        h, w = (h - 1) // sh + 1, (w - 1) // sw + 1  # padding keeps the size before the stride
        c = len(layer.kernels)
        out.append((c, h, w))
    return out


def kernel_fits(k: int, size: int) -> bool:
    """Section III-E: no kernel larger than half its input in a dimension (1 always fits)."""
    return k == 1 or k <= size / 2


def fit_problem(g: CortexGenome, input_shape: Sequence[int]) -> str | None:
    """Why ``g`` does not fit an input of ``input_shape``; None when it does."""
    shapes = conv_shapes(g, input_shape)
    for i, layer in enumerate(g.conv):
        _, h, w = shapes[i]
        for kh, kw in layer.kernels:
            if not (kernel_fits(kh, h) and kernel_fits(kw, w)):
                return f"conv layer {i}: kernel {kh}x{kw} is larger than half of its {h}x{w} input"
        if layer.stride[0] > h or layer.stride[1] > w:
            return f"conv layer {i}: stride {layer.stride} exceeds its {h}x{w} input"
    return None


def layer_sizes(g: CortexGenome, classes: int | None = None) -> list[int]:
    """Node count of every layer, convolutions, hidden fully connected, output."""
    return [len(layer.kernels) for layer in g.conv] + list(g.fc) + [classes or g.classes or 1]


def species_key(g: CortexGenome) -> str:
    """The species of section III: the node count of each layer, by type.  "c.f" is the
    minimal genome (the output layer on the input); "c4-2.f16": two convolution layers of 4
    and 2 kernels, one hidden fully connected layer of 16 nodes."""
    return "c" + "-".join(str(len(lay.kernels)) for lay in g.conv) + ".f" + "-".join(str(n) for n in g.fc)


def similarity(a: CortexGenome, b: CortexGenome) -> float:
    """Eq. 7: s = O / (N_i + N_j - O), O the total intersection of eq. 8: over layers of the same
    type aligned by their index, the smaller node count.  The output layers count (they always
    match), so two different minimal-ish networks are never 0/0."""
    overlap = sum(min(len(x.kernels), len(y.kernels)) for x, y in zip(a.conv, b.conv))
    overlap += sum(min(x, y) for x, y in zip(a.fc, b.fc))
    ca, cb = a.classes or 1, b.classes or 1
    overlap += min(ca, cb)
    na, nb = sum(layer_sizes(a, ca)), sum(layer_sizes(b, cb))
    return overlap / (na + nb - overlap)


def fan_ins(g: CortexGenome, input_shape: Sequence[int]) -> list[list[int]]:
    """Connections into each node, layer by layer (a kernel: channels x height x width)."""
    shapes = conv_shapes(g, input_shape)
    out = [[shapes[i][0] * kh * kw for kh, kw in layer.kernels] for i, layer in enumerate(g.conv)]
    c, h, w = shapes[-1]
    width = c * h * w
    for n in g.fc:
        out.append([width] * n)
        width = n
    out.append([width] * (g.classes or 1))
    return out


@dataclass(frozen=True)
class NetworkStats:
    """The statistics of section III-D, of one network."""

    mu_c: float  # mean connections per node
    mu_n: float  # mean node count per layer
    sigma_n: float  # standard deviation of the node count per layer (population)
    n_cl: int  # convolution layers
    mu_o: float  # mean output nodes (positions) per convolution layer
    a_k: float  # mean kernel area


def network_stats(g: CortexGenome, input_shape: Sequence[int]) -> NetworkStats:
    nodes = [n for layer in fan_ins(g, input_shape) for n in layer]
    sizes = layer_sizes(g)
    shapes = conv_shapes(g, input_shape)
    areas = [kh * kw for layer in g.conv for kh, kw in layer.kernels]
    return NetworkStats(
        mu_c=statistics.fmean(nodes),
        mu_n=statistics.fmean(sizes),
        sigma_n=statistics.pstdev(sizes),
        n_cl=len(g.conv),
        mu_o=statistics.fmean(h * w for _, h, w in shapes[1:]) if g.conv else 0.0,
        a_k=statistics.fmean(areas) if areas else 0.0,
    )


def mutation_weights(g: CortexGenome, input_shape: Sequence[int]) -> dict[str, float]:
    """Eqs. 3-6, unnormalised, each inversely proportional to the connections the mutation
    would touch:  p_layer ~ 1/(mu_c (mu_n + sigma_n)),  p_node ~ 1/mu_c,
    p_stride ~ 1/(N_cl mu_o),  p_kernel ~ 1/(N_n A_k)  with N_n the mean node count per layer
    (what the paper's experiments used, its footnote 3).  Stride and kernel weigh 0 without a
    convolution; a node mutation needs a hidden layer."""
    s = network_stats(g, input_shape)
    hidden = bool(g.conv or g.fc)
    return {
        "layer": 1.0 / (s.mu_c * (s.mu_n + s.sigma_n)),
        "node": 1.0 / s.mu_c if hidden else 0.0,
        "stride": 1.0 / (s.n_cl * s.mu_o) if s.n_cl else 0.0,
        "kernel": 1.0 / (s.mu_n * s.a_k) if s.n_cl else 0.0,
    }


def bind(g: CortexGenome, input_shape: Sequence[int], classes: int) -> CortexGenome:
    """``g`` for a data set of ``input_shape`` and ``classes``: kernels that do not fit are
    shrunk (by 2 at a time, staying odd) and strides clamped to the input.  Identity for a
    genome already bound to that data set."""
    shape = tuple(int(x) for x in input_shape)
    if g.input == shape and g.classes == classes:
        return g
    layers, (h, w) = [], shape[1:3]
    for layer in g.conv:
        ks = tuple((_shrink_to(kh, h), _shrink_to(kw, w)) for kh, kw in layer.kernels)
        stride = (min(layer.stride[0], h), min(layer.stride[1], w))
        layers.append(ConvLayer(kernels=ks, stride=stride))
        h, w = (h - 1) // stride[0] + 1, (w - 1) // stride[1] + 1
    return CortexGenome(conv=tuple(layers), fc=g.fc, input=shape, classes=classes)


def _shrink_to(k: int, size: int) -> int:
    while not kernel_fits(k, size):
        k -= 2
    return k


# ------------------------------------------------------------------------------------------
# drafts: a child under construction, and where each of its nodes comes from


@dataclass(frozen=True)
class Origin:
    """A node of parent ``parent`` (index into the parents): layer ``kind`` ("conv", "fc",
    "out") number ``layer`` of that kind, node ``node``."""

    parent: int
    kind: str
    layer: int
    node: int


@dataclass
class DraftLayer:
    kind: str  # "conv", "fc" or "out"
    origins: list[Origin | None]  # one per node; None: a new node (fresh N(0, 0.1) weights)
    kernels: list[tuple[int, int]] = field(default_factory=list)  # conv only, one per node
    stride: tuple[int, int] = (1, 1)


@dataclass
class Draft:
    layers: list[DraftLayer]  # convolutions, then fully connected, then the output layer
    input: tuple[int, int, int] | None
    classes: int | None

    def genome(self) -> CortexGenome:
        conv = tuple(ConvLayer(kernels=tuple(lay.kernels), stride=lay.stride) for lay in self.layers if lay.kind == "conv")
        fc = tuple(len(lay.origins) for lay in self.layers if lay.kind == "fc")
        return CortexGenome(conv=conv, fc=fc, input=self.input, classes=self.classes)

    def copy(self) -> "Draft":
        return Draft([replace(lay, origins=list(lay.origins), kernels=list(lay.kernels)) for lay in self.layers],
                     self.input, self.classes)


def draft_of(g: CortexGenome, parent: int = 0) -> Draft:
    """An exact copy of ``g`` whose every node comes from parent ``parent``."""
    layers = [DraftLayer("conv", [Origin(parent, "conv", i, j) for j in range(len(lay.kernels))], list(lay.kernels),
                         lay.stride) for i, lay in enumerate(g.conv)]
    layers += [DraftLayer("fc", [Origin(parent, "fc", i, j) for j in range(n)]) for i, n in enumerate(g.fc)]
    layers.append(DraftLayer("out", [Origin(parent, "out", 0, j) for j in range(g.classes or 1)]))
    return Draft(layers, g.input, g.classes)


def crossover(a: CortexGenome, fa: float, b: CortexGenome, fb: float, rng: random.Random) -> Draft:
    """Section III-F and II-B: layers of each type aligned by index, nodes of aligned layers by
    position.  A node both parents have comes from parent 0 with probability fa / (fa + fb)
    (relative fitness); a layer's stride likewise.  Nodes and layers only one parent has (the
    larger one's extras; none within a species) are inherited with probability equal to that
    parent's relative fitness.  The result may not fit the input (another parent's stride):
    :func:`repair` it."""
    p_a = fa / (fa + fb) if fa + fb > 0 else 0.5
    fit = (fa, fb)
    layers: list[DraftLayer] = []
    for kind in ("conv", "fc", "out"):
        la, lb = _layers(a, kind), _layers(b, kind)
        for i in range(max(len(la), len(lb))):
            if i < len(la) and i < len(lb):
                (na, ka, sa), (nb, kb, sb) = la[i], lb[i]
                origins, kernels = [], []
                for j in range(max(na, nb)):
                    if j < na and j < nb:
                        p = 0 if rng.random() < p_a else 1
                    else:
                        p = 0 if j < na else 1
                        if rng.random() >= fit[p]:
                            continue
                    origins.append(Origin(p, kind, i, j))
                    if kind == "conv":
                        kernels.append((ka if p == 0 else kb)[j])
                stride = sa if rng.random() < p_a else sb
                layers.append(DraftLayer(kind, origins, kernels, stride))
            else:
                p = 0 if i < len(la) else 1
                n, ks, st = (la if p == 0 else lb)[i]
                if rng.random() < fit[p]:
                    layers.append(DraftLayer(kind, [Origin(p, kind, i, j) for j in range(n)], list(ks), st))
    return Draft(layers, a.input, a.classes)


def _layers(g: CortexGenome, kind: str) -> list[tuple[int, list[tuple[int, int]], tuple[int, int]]]:
    if kind == "conv":
        return [(len(lay.kernels), list(lay.kernels), lay.stride) for lay in g.conv]
    if kind == "fc":
        return [(n, [], (1, 1)) for n in g.fc]
    return [(g.classes or 1, [], (1, 1))]


def repair(d: Draft) -> Draft:
    """Shrink kernels that no longer fit their input (a stride taken from the other parent),
    keeping their centre; clamp strides to the input."""
    if d.input is None:
        return d
    _, h, w = d.input
    for lay in d.layers:
        if lay.kind != "conv":
            continue
        lay.kernels = [(_shrink_to(kh, h), _shrink_to(kw, w)) for kh, kw in lay.kernels]
        lay.stride = (min(lay.stride[0], h), min(lay.stride[1], w))
        h, w = (h - 1) // lay.stride[0] + 1, (w - 1) // lay.stride[1] + 1
    return d


# ------------------------------------------------------------------------------------------
# mutations


def sample_kernel(rng: random.Random, h_in: int, w_in: int) -> tuple[int, int]:
    """Eq. 1: a kernel shape with probability weighting exp(-height * width), over the odd
    shapes that fit the input (mostly 1x1: 3x3 weighs exp(-9))."""
    hs = [k for k in range(1, h_in + 1, 2) if kernel_fits(k, h_in)]
    ws = [k for k in range(1, w_in + 1, 2) if kernel_fits(k, w_in)]
    shapes = [(kh, kw) for kh in hs for kw in ws]
    return rng.choices(shapes, weights=[math.exp(-kh * kw) for kh, kw in shapes])[0]


def sample_stride(rng: random.Random, h_in: int, w_in: int, largest: int = 3) -> tuple[int, int]:
    """Eq. 1 applied to the stride (section III-A): weighting exp(-s_h * s_w)."""
    shapes = [(a, b) for a in range(1, min(largest, h_in) + 1) for b in range(1, min(largest, w_in) + 1)]
    return rng.choices(shapes, weights=[math.exp(-a * b) for a, b in shapes])[0]


@dataclass(frozen=True)
class Mutation:
    """What :func:`mutate` did: ``name`` (e.g. "add_node"), ``details``, and ``failed`` (why
    nothing changed: the species cap, a kernel that cannot grow...)."""

    name: str
    details: dict
    failed: str | None = None


def mutate(d: Draft, rng: random.Random, *, new_layer_nodes: int = 8,
           allowed: Callable[[str], bool] = lambda _key: True,
           weights: dict[str, float] | None = None) -> tuple[Draft, Mutation]:
    """One mutation of section III-D/E, its type drawn with the size-aware weights of eqs. 3-6
    (or ``weights``).  A structural mutation (layer, node) whose species ``allowed`` refuses
    (the species cap) fails, as in the paper's runs at the cap.  Returns a new draft (the input
    is untouched) and what happened; a failed mutation returns an unchanged copy."""
    g = d.genome()
    shape = d.input or (1, 28, 28)
    w = dict(weights) if weights is not None else mutation_weights(g, shape)
    applies = {"layer": True, "node": bool(g.conv or g.fc), "stride": bool(g.conv), "kernel": bool(g.conv)}
    kinds = [k for k in MUTATION_TYPES if w.get(k, 0.0) > 0 and applies[k]]
    if not kinds:
        return d.copy(), Mutation("none", {}, "no mutation applies")
    kind = rng.choices(kinds, weights=[w[k] for k in kinds])[0]
    out = d.copy()
    shapes = conv_shapes(g, shape)
    hidden = [i for i, lay in enumerate(out.layers) if lay.kind != "out"]
    if kind == "layer":
        if hidden and rng.random() < 0.5:
            i = rng.choice(hidden)
            removed = out.layers.pop(i)
            m = Mutation("remove_layer", {"kind": removed.kind, "index": _kind_index(out, i, removed.kind),
                                          "nodes": len(removed.origins)})
        else:
            n_conv = sum(lay.kind == "conv" for lay in out.layers)
            n_fc = sum(lay.kind == "fc" for lay in out.layers)
            kind_new = rng.choice(("conv", "fc"))
            if kind_new == "conv":
                at = rng.randrange(n_conv + 1)
                _, h_in, w_in = shapes[at]
                kernels = [sample_kernel(rng, h_in, w_in) for _ in range(new_layer_nodes)]
                layer = DraftLayer("conv", [None] * new_layer_nodes, kernels, sample_stride(rng, h_in, w_in))
                out.layers.insert(at, layer)
            else:
                at = rng.randrange(n_fc + 1)
                out.layers.insert(n_conv + at, DraftLayer("fc", [None] * new_layer_nodes))
            m = Mutation("add_layer", {"kind": kind_new, "index": at, "nodes": new_layer_nodes})
    elif kind == "node":
        i = rng.choice(hidden)
        lay = out.layers[i]
        ki = _kind_index(out, i, lay.kind)
        if len(lay.origins) > 1 and rng.random() < 0.5:
            j = rng.randrange(len(lay.origins))
            lay.origins.pop(j)
            if lay.kind == "conv":
                lay.kernels.pop(j)
            m = Mutation("remove_node", {"kind": lay.kind, "layer": ki, "node": j})
        else:
            lay.origins.append(None)
            if lay.kind == "conv":
                _, h_in, w_in = shapes[ki]
                lay.kernels.append(sample_kernel(rng, h_in, w_in))
            m = Mutation("add_node", {"kind": lay.kind, "layer": ki, "node": len(lay.origins) - 1})
    elif kind == "kernel":
        convs = [i for i, lay in enumerate(out.layers) if lay.kind == "conv"]
        ci = rng.randrange(len(convs))
        lay = out.layers[convs[ci]]
        j = rng.randrange(len(lay.kernels))
        dim = rng.randrange(2)
        size = shapes[ci][1 + dim]
        old = lay.kernels[j]
        for step in rng.sample((2, -2), 2):
            k = old[dim] + step
            if k >= 1 and kernel_fits(k, size):
                lay.kernels[j] = (k, old[1]) if dim == 0 else (old[0], k)
                break
        else:
            return d.copy(), Mutation("kernel", {"layer": ci, "node": j}, f"kernel {old} cannot change in dim {dim}")
        m = Mutation("kernel", {"layer": ci, "node": j, "from": list(old), "to": list(lay.kernels[j])})
    else:  # stride
        convs = [i for i, lay in enumerate(out.layers) if lay.kind == "conv"]
        ci = rng.randrange(len(convs))
        lay = out.layers[convs[ci]]
        dim = rng.randrange(2)
        old = lay.stride
        for step in rng.sample((1, -1), 2):
            s = old[dim] + step
            trial = (s, old[1]) if dim == 0 else (old[0], s)
            lay.stride = trial
            if s >= 1 and fit_problem(_genome_unbound(out), shape) is None:
                break
            lay.stride = old
        else:
            return d.copy(), Mutation("stride", {"layer": ci}, f"stride {old} cannot change in dim {dim}")
        m = Mutation("stride", {"layer": ci, "from": list(old), "to": list(lay.stride)})
    problem = fit_problem(_genome_unbound(out), shape)
    if problem:  # e.g. a new strided layer under kernels that no longer fit their smaller input
        return d.copy(), Mutation(m.name, m.details, problem)
    if m.name in ("add_layer", "remove_layer", "add_node", "remove_node"):
        key = species_key(_genome_unbound(out))
        if key != species_key(g) and not allowed(key):
            return d.copy(), Mutation(m.name, m.details, f"species cap: {key} would be a new species")
    return out, m


def _genome_unbound(d: Draft) -> CortexGenome:
    return Draft(d.layers, None, d.classes).genome()


def _kind_index(d: Draft, i: int, kind: str) -> int:
    return sum(lay.kind == kind for lay in d.layers[:i])


# ------------------------------------------------------------------------------------------
# the weights' provenance: each node with its fan-in, from the parent it came from


def tensor_names(kind: str, layer: int) -> tuple[str, str]:
    """State-dict names of a layer (lse.nn.cortex): a convolution keeps each kernel as its own
    tensor ``conv.<i>.kernels.<j>`` (1, C, h, w) and one bias ``conv.<i>.bias``; a fully connected
    layer ``fc.<i>.weight`` (nodes, fan-in) and ``fc.<i>.bias``; the output layer ``out.*``."""
    if kind == "conv":
        return f"conv.{layer}.kernels.", f"conv.{layer}.bias"
    if kind == "fc":
        return f"fc.{layer}.weight", f"fc.{layer}.bias"
    return "out.weight", "out.bias"


def provenance(d: Draft, parent_ids: Sequence[str], parents: Sequence[CortexGenome]) -> Provenance:
    """Where every child tensor comes from: each node's row (a kernel, a neuron) from the
    parent it came from, its fan-in mapped input by input (inputs the parent's node never had,
    or new ones, keep their fresh N(0, 0.1) weights; that is the fan-in repair), kernels
    centre-aligned (a kernel grown by 2 keeps its centre)."""
    shape = d.input or (1, 28, 28)
    child = d.genome()
    child_shapes = conv_shapes(child, shape)
    parent_shapes = [conv_shapes(p, shape) for p in parents]
    sources: dict[str, TensorSource | tuple[TensorSource, ...]] = {}
    counters = {"conv": 0, "fc": 0, "out": 0}
    below: DraftLayer | None = None  # the layer feeding the current one (None: the input)
    below_hw = tuple(shape[1:])
    for lay in d.layers:
        ci = counters[lay.kind]
        counters[lay.kind] += 1
        wname, bname = tensor_names(lay.kind, ci)
        weight_pieces: dict[int, list[tuple[int, int]]] = {}
        bias_pieces: dict[int, list[tuple[int, int]]] = {}
        for j, o in enumerate(lay.origins):
            if o is None:
                continue
            bias_pieces.setdefault(o.parent, []).append((o.node, j))
            if lay.kind == "conv":
                cols = _cols(below, None, o, parents[o.parent], parent_shapes[o.parent], shape)
                if cols is not None:
                    sources[f"{wname}{j}"] = TensorSource(parent_ids[o.parent], f"{tensor_names('conv', o.layer)[0]}{o.node}",
                                                          rows=(0,), into=(0,), cols=cols, centred=True)
            else:
                weight_pieces.setdefault(o.parent, []).append((o.node, j))
        for p, pairs in bias_pieces.items():
            kind_p = lay.kind
            layer_p = next(o.layer for o in lay.origins if o is not None and o.parent == p)
            sources.setdefault(bname, ())
            sources[bname] = (*sources[bname], TensorSource(parent_ids[p], _pname(kind_p, layer_p, "bias"),
                                                            rows=tuple(x for x, _ in pairs), into=tuple(j for _, j in pairs)))
        if lay.kind != "conv":
            pieces = []
            for p, pairs in weight_pieces.items():
                o = next(o for o in lay.origins if o is not None and o.parent == p)
                cols = _cols(below, below_hw, o, parents[p], parent_shapes[p], shape)
                if cols is not None:
                    pieces.append(TensorSource(parent_ids[p], _pname(lay.kind, o.layer, "weight"),
                                               rows=tuple(x for x, _ in pairs), into=tuple(j for _, j in pairs), cols=cols))
            if pieces:
                sources[wname] = tuple(pieces)
        below = lay
        if lay.kind == "conv":
            below_hw = child_shapes[ci + 1][1:]
    # A layer whose origins mix parents gets one piece per parent; a bias with none is dropped.
    return Provenance(default=None, sources={k: v for k, v in sources.items() if v})


def _pname(kind: str, layer: int, what: str) -> str:
    if kind == "conv":
        return f"conv.{layer}.bias"
    return f"fc.{layer}.{what}" if kind == "fc" else f"out.{what}"


def _cols(below: DraftLayer | None, below_hw: tuple | None, o: Origin, pg: CortexGenome,
          pshapes: list[tuple[int, int, int]], shape: Sequence[int]) -> tuple[int | None, ...] | None:
    """The fan-in map of a node that came from ``o`` (a node of parent genome ``pg``): child
    input -> the parent node's input.  Inputs are matched through their own origins: an input
    node that sits in the layer under ``o``'s layer (in its parent's numbering, whichever parent
    gave it: nodes of aligned layers are matched by position, section II-B) maps to that
    position.  ``below_hw`` (fully connected nodes): the flattened features' spatial size; a
    fan-in over feature maps of another size than the parent's means nothing and is not kept."""
    # the layer under o's layer in the parent: ("input", 0) or (kind, index)
    if o.kind == "conv":
        under = ("conv", o.layer - 1) if o.layer > 0 else ("input", 0)
    elif o.kind == "fc":
        under = ("fc", o.layer - 1) if o.layer > 0 else (("conv", len(pg.conv) - 1) if pg.conv else ("input", 0))
    else:
        under = ("fc", len(pg.fc) - 1) if pg.fc else (("conv", len(pg.conv) - 1) if pg.conv else ("input", 0))
    # channel map: child input channel c -> parent input channel (or None)
    if below is None:
        if under[0] != "input":
            return None
        channels: list[int | None] = list(range(shape[0]))
    else:
        channels = [x.node if x is not None and (x.kind, x.layer) == under else None for x in below.origins]
    if all(c is None for c in channels):
        return None
    flat = o.kind != "conv" and (below is None or below.kind == "conv")
    if not flat:
        return tuple(channels)
    # flattened feature maps: (channel, y, x) -> channel * H * W + y * W + x
    parent_hw = pshapes[-1][1:] if under[0] == "conv" else tuple(shape[1:])
    child_hw = tuple(below_hw) if below_hw is not None else tuple(shape[1:])
    if tuple(parent_hw) != child_hw:
        return None
    hw = child_hw[0] * child_hw[1]
    return tuple(None if c is None else c * hw + t for c in channels for t in range(hw))


# ------------------------------------------------------------------------------------------
# initial genomes (section III-A)


def minimal(input_shape: Sequence[int] | None = None, classes: int | None = None) -> CortexGenome:
    """The output layer looking directly at the input."""
    return CortexGenome(input=tuple(input_shape) if input_shape else None, classes=classes)


def species_founders(n: int, rng: random.Random, input_shape: Sequence[int], *,
                     new_layer_nodes: int = 8) -> list[CortexGenome]:
    """Section III-A: the first species is the minimal genome; each next one is an isolated
    network (a copy of the previous founder, as PyCortex does) mutated structurally until its
    genome matches no existing species."""
    founders = [minimal()]
    keys = {species_key(founders[0])}
    draft = draft_of(founders[0])
    draft.input = tuple(input_shape)
    while len(founders) < n:
        for _ in range(1000):
            draft, _m = mutate(draft, rng, new_layer_nodes=new_layer_nodes,
                               weights={"layer": 1.0, "node": 1.0, "stride": 1.0})
            g = _genome_unbound(draft)
            if species_key(g) not in keys:
                break
        keys.add(species_key(g))
        founders.append(g)
    return founders


GENOME_NAME = "cortex"


def render(g: CortexGenome, num_classes: int | None = None) -> str:
    """One line: ``C[1x1,3x1]/1x2 > FC16 > FC10``."""
    tokens = []
    for lay in g.conv:
        ks = ",".join(f"{h}x{w}" for h, w in lay.kernels) if len(lay.kernels) <= 6 else f"{len(lay.kernels)}k"
        tokens.append(f"C[{ks}]/{lay.stride[0]}x{lay.stride[1]}")
    tokens += [f"FC{n}" for n in g.fc]
    tokens.append(f"FC{g.classes or num_classes or ''}")
    return " > ".join(tokens)


def _genome_kind():
    from lse.core.genomes import GenomeKind

    return GenomeKind(name=GENOME_NAME, parse=CortexGenome.model_validate, dump=lambda g: g.model_dump(mode="json"),
                      render=render, depth=lambda g: len(g.conv) + len(g.fc) + 1)


#: the PyCortex layered genome as a genome kind (lse.core.genomes)
GENOME = _genome_kind()
