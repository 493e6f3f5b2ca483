"""The 11 mutations of section 3.2 and :func:`mutate`.

PURE: plain functions over :class:`lse.core.dna.DNA`; no torch, no filesystem.

Each mutation takes a parent DNA and a ``random.Random`` and returns a *new* DNA (the parent
is immutable) and a :class:`MutationRecord` saying what changed.  ``changed_edges`` lists the
edges whose tensors the child must not inherit even where names and shapes match (e.g. the
convolution whose filter size changed); ``reset_all`` (reset-weights) means inherit nothing.
Everything else is left to inheritance by name and exact shape (section 3.6,
:mod:`lse.nn.inherit`).

A mutation that cannot apply to a DNA (remove-skip without a skip) raises
:class:`lse.errors.MutationError`; :func:`mutate` then draws another name among those not yet
tried, and falls back to identity, which always applies: at most 11 draws, never a loop.

Numeric mutations sample uniformly around the current value: channels, filter sizes and the
learning rate from half to twice it; the stride from half to twice it on a log2 scale
(stride_log2 +- 1, reflected at 0 and at MAX_STRIDE_LOG2).  Like the channels, a filter size
may keep its rounded value (the float drifts, footnote 3).  All sampling goes through the
given ``rng``, so a seed fixes the child.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field

from lse.core.dna import DNA, MAX_STRIDE_LOG2, round_half_up
from lse.errors import ConfigError, MutationError

MUTATION_NAMES: tuple[str, ...] = (
    "alter_learning_rate",
    "identity",
    "reset_weights",
    "insert_convolution",
    "remove_convolution",
    "alter_stride",
    "alter_channels",
    "filter_size",
    "insert_one_to_one",
    "add_skip",
    "remove_skip",
)


class MutationRecord(BaseModel):
    """What one reproduction event did; saved in the child's record, read by inheritance."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="one of MUTATION_NAMES: the mutation that was applied")
    details: dict[str, Any] = Field(default_factory=dict, description="mutation-specific facts (ids, old -> new)")
    changed_edges: list[str] = Field(
        default_factory=list, description="edge ids whose tensors must not be inherited"
    )
    reset_all: bool = Field(False, description="True: inherit no tensor at all (reset-weights)")
    skipped: list[str] = Field(
        default_factory=list, description="names drawn first that could not apply to this parent"
    )


Mutation = Callable[[DNA, random.Random], tuple[DNA, MutationRecord]]


# ---------------------------------------------------------------------- helpers
def _data(dna: DNA) -> dict[str, Any]:
    """A deep, plain copy to edit: the parent is never touched."""
    return dna.model_dump(mode="python")


def _new_id(d: dict[str, Any], prefix: str) -> str:
    n = d["next_id"]
    d["next_id"] = n + 1
    return f"{prefix}{n}"


def _edge(d: dict[str, Any], eid: str) -> dict[str, Any]:
    return next(e for e in d["edges"] if e["id"] == eid)


def _pick_conv(dna: DNA, rng: random.Random, name: str):
    convs = dna.conv_edges()
    if not convs:
        raise MutationError(f"{name}: the DNA has no convolution")
    return rng.choice(convs)


def _half_to_twice(x: float, rng: random.Random) -> float:
    return rng.uniform(x / 2.0, x * 2.0)


# ---------------------------------------------------------------------- the 11 mutations
def alter_learning_rate(dna: DNA, rng: random.Random) -> tuple[DNA, MutationRecord]:
    d = _data(dna)
    d["learning_rate"] = _half_to_twice(dna.learning_rate, rng)
    return DNA.model_validate(d), MutationRecord(
        name="alter_learning_rate", details={"from": dna.learning_rate, "to": d["learning_rate"]}
    )


def identity(dna: DNA, rng: random.Random) -> tuple[DNA, MutationRecord]:
    """Keep training: the child is the parent (all weights inherited)."""
    return DNA.model_validate(_data(dna)), MutationRecord(name="identity")


def reset_weights(dna: DNA, rng: random.Random) -> tuple[DNA, MutationRecord]:
    """Same architecture, fresh He-initialised weights (nothing inherited)."""
    return DNA.model_validate(_data(dna)), MutationRecord(name="reset_weights", reset_all=True)


