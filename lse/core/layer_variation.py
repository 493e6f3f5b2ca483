"""Variation of EA4CNN layer lists (seed 001, section 3.3): mutations MO1-MO6, one-point crossover.

=====  ==========================================================  ===========
MO1    weight reset: one layer's weights (or the FC head's) fresh   0.41
MO2    insert a random layer at a random position                   0.07
MO3    remove a layer at a random position                          0.03
MO4    modify some parameters of a random layer                     0.29
MO5    the hidden FC layer's width up or down                       0.10
MO6    the learning rate changed at random                          0.10
=====  ==========================================================  ===========

A mutation returns the new genome and a :class:`Variation` saying what changed; the pieces a
child inherits are decided by :func:`lse.core.layerlist.provenance` (the paper's repair:
overlapping weights copied, superfluous ones cut off, missing ones fresh).  Every result fits
the input (a draw that would shrink the image below one pixel is drawn again; after a few
failures the mutation falls back to the next applicable one).  Pure: no torch, no filesystem.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from lse.core.layerlist import KERNELS, Conv, LayerList, Pool, fits, random_layer

#: the paper's probabilities of MO1..MO6 (section 4)
PAPER_MUTATION_PROBABILITIES: dict[str, float] = {"MO1": 0.41, "MO2": 0.07, "MO3": 0.03, "MO4": 0.29, "MO5": 0.10,
                                                  "MO6": 0.10}
MUTATIONS = tuple(PAPER_MUTATION_PROBABILITIES)
_TRIES = 30


@dataclass(frozen=True)
class Variation:
    """What a mutation did: its name, details for the record, and the child pieces ("L<id>",
    "fc", "out") whose weights must not be inherited (MO1)."""

    name: str
    details: dict = field(default_factory=dict)
    reset: frozenset[str] = frozenset()

    def to_record(self) -> dict:
        return {"name": self.name, "details": self.details, "changed_edges": [], "reset_all": False,
                "reset": sorted(self.reset)}


def mutate(genome: LayerList, rng: random.Random, *, input_side: int, probabilities: dict[str, float] | None = None,
           max_filters: int = 12, max_pool: int = 4) -> tuple[LayerList, Variation]:
    """One of MO1-MO6 drawn with ``probabilities`` (default: the paper's).  A mutation that
    cannot apply (MO3 on a one-layer network, MO1 on ... nothing) is replaced by another draw."""
    probs = probabilities or PAPER_MUTATION_PROBABILITIES
    names = [n for n in MUTATIONS if probs.get(n, 0.0) > 0]
    if not names:
        raise ValueError(f"no mutation has a positive probability: {probs}; valid names: {', '.join(MUTATIONS)}")
    for _ in range(_TRIES):
        name = rng.choices(names, weights=[probs[n] for n in names])[0]
        out = _OPS[name](genome, rng, input_side=input_side, max_filters=max_filters, max_pool=max_pool)
        if out is not None:
            return out
    raise ValueError(f"no applicable mutation of {genome.model_dump_json()} in {_TRIES} draws")


def _mo1(g: LayerList, rng: random.Random, **_) -> tuple[LayerList, Variation]:
    pieces = [f"L{c.id}" for c in g.convs()] + ["fc"]
    piece = rng.choice(pieces)
    return g, Variation("MO1", {"reset": piece}, frozenset({piece} | ({"out"} if piece == "fc" else set())))


def _mo2(g: LayerList, rng: random.Random, *, input_side: int, max_filters: int, max_pool: int, **_):
    for _ in range(_TRIES):
        layer = random_layer(rng, g.next_id, max_filters=max_filters, max_pool=max_pool)
        pos = rng.randint(0, len(g.layers))
        child = g.with_layers(g.layers[:pos] + (layer,) + g.layers[pos:])
        if fits(child, input_side):
            return child, Variation("MO2", {"position": pos, "layer": layer.model_dump()})
    return None


def _mo3(g: LayerList, rng: random.Random, *, input_side: int, **_):
    if len(g.layers) < 2:
        return None
    for _ in range(_TRIES):
        pos = rng.randrange(len(g.layers))
        child = g.with_layers(g.layers[:pos] + g.layers[pos + 1:])
        if fits(child, input_side):
            return child, Variation("MO3", {"position": pos, "layer": g.layers[pos].model_dump()})
    return None


def _mo4(g: LayerList, rng: random.Random, *, input_side: int, max_filters: int, max_pool: int, **_):
    if not g.layers:
        return None
    for _ in range(_TRIES):
        pos = rng.randrange(len(g.layers))
        old = g.layers[pos]
        new = _modify(old, rng, max_filters=max_filters, max_pool=max_pool)
        if new is None or new == old:
            continue
        child = g.with_layers(g.layers[:pos] + (new,) + g.layers[pos + 1:])
        if fits(child, input_side):
            changed = {k: [v, getattr(new, k)] for k, v in old.model_dump().items() if getattr(new, k) != v}
            return child, Variation("MO4", {"layer": old.id, "changed": changed})
    return None


def _modify(layer: Conv | Pool, rng: random.Random, *, max_filters: int, max_pool: int) -> Conv | Pool | None:
    """Some parameters of ``layer`` changed (one or two of its hyperparameters)."""
    data = layer.model_dump()
    keys = ["kernel", "filters", "stride", "padding"] if isinstance(layer, Conv) else ["mode", "size", "stride"]
    for key in rng.sample(keys, rng.randint(1, 2)):
        if key == "kernel":
            data["kernel"] = rng.choice([k for k in KERNELS if k != layer.kernel])
            data["padding"] = min(data["padding"], data["kernel"] // 2)
        elif key == "filters":  # double or halve at most, within 1..2*max_filters
            f = layer.filters
            data["filters"] = max(1, min(4 * max_filters, round(f * 2 ** rng.uniform(-1, 1)) or 1))
        elif key == "stride":
            data["stride"] = rng.randint(1, 2) if isinstance(layer, Conv) else rng.randint(1, data["size"])
        elif key == "padding":
            data["padding"] = rng.choice((0, data["kernel"] // 2))
        elif key == "mode":
            data["mode"] = "avg" if layer.mode == "max" else "max"
        elif key == "size":
            data["size"] = rng.randint(2, max(2, max_pool))
            data["stride"] = min(data["stride"], data["size"])
    try:
        return type(layer).model_validate(data)
    except ValueError:
        return None


def _mo5(g: LayerList, rng: random.Random, **_):
    step = max(1, round(g.fc_width * rng.uniform(0.1, 0.5)))
    width = g.fc_width + step if rng.random() < 0.5 else max(1, g.fc_width - step)
    if width == g.fc_width:
        return None
    return g.with_layers(g.layers, fc_width=width), Variation("MO5", {"fc_width": [g.fc_width, width]})


def _mo6(g: LayerList, rng: random.Random, **_):
    lr = min(1.0, max(1e-4, g.learning_rate * 2 ** rng.uniform(-1, 1)))  # half to double, log-uniform
    if math.isclose(lr, g.learning_rate):
        return None
    return g.with_layers(g.layers, learning_rate=lr), Variation("MO6", {"learning_rate": [g.learning_rate, lr]})


_OPS = {"MO1": _mo1, "MO2": _mo2, "MO3": _mo3, "MO4": _mo4, "MO5": _mo5, "MO6": _mo6}


# -- one-point crossover ----------------------------------------------------------------------


@dataclass(frozen=True)
class Crossing:
    """A one-point crossover's child and where each of its pieces comes from."""

    child: LayerList
    cut: tuple[int, int]  # layers[:i] of the first parent, layers[j:] of the second
    origins: dict[int, tuple[str, int]]  # child layer id -> (parent id, layer id in that parent)
    head: str  # the parent whose FC head (width and weights) the child has


def _splice(a: LayerList, a_id: str, b: LayerList, b_id: str, i: int, j: int, input_side: int) -> Crossing | None:
    """``a.layers[:i] + b.layers[j:]`` with ``b``'s FC head and ``a``'s header; None when it
    does not fit the input or equals a parent."""
    head_part, tail_part = a.layers[:i], b.layers[j:]
    if i + len(tail_part) == 0:
        return None
    next_id = max(a.next_id, b.next_id)
    used = {x.id for x in head_part}
    origins = {x.id: (a_id, x.id) for x in head_part}
    tail = []
    for x in tail_part:
        nid = x.id
        if nid in used:
            nid, next_id = next_id, next_id + 1
        used.add(nid)
        origins[nid] = (b_id, x.id)
        tail.append(x.model_copy(update={"id": nid}))
    child = LayerList(layers=head_part + tuple(tail), fc_width=b.fc_width, learning_rate=a.learning_rate,
                      next_id=next_id)
    if fits(child, input_side) and child.layers != a.layers and child.layers != b.layers:
        return Crossing(child, (i, j), origins, b_id)
    return None


def _cuts(a: LayerList, b: LayerList, rng: random.Random) -> list[tuple[int, int]]:
    cuts = [(i, j) for i in range(len(a.layers) + 1) for j in range(len(b.layers) + 1)
            if (i, j) not in ((len(a.layers), len(b.layers)), (0, 0))]
    rng.shuffle(cuts)
    return cuts


def crossover(a: LayerList, a_id: str, b: LayerList, b_id: str, rng: random.Random, *,
              input_side: int) -> Crossing | None:
    """The paper's one-point crossover of two layer lists: the first ``i`` layers of ``a``,
    then the layers of ``b`` from ``j`` on, with ``b``'s FC head and ``a``'s header (learning
    rate).  Cut points are drawn among those that give a network that fits the input and
    differs from both parents; None when there is none.

    Connections are repaired by inheritance (:func:`lse.core.layerlist.provenance`): the first
    layer taken from ``b`` now sees ``a``'s channels, so its fan-in is cut or extended.  Layer
    ids of ``b`` that ``a``'s part already uses are renumbered from the child's ``next_id``.
    """
    for i, j in _cuts(a, b, rng):
        crossing = _splice(a, a_id, b, b_id, i, j, input_side)
        if crossing is not None:
            return crossing
    return None


def crossover_pair(a: LayerList, a_id: str, b: LayerList, b_id: str, rng: random.Random, *,
                   input_side: int) -> tuple[Crossing, Crossing | None] | None:
    """Both children of one cut (Algorithm 1, line 7: ``(a', b') = Crossover(a, b)``):
    ``a[:i] + b[j:]`` and ``b[:j] + a[i:]``.  A cut where both children are valid is preferred;
    where no cut gives two, the first valid child comes with None (its twin stays ``b``).
    Deterministic in ``rng``, so two workers making the two children of one pair agree."""
    single = None
    for i, j in _cuts(a, b, rng):
        first = _splice(a, a_id, b, b_id, i, j, input_side)
        if first is None:
            continue
        second = _splice(b, b_id, a, a_id, j, i, input_side)
        if second is not None:
            return first, second
        single = single or (first, None)
    return single


__all__ = ["Crossing", "MUTATIONS", "PAPER_MUTATION_PROBABILITIES", "Variation", "crossover", "crossover_pair", "mutate"]
