"""The DNA of an individual: a graph of activations and connections (paper, section 3.2).

PURE: plain data and functions.  No torch, no filesystem (``tests/test_purity.py`` checks).

Structure
---------
* **Vertices** are rank-3 activations (channels x height x width).  Each carries its
  activation function, applied after the incoming edges are merged: ``"bn_relu"``
  (batch-norm then ReLU) or ``"linear"`` (nothing).
* **Edges** are ``"identity"`` connections or ``"conv"`` convolutions.  A convolution carries
  the mutable numbers ``filter_h``, ``filter_w`` (built as the nearest odd size), ``stride_log2`` (the
  stride is ``2 ** round(stride_log2)``: powers of two only) and ``out_channels``.  They are
  stored as *floats* and rounded only when built, so several small mutations accumulate
  despite integer round-off (section 3.2, footnote 3).
* Every edge is either **primary** (``skip=False``) or a **skip** (``skip=True``).  The
  primary edges form one path from the input vertex to the output vertex: the
  "convolutional backbone" of figure 1.  Skips are identity edges from an earlier to a later
  backbone vertex.  Where edges meet, the primary one fixes the vertex's shape and the skips
  are reshaped to it (section 3.2; done in :mod:`lse.nn.build`).  This invariant makes every DNA
  acyclic with every vertex on an input -> output path, by construction and by validation.
* The **learning rate** is part of the DNA.
* Ids (``"v3"``, ``"e7"``) come from the monotonic counter ``next_id`` and survive mutations,
  so parameter names derived from them (``edges.e7.weight``) let a child inherit its parent's
  tensors by name (section 3.6).

``DNA.model_validate(d)`` / ``DNA.from_json(s)`` raise :class:`lse.errors.DNAError` naming the
offending field; ``dna.model_dump(mode="json")`` and ``dna.to_json()`` round-trip exactly.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer, model_validator

from lse.errors import DNAError

#: Version of the DNA schema this code writes.  A DNA with a higher version came from a newer
#: lse and is refused rather than misread.
DNA_SCHEMA_VERSION = 1

ACTIVATIONS = ("bn_relu", "linear")
EDGE_KINDS = ("identity", "conv")

#: Largest stride exponent accepted (stride 2**20): strides beyond the image size are
#: clamped by the builder anyway, this only rejects absurd or corrupt values.
MAX_STRIDE_LOG2 = 20.0


def round_half_up(x: float) -> int:
    """Round to the nearest integer, halves up (Python's ``round`` is banker's rounding,
    which would make 2.5 -> 2 but 3.5 -> 4: an uneven grid for accumulated float genes)."""
    return math.floor(x + 0.5)


def round_to_odd(x: float) -> int:
    """The nearest odd integer, halves up: [0, 2) -> 1, [2, 4) -> 3, [4, 6) -> 5 ...  Filter
    sizes are stored as floats that drift in small steps (footnote 3) and built at this size;
    for every float that rounds half up to an odd number (older DNAs) the two agree."""
    return 2 * math.floor(x / 2.0) + 1


def _fail(field: str, problem: str, hint: str = "fix or discard this DNA") -> DNAError:
    return DNAError(f"DNA field {field}: {problem}", hint)


def _finite(field: str, x: float) -> None:
    if not math.isfinite(x):
        raise _fail(field, f"must be finite, got {x!r}")


class Vertex(BaseModel):
    """A rank-3 activation; ``activation`` is applied after the incoming edges are summed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="stable id 'v<n>'")
    activation: Literal["bn_relu", "linear"] = Field("linear", description="bn_relu: batch-norm + ReLU")