def _insert(dna: DNA, rng: random.Random, kind: str,
            channels_from: tuple[int, ...] | None = None) -> tuple[DNA, dict[str, Any]]:
    """Insert a vertex w on a random backbone edge a -> b: a new edge a -> w, and the old
    edge (keeping its id, hence its weights) now reads w.  Skips stay where they were.
    ``channels_from``: a new conv's width is drawn from it instead of copying its input's."""
    target = rng.choice(dna.backbone_edges())
    d = _data(dna)
    w = _new_id(d, "v")
    new = _new_id(d, "e")
    activation = rng.choice(("bn_relu", "linear"))
    d["vertices"].append({"id": w, "activation": activation})
    edge: dict[str, Any] = {"id": new, "src": target.src, "dst": w, "kind": kind, "skip": False}
    if kind == "conv":
        channels = dna.vertex_channels()[target.src] if not channels_from else rng.choice(channels_from)
        edge.update(filter_h=3.0, filter_w=3.0, stride_log2=float(rng.choice((0, 1))), out_channels=float(channels))
    else:
        edge.update(filter_h=None, filter_w=None, stride_log2=None, out_channels=None)
    d["edges"].append(edge)
    _edge(d, target.id)["src"] = w
    details = {"vertex": w, "edge": new, "after": target.src, "activation": activation}
    if kind == "conv":
        details.update(stride=2 ** int(edge["stride_log2"]), channels=int(edge["out_channels"]))
    return DNA.model_validate(d), details


def insert_convolution(dna: DNA, rng: random.Random, channels_from: tuple[int, ...] | None = None
                       ) -> tuple[DNA, MutationRecord]:
    """A 3x3 convolution at a random place on the backbone: stride 1 or 2 at random, as many
    channels as its input, batch-norm + ReLU or linear at random (section 3.2).

    ``channels_from`` (not in the paper; ExperimentConfig.insert_channels): the width is drawn
    uniformly from these instead.  On grey images the paper's rule inserts 1-channel convs,
    and at a small scale selection discards the rare child that doubles one (issue 19)."""
    child, details = _insert(dna, rng, "conv", channels_from)
    return child, MutationRecord(name="insert_convolution", details=details, changed_edges=[details["edge"]])


def insert_one_to_one(dna: DNA, rng: random.Random) -> tuple[DNA, MutationRecord]:
    """An identity connection (and a vertex, bn_relu or linear at random) at a random place
    on the backbone, analogous to insert-convolution."""
    child, details = _insert(dna, rng, "identity")
    return child, MutationRecord(name="insert_one_to_one", details=details)


def remove_convolution(dna: DNA, rng: random.Random) -> tuple[DNA, MutationRecord]:
    """Remove a random convolution a -> b by contracting it: b's edges now start/end at a
    (a keeps its id and activation).  If b is the output, a is folded into b instead; if the
    conv is the only step from input to output, it becomes an identity edge."""
    conv = _pick_conv(dna, rng, "remove_convolution")
    d = _data(dna)
    a, b = conv.src, conv.dst
    if b == dna.output_id and a == dna.input_id:
        e = _edge(d, conv.id)
        new = _new_id(d, "e")
        e.update(id=new, kind="identity", filter_h=None, filter_w=None, stride_log2=None, out_channels=None)
        details = {"edge": conv.id, "replaced_by": new}
    else:
        keep, drop = (b, a) if b == dna.output_id else (a, b)
        d["edges"] = [e for e in d["edges"] if e["id"] != conv.id]
        d["vertices"] = [v for v in d["vertices"] if v["id"] != drop]
        seen: set[tuple[str, str]] = set()
        edges = []
        for e in d["edges"]:
            if e["src"] == drop:
                e["src"] = keep
            if e["dst"] == drop:
                e["dst"] = keep
            if e["src"] == e["dst"]:
                continue  # a skip that bridged the removed conv
            if e["skip"]:
                if (e["src"], e["dst"]) in seen:
                    continue  # two skips merged into one place: keep one
                seen.add((e["src"], e["dst"]))
            edges.append(e)
        d["edges"] = edges
        details = {"edge": conv.id, "vertex_removed": drop, "merged_into": keep}
    return DNA.model_validate(d), MutationRecord(name="remove_convolution", details=details, changed_edges=[conv.id])