class Edge(BaseModel):
    """A connection from vertex ``src`` to vertex ``dst``: identity or convolution."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="stable id 'e<n>'")
    src: str = Field(description="id of the vertex this edge reads")
    dst: str = Field(description="id of the vertex this edge feeds")
    kind: Literal["identity", "conv"] = Field("identity")
    skip: bool = Field(False, description="True: a skip connection; False: the vertex's primary input")
    filter_h: float | None = Field(None, description="conv filter height (built as the nearest odd size)")
    filter_w: float | None = Field(None, description="conv filter width (built as the nearest odd size)")
    stride_log2: float | None = Field(None, description="log2 of the conv stride (rounded, >= 0)")
    out_channels: float | None = Field(None, description="conv output channels (rounded, >= 1)")

    # --- rounded values, as built ---
    def kernel(self) -> tuple[int, int]:
        """(height, width) of the filter, rounded; both odd."""
        return round_to_odd(self.filter_h), round_to_odd(self.filter_w)  # type: ignore[arg-type]

    def stride(self) -> int:
        """The stride, a power of two."""
        return 2 ** round_half_up(self.stride_log2)  # type: ignore[arg-type]

    def channels(self) -> int:
        """Output channels, rounded."""
        return round_half_up(self.out_channels)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _check(self) -> "Edge":
        where = f"edges[{self.id}]"
        conv_fields = ("filter_h", "filter_w", "stride_log2", "out_channels")
        if self.kind == "identity":
            for f in conv_fields:
                if getattr(self, f) is not None:
                    raise _fail(f"{where}.{f}", "an identity edge has no convolution parameters")
            return self
        for f in conv_fields:
            v = getattr(self, f)
            if v is None:
                raise _fail(f"{where}.{f}", "a conv edge needs it")
            _finite(f"{where}.{f}", v)
        if self.skip:
            raise _fail(f"{where}.kind", "a skip connection is an identity, not a conv (section 3.2)")
        for f in ("filter_h", "filter_w"):
            if getattr(self, f) < 0.5:
                raise _fail(f"{where}.{f}", f"filter sizes must be >= 0.5 (built as the nearest odd size), got {getattr(self, f)!r}")
        if not 0 <= round_half_up(self.stride_log2) <= MAX_STRIDE_LOG2:  # type: ignore[arg-type]
            raise _fail(f"{where}.stride_log2", f"must round to 0..{MAX_STRIDE_LOG2:g}, got {self.stride_log2!r}")
        if round_half_up(self.out_channels) < 1:  # type: ignore[arg-type]
            raise _fail(f"{where}.out_channels", f"must round to >= 1, got {self.out_channels!r}")
        return self


def _id_number(field: str, ident: str, prefix: str) -> int:
    if not (isinstance(ident, str) and ident.startswith(prefix) and ident[1:].isdigit() and ident[1:] == str(int(ident[1:]))):
        raise _fail(field, f"ids look like '{prefix}<n>', got {ident!r}")
    return int(ident[1:])


class DNA(BaseModel):
    """An individual's architecture and learning rate (section 3.2).  Immutable: mutations
    return a new DNA (:func:`lse.core.mutations.mutate`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(DNA_SCHEMA_VERSION, description="DNA schema version")
    vertices: list[Vertex] = Field(description="activations; order is not meaningful")
    edges: list[Edge] = Field(description="connections; order is not meaningful")
    learning_rate: float = Field(description="SGD learning rate of this individual (> 0)")
    input_id: str = Field(description="id of the input vertex (the image)")
    output_id: str = Field(description="id of the output vertex (global pooling + classifier read it)")
    input_channels: int = Field(
        3, ge=1, description="image channels assumed by mutations when sizing new convs (the builder uses the real ones)"
    )
    next_id: int = Field(description="next free number for a stable id; never reused")
    mutation_probabilities: dict[str, float] | None = Field(
        None,
        description="this individual's own mutation distribution (name -> probability, sums to 1), evolved "
        "with it (section 5, Tuson & Ross 1998); None: the experiment's. Omitted from the JSON when None, "
        "so DNAs written without it stay byte-identical",
    )

    # ------------------------------------------------------------------ validation
    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise _from_validation_error(e) from None

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> "DNA":  # type: ignore[override]
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as e:
            raise _from_validation_error(e) from None

    @model_validator(mode="after")
    def _check(self) -> "DNA":
        if self.schema_version != DNA_SCHEMA_VERSION:
            raise _fail(
                "schema_version",
                f"this lse reads version {DNA_SCHEMA_VERSION}, got {self.schema_version}",
                "upgrade lse" if self.schema_version > DNA_SCHEMA_VERSION else "fix or discard this DNA",
            )
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise _fail("learning_rate", f"must be finite and > 0, got {self.learning_rate!r}")
        if self.mutation_probabilities is not None:
            from lse.core.distribution import check_distribution  # pure; lazy: it imports mutation names

            problem = check_distribution(self.mutation_probabilities)
            if problem:
                raise _fail("mutation_probabilities", problem)

        seen: set[str] = set()
        top = -1
        for i, v in enumerate(self.vertices):
            top = max(top, _id_number(f"vertices[{i}].id", v.id, "v"))
            if v.id in seen:
                raise _fail(f"vertices[{i}].id", f"duplicate id {v.id!r}")
            seen.add(v.id)
        vids = set(seen)
        for i, e in enumerate(self.edges):
            top = max(top, _id_number(f"edges[{i}].id", e.id, "e"))
            if e.id in seen:
                raise _fail(f"edges[{i}].id", f"duplicate id {e.id!r}")
            seen.add(e.id)
            for end in ("src", "dst"):
                if getattr(e, end) not in vids:
                    raise _fail(f"edges[{e.id}].{end}", f"dangling edge: no vertex {getattr(e, end)!r}")
            if e.src == e.dst:
                raise _fail(f"edges[{e.id}]", f"cycle: edge from {e.src!r} to itself")
        # Ids are 'v<n>'/'e<n>' with distinct n; n also distinct across kinds so that one
        # counter hands out every id.
        nums = [int(x[1:]) for x in seen]
        if len(set(nums)) != len(nums):
            raise _fail("edges", "two ids share a number; ids come from one counter (next_id)")
        if self.next_id <= top:
            raise _fail("next_id", f"must exceed every id number ({top}), got {self.next_id}")
        for f in ("input_id", "output_id"):
            if getattr(self, f) not in vids:
                raise _fail(f, f"no vertex {getattr(self, f)!r}")
        if self.input_id == self.output_id:
            raise _fail("output_id", "the output vertex must differ from the input vertex")

        # Any cycle at all (a skip pointing backwards, primary edges in a loop).
        order = _topological_order(vids, self.edges)
        if order is None:
            raise _fail("edges", "cycle: the graph must be acyclic")

        # The backbone: each vertex but the input has one primary incoming edge, each but the
        # output one primary outgoing edge, and following them from the input visits all.
        p_in: dict[str, Edge] = {}
        p_out: dict[str, Edge] = {}
        for e in self.edges:
            if e.skip:
                continue
            if e.dst in p_in:
                raise _fail(f"edges[{e.id}].skip", f"vertex {e.dst!r} has two primary inputs ({p_in[e.dst].id}, {e.id}); mark one as skip")
            if e.src in p_out:
                raise _fail(f"edges[{e.id}].skip", f"vertex {e.src!r} has two primary outputs ({p_out[e.src].id}, {e.id})")
            p_in[e.dst] = e
            p_out[e.src] = e
        if self.input_id in p_in or any(e.dst == self.input_id for e in self.edges):
            raise _fail("input_id", f"the input vertex {self.input_id!r} cannot have incoming edges")
        if any(e.src == self.output_id for e in self.edges):
            raise _fail("output_id", f"the output vertex {self.output_id!r} cannot have outgoing edges")
        path = [self.input_id]
        while path[-1] != self.output_id:
            nxt = p_out.get(path[-1])
            if nxt is None:
                raise _fail("edges", f"unreachable output: the primary path stops at {path[-1]!r}")
            path.append(nxt.dst)
        missing = sorted(vids - set(path))
        if missing:
            raise _fail("vertices", f"unreachable vertex {missing[0]!r}: not on the backbone from input to output")
        pos = {v: i for i, v in enumerate(path)}
        skips: set[tuple[str, str]] = set()
        for e in self.edges:
            if e.skip:
                if e.kind != "identity":
                    raise _fail(f"edges[{e.id}].kind", "a skip must be an identity")
                if (e.src, e.dst) in skips:
                    raise _fail(f"edges[{e.id}]", f"duplicate skip {e.src}->{e.dst}")
                skips.add((e.src, e.dst))
                if pos[e.src] >= pos[e.dst]:  # pragma: no cover - caught as a cycle above
                    raise _fail(f"edges[{e.id}]", "cycle: a skip must point forward")
        return self

    @model_serializer(mode="wrap")
    def _omit_absent_distribution(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if data.get("mutation_probabilities", 0) is None:
            del data["mutation_probabilities"]
        return data

    # ------------------------------------------------------------------ persistence
    def to_json(self) -> str:
        """Canonical JSON (sorted keys): equal DNAs give equal strings (usable as a cache key)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "DNA":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DNAError(f"DNA is not valid JSON ({e.msg} at line {e.lineno})", "fix or discard this DNA") from None
        return cls.model_validate(data)

    # ------------------------------------------------------------------ queries
    def vertex(self, vid: str) -> Vertex:
        for v in self.vertices:
            if v.id == vid:
                return v
        raise KeyError(vid)

    def edge(self, eid: str) -> Edge:
        for e in self.edges:
            if e.id == eid:
                return e
        raise KeyError(eid)

    def backbone(self) -> list[str]:
        """Vertex ids along the primary path, input first, output last."""
        p_out = {e.src: e for e in self.edges if not e.skip}
        path = [self.input_id]
        while path[-1] != self.output_id:
            path.append(p_out[path[-1]].dst)
        return path

    def backbone_edges(self) -> list[Edge]:
        """The primary edges in order from input to output."""
        p_out = {e.src: e for e in self.edges if not e.skip}
        return [p_out[v] for v in self.backbone()[:-1]]

    def skips(self) -> list[Edge]:
        return [e for e in self.edges if e.skip]

    def skips_into(self, vid: str) -> list[Edge]:
        return [e for e in self.edges if e.skip and e.dst == vid]

    def conv_edges(self) -> list[Edge]:
        """The convolutions, in backbone order."""
        return [e for e in self.backbone_edges() if e.kind == "conv"]

    def depth(self) -> int:
        """Convolutions on the longest input -> output path."""
        order = _topological_order({v.id for v in self.vertices}, self.edges) or []
        best = {v: (0 if v == self.input_id else -(10**9)) for v in order}
        for v in order:
            for e in self.edges:
                if e.src == v:
                    best[e.dst] = max(best[e.dst], best[v] + (e.kind == "conv"))
        return max(best[self.output_id], 0)

    def total_channels(self) -> int:
        """Sum of the (rounded) output channels of all convolutions."""
        return sum(e.channels() for e in self.conv_edges())

    def vertex_channels(self, input_channels: int | None = None) -> dict[str, int]:
        """Channels of every vertex: set by its primary edge (section 3.2); the input vertex
        has ``input_channels`` (default: the DNA's ``input_channels``)."""
        ch = {self.input_id: input_channels if input_channels is not None else self.input_channels}
        for e in self.backbone_edges():
            ch[e.dst] = e.channels() if e.kind == "conv" else ch[e.src]
        return ch


def _topological_order(vids: set[str], edges: list[Edge]) -> list[str] | None:
    """Kahn's algorithm (deterministic); None when there is a cycle."""
    indeg = {v: 0 for v in vids}
    for e in edges:
        indeg[e.dst] += 1
    ready = sorted(v for v, d in indeg.items() if d == 0)
    order: list[str] = []
    while ready:
        v = ready.pop(0)
        order.append(v)
        for e in edges:
            if e.src == v:
                indeg[e.dst] -= 1
                if indeg[e.dst] == 0:
                    ready.append(e.dst)
    return order if len(order) == len(vids) else None


def _from_validation_error(e: ValidationError) -> DNAError:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "value"
    msg = err["msg"].removeprefix("Value error, ")
    return _fail(loc, f"{msg} (got {err.get('input')!r})")


def initial_dna(learning_rate: float = 0.1, input_channels: int = 3) -> DNA:
    """The initial individual of section 3.3: a single-layer model with no convolutions.

    The input vertex feeds the output vertex through an identity edge; the phenotype adds
    global average pooling and a linear classifier (:mod:`lse.nn.build`).  ``input_channels``
    is the data set's channel count, used only to size convolutions that mutations insert
    right after the input ("channels same as input", section 3.2).
    """
    return DNA(
        vertices=[Vertex(id="v0", activation="linear"), Vertex(id="v1", activation="linear")],
        edges=[Edge(id="e2", src="v0", dst="v1", kind="identity")],
        learning_rate=learning_rate,
        input_id="v0",
        output_id="v1",
        input_channels=input_channels,
        next_id=3,
    )


# ---------------------------------------------------------------------- rendering
def _edge_token(e: Edge) -> str:
    if e.kind == "conv":
        kh, kw = e.kernel()
        return f"C{kh}x{kw}/{e.stride()}x{e.channels()}"
    return "I"


def render_line(dna: DNA, num_classes: int | None = None) -> str:
    """One line, e.g. ``C3x3/1x32+BN+R > C3x3/2x64+S0 > GAP > FC10``.

    Each token is one backbone step: ``C<kh>x<kw>/<stride>x<channels>`` for a convolution,
    ``I`` for an identity; ``+BN+R`` when the vertex it feeds applies batch-norm + ReLU;
    ``+S<k>`` for a skip arriving from backbone vertex ``k`` (0 = the input).
    """
    path = dna.backbone()
    pos = {v: i for i, v in enumerate(path)}
    tokens = []
    for e in dna.backbone_edges():
        t = _edge_token(e)
        for s in sorted(dna.skips_into(e.dst), key=lambda s: pos[s.src]):
            t += f"+S{pos[s.src]}"
        if dna.vertex(e.dst).activation == "bn_relu":
            t += "+BN+R"
        tokens.append(t)
    tokens += ["GAP", f"FC{num_classes}" if num_classes is not None else "FC"]
    return " > ".join(tokens)


def render_dot(dna: DNA) -> str:
    """Graphviz DOT text: vertices with their activation, convs labelled, skips dashed."""
    lines = [
        "digraph dna {",
        "  rankdir=LR;",
        f'  label="lr={dna.learning_rate:.4g}";',
        "  node [shape=box, fontname=monospace];",
    ]
    for vid in dna.backbone():
        v = dna.vertex(vid)
        role = " (input)" if vid == dna.input_id else " (output)" if vid == dna.output_id else ""
        act = "BN+ReLU" if v.activation == "bn_relu" else "linear"
        lines.append(f'  {vid} [label="{vid}{role}\\n{act}"];')
    for e in dna.backbone_edges() + dna.skips():
        style = ", style=dashed" if e.skip else ""
        lines.append(f'  {e.src} -> {e.dst} [label="{e.id}: {_edge_token(e)}"{style}];')
    lines.append('  gap [label="GAP + FC", shape=ellipse];')
    lines.append(f"  {dna.output_id} -> gap;")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _genome_kind():
    from lse.core.genomes import GenomeKind

    return GenomeKind(
        name="dna",
        parse=DNA.model_validate,
        dump=lambda d: d.model_dump(mode="json"),
        render=render_line,
        depth=lambda d: d.depth(),
    )


#: the paper's DNA graph as a genome kind (lse.core.genomes)
GENOME = _genome_kind()