def alter_stride(dna: DNA, rng: random.Random) -> tuple[DNA, MutationRecord]:
    """New stride_log2 uniform in [current - 1, current + 1] (half to twice the stride on a
    log scale), reflected at 0 and at MAX_STRIDE_LOG2; the built stride is
    2**round(stride_log2), a power of two."""
    conv = _pick_conv(dna, rng, "alter_stride")
    d = _data(dna)
    old = conv.stride_log2
    # Reflected rather than clamped: clamping would leave stride 1 unchanged half the time.
    new = abs(rng.uniform(old - 1.0, old + 1.0))  # type: ignore[operator]
    # The upper bound too (issue 20): strides beyond the image change nothing, so selection
    # never pushes back and a lineage drifts up; past the bound DNA validation would raise.
    if new > MAX_STRIDE_LOG2:
        new = 2 * MAX_STRIDE_LOG2 - new
    _edge(d, conv.id)["stride_log2"] = new
    child = DNA.model_validate(d)
    return child, MutationRecord(
        name="alter_stride",
        details={"edge": conv.id, "from": old, "to": new, "stride_from": conv.stride(), "stride_to": child.edge(conv.id).stride()},
    )


def alter_channels(dna: DNA, rng: random.Random) -> tuple[DNA, MutationRecord]:
    """Output channels of a random convolution: uniform from half to twice (>= 1 after rounding)."""
    conv = _pick_conv(dna, rng, "alter_channels")
    d = _data(dna)
    old = conv.out_channels
    new = max(0.5, _half_to_twice(old, rng))  # type: ignore[arg-type]
    _edge(d, conv.id)["out_channels"] = new
    changed = round_half_up(new) != conv.channels()
    return DNA.model_validate(d), MutationRecord(
        name="alter_channels",
        details={"edge": conv.id, "from": old, "to": new},
        # The conv's own weights lose their meaning only when its rounded width changes
        # (and then their shape differs anyway); consumers downstream fail the shape check.
        changed_edges=[conv.id] if changed else [],
    )


def filter_size(dna: DNA, rng: random.Random) -> tuple[DNA, MutationRecord]:
    """Filter height or width (at random) of a random convolution: uniform from half to twice
    the current value, built as the nearest odd size (from 3: 1, 3 or 5).  As with the
    channels, the rounded size may stay the same: the float drifts (footnote 3)."""
    conv = _pick_conv(dna, rng, "filter_size")
    axis = rng.choice(("filter_h", "filter_w"))
    old = float(getattr(conv, axis))
    new = max(0.5, _half_to_twice(old, rng))
    d = _data(dna)
    _edge(d, conv.id)[axis] = new
    child = DNA.model_validate(d)
    old_k, new_k = conv.kernel(), child.edge(conv.id).kernel()
    i = 0 if axis == "filter_h" else 1
    return child, MutationRecord(
        name="filter_size",
        details={"edge": conv.id, "axis": axis, "from": old, "to": new, "size_from": old_k[i], "size_to": new_k[i]},
        # the conv's tensors keep their meaning (and shape) while the built size is unchanged
        changed_edges=[conv.id] if new_k != old_k else [],
    )


def add_skip(dna: DNA, rng: random.Random) -> tuple[DNA, MutationRecord]:
    """An identity skip from a random backbone vertex to a random later one.  Not added where
    one already exists, nor in parallel to an identity backbone step (it would only double
    the signal); parallel to a convolution it is a residual connection."""
    path = dna.backbone()
    step = {(e.src, e.dst): e for e in dna.backbone_edges()}
    existing = {(e.src, e.dst) for e in dna.skips()}
    pairs = [
        (a, b)
        for i, a in enumerate(path)
        for b in path[i + 1 :]
        if (a, b) not in existing and not ((a, b) in step and step[(a, b)].kind == "identity")
    ]
    if not pairs:
        raise MutationError("add_skip: no pair of layers can take a new skip")
    a, b = rng.choice(pairs)
    d = _data(dna)
    new = _new_id(d, "e")
    d["edges"].append(
        {"id": new, "src": a, "dst": b, "kind": "identity", "skip": True,
         "filter_h": None, "filter_w": None, "stride_log2": None, "out_channels": None}
    )
    return DNA.model_validate(d), MutationRecord(name="add_skip", details={"edge": new, "src": a, "dst": b})


def remove_skip(dna: DNA, rng: random.Random) -> tuple[DNA, MutationRecord]:
    skips = dna.skips()
    if not skips:
        raise MutationError("remove_skip: the DNA has no skip connection")
    s = rng.choice(skips)
    d = _data(dna)
    d["edges"] = [e for e in d["edges"] if e["id"] != s.id]
    return DNA.model_validate(d), MutationRecord(
        name="remove_skip", details={"edge": s.id, "src": s.src, "dst": s.dst}
    )


MUTATIONS: dict[str, Mutation] = {
    "alter_learning_rate": alter_learning_rate,
    "identity": identity,
    "reset_weights": reset_weights,
    "insert_convolution": insert_convolution,
    "remove_convolution": remove_convolution,
    "alter_stride": alter_stride,
    "alter_channels": alter_channels,
    "filter_size": filter_size,
    "insert_one_to_one": insert_one_to_one,
    "add_skip": add_skip,
    "remove_skip": remove_skip,
}
assert tuple(MUTATIONS) == MUTATION_NAMES


def _weights(probabilities: dict[str, float] | None) -> dict[str, float]:
    if probabilities is None:
        return {n: 1.0 for n in MUTATION_NAMES}
    unknown = sorted(set(probabilities) - set(MUTATION_NAMES))
    if unknown:
        raise ConfigError(f"unknown mutation(s) {unknown}", f"valid names: {', '.join(MUTATION_NAMES)}")
    if any(not p >= 0 for p in probabilities.values()) or sum(probabilities.values()) <= 0:
        raise ConfigError("mutation probabilities must be >= 0 with a positive sum", "fix mutation_probabilities")
    return {n: float(probabilities.get(n, 0.0)) for n in MUTATION_NAMES}


def mutate(
    dna: DNA, rng: random.Random, probabilities: dict[str, float] | None = None, *,
    insert_channels: list[int] | tuple[int, ...] | None = None,
) -> tuple[DNA, MutationRecord]:
    """Draw a mutation (relative weights ``probabilities``, name -> weight; None: uniform over
    the 11; missing names weigh 0) and apply it to ``dna``, returning ``(child, record)``.
    ``insert_channels``: widths insert-convolution draws from (None: its input's, the paper).

    A drawn mutation that cannot apply is set aside and another is drawn from the rest (its
    name is kept in ``record.skipped``); when none is left, identity, which always applies.
    Deterministic for a given ``rng`` state.  ``dna`` itself is never modified.
    """
    weights = _weights(probabilities)
    skipped: list[str] = []
    while True:
        names = [n for n in MUTATION_NAMES if weights[n] > 0 and n not in skipped]
        if not names:
            name = "identity"
        else:
            name = rng.choices(names, weights=[weights[n] for n in names])[0]
        try:
            if name == "insert_convolution" and insert_channels:
                child, record = insert_convolution(dna, rng, tuple(insert_channels))
            else:
                child, record = MUTATIONS[name](dna, rng)
        except MutationError:
            if name == "identity":  # pragma: no cover - identity always applies
                raise
            skipped.append(name)
            continue
        return child, record.model_copy(update={"skipped": skipped})


def mutate_many(
    dna: DNA, rng: random.Random, probabilities: dict[str, float] | None = None, n: int = 1,
    insert_channels: list[int] | tuple[int, ...] | None = None,
) -> tuple[DNA, MutationRecord]:
    """``n`` mutations in a row (paper section 5: a period of increased mutation rate).

    ``n == 1`` is exactly :func:`mutate` (same draws, same record).  For more, the record is
    named by the mutations joined with ``+`` in order, ``details["chain"]`` holds each one's
    record, ``changed_edges`` is their union (an edge changed by any of them is not
    inherited) and ``reset_all`` is set if any of them was a reset."""
    if n < 1:
        raise ValueError(f"mutations per child must be >= 1, got {n}")
    child, record = mutate(dna, rng, probabilities, insert_channels=insert_channels)
    if n == 1:
        return child, record
    chain = [record]
    for _ in range(n - 1):
        child, r = mutate(child, rng, probabilities, insert_channels=insert_channels)
        chain.append(r)
    changed: list[str] = []
    for r in chain:
        changed += [e for e in r.changed_edges if e not in changed]
    return child, MutationRecord(
        name="+".join(r.name for r in chain),
        details={"chain": [r.model_dump(mode="json") for r in chain]},
        changed_edges=changed,
        reset_all=any(r.reset_all for r in chain),
        skipped=[s for r in chain for s in r.skipped],
    )
