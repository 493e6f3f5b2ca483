"""Where each tensor of a child comes from: the provenance map of weight inheritance.

Section 3.6 of the paper copies every parent tensor whose *name* and exact *shape* match the
child's, except those of the edges a mutation changed.  Two-parent variation (crossover,
weight recombination, structure fusion) needs more: a child tensor may come from either
parent, under another name, or row by row (a neuron or a filter with its fan-in, papers 002
and 003).  A :class:`Provenance` says all of that as plain data; :func:`lse.nn.inherit.inherit`
carries it out on tensors and counts what each parent gave.

Pure: no torch, no filesystem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TensorSource:
    """One child tensor's origin: ``parent``'s tensor ``name``.

    ``rows``/``into``: copy source rows ``rows[i]`` (along dimension 0: output channels of a
    convolution, output neurons of a linear layer) into child rows ``into[i]``; None copies the
    whole tensor.  Where the trailing dimensions differ (a fan-in that grew or shrank), the
    overlapping corner is copied and the rest keeps its fresh initialisation.

    Refinements of a row copy:

    * ``cols`` (paper 002's node-level crossover, where a node is a row with its whole fan-in):
      the fan-in map along dimension 1: child column ``c`` takes source column ``cols[c]``;
      None there (or beyond the source) keeps the fresh value.  Repairs a fan-in whose inputs
      were added, removed or reordered, where the corner would misalign them.
    * ``cols_at`` (structure fusion): the copied block lands at this offset of dimension 1 (the
      fan-in of a convolution, the features of the classifier) instead of at 0: the second
      parent's filters read the second parent's channels, placed after the first parent's.
    * ``centred``: dimensions 2 and up (a kernel's height and width) are aligned at their
      centres instead of their first element, so a kernel that grew or shrank keeps its
      central taps where they were (a 3x3 filter copied into a 5x5 one stays the same function
      of its neighbourhood).
    With ``cols_at`` or ``centred`` and ``rows`` None, every row is copied (the parent's tensor
    must have as many rows as the child's).
    """

    parent: str
    name: str
    rows: tuple[int, ...] | None = None
    into: tuple[int, ...] | None = None
    cols: tuple[int | None, ...] | None = None
    cols_at: int = 0
    centred: bool = False

    def __post_init__(self) -> None:
        if (self.rows is None) != (self.into is None):
            raise ValueError("rows and into go together")
        if self.rows is not None and len(self.rows) != len(self.into or ()):
            raise ValueError(f"rows {self.rows} and into {self.into} differ in length")
        if self.cols is not None and self.rows is None:
            raise ValueError("cols refines a row copy: give rows and into")
        if self.cols is not None and self.cols_at:
            raise ValueError("cols and cols_at are two ways of placing the fan-in: give one")
        if self.cols_at < 0:
            raise ValueError(f"cols_at must be >= 0, got {self.cols_at}")


@dataclass(frozen=True)
class Provenance:
    """The inheritance plan of one child.

    * ``default``: the parent whose tensors are copied by the same name when the shape matches
      exactly (section 3.6); None: only ``sources`` are copied.
    * ``blocked``: name prefixes never copied from ``default`` (the edges a mutation changed).
    * ``sources``: child tensor name -> its :class:`TensorSource` or a list of them (row
      pieces from several parents); these win over everything else.
    * ``by_prefix``: name prefix -> parent; tensors under the longest matching prefix come from
      that parent by the same name, falling back to ``default`` where its shape differs.
    """

    default: str | None = None
    blocked: tuple[str, ...] = ()
    sources: Mapping[str, TensorSource | tuple[TensorSource, ...]] = field(default_factory=dict)
    by_prefix: Mapping[str, str] = field(default_factory=dict)
    reset_all: bool = False  # a reset-weights mutation: nothing is inherited
    # Network morphism (not the paper; ExperimentConfig.morph, :meth:`morphism`): a ``default``
    # tensor whose shape differs is copied in part instead of re-initialised, and ``identity``
    # names new convolution weights that start as the identity.  lse.nn.inherit says how.
    morph: bool = False
    identity: tuple[str, ...] = ()
    # Function-preserving widening (structure fusion): these child tensors start at zero where
    # no source covers them, so new fan-in and new kernel taps add nothing yet.
    zero_rest: tuple[str, ...] = ()

    def parents(self) -> set[str]:
        out = {self.default} if self.default is not None else set()
        out.update(self.by_prefix.values())
        for src in self.sources.values():
            out.update(s.parent for s in _pieces(src))
        return out

    def plan(self, name: str) -> list[tuple[TensorSource, ...]]:
        """The alternatives for child tensor ``name``, in order of preference: the first that
        copies anything is used; none (or an empty list): fresh initialisation."""
        if self.reset_all:
            return []
        if name in self.sources:
            return [_pieces(self.sources[name])]
        out = []
        prefix = max((p for p in self.by_prefix if name.startswith(p)), key=len, default=None)
        if prefix is not None:
            out.append((TensorSource(self.by_prefix[prefix], name),))
        if self.default is not None and not name.startswith(self.blocked):
            out.append((TensorSource(self.default, name),))
        return out

    def then(self, record: object | None) -> "Provenance":
        """This plan after a mutation (:class:`~lse.core.mutations.MutationRecord`) of the
        child: nothing after a reset; otherwise the changed edges' tensors are taken from no
        parent at all (section 3.6), whichever rule named them."""
        if record is None:
            return self
        if getattr(record, "reset_all", False):
            return Provenance(reset_all=True)
        blocked = tuple(f"edges.{e}." for e in getattr(record, "changed_edges", ()))
        if not blocked:
            return self
        return Provenance(
            default=self.default,
            blocked=self.blocked + blocked,
            sources={k: v for k, v in self.sources.items() if not k.startswith(blocked)},
            by_prefix={p: q for p, q in self.by_prefix.items() if not p.startswith(blocked)},
            zero_rest=tuple(n for n in self.zero_rest if not n.startswith(blocked)),
        )

    @classmethod
    def from_mutation(cls, parent: str, record: object | None) -> "Provenance":
        """Section 3.6 for one parent and a :class:`~lse.core.mutations.MutationRecord` (None:
        no exclusions): same name and shape, minus the changed edges; nothing after a reset."""
        if record is None:
            return cls(default=parent)
        if getattr(record, "reset_all", False):
            return cls(reset_all=True)
        return cls(default=parent, blocked=tuple(f"edges.{e}." for e in getattr(record, "changed_edges", ())))

    @classmethod
    def morphism(cls, parent: str, record: object | None) -> "Provenance":
        """Inheritance that keeps the parent's function where the mutation allows (network
        morphism, Chen et al. 2016 *Net2Net*; Elsken et al. 2017; not the paper, which
        re-initialises every tensor whose shape changed).  Every tensor is taken from ``parent``
        by name, changed edges included: where the shape differs, the overlap is copied (kernels
        centred) and new fan-in starts at zero, so added channels and a grown kernel change
        nothing until training moves them.  An inserted convolution starts as the identity on
        the channels it shares with its input.  A reset still inherits nothing."""
        if record is None:
            return cls(default=parent, morph=True)
        if getattr(record, "reset_all", False):
            return cls(reset_all=True)
        return cls(default=parent, morph=True, identity=tuple(f"edges.{e}.weight" for e in inserted_convolutions(record)))


def inserted_convolutions(record: object) -> list[str]:
    """Ids of the convolution edges ``record`` (a MutationRecord, or a chain of them, as
    :func:`lse.core.mutations.mutate_many` writes) inserted."""
    name, details = getattr(record, "name", ""), getattr(record, "details", {}) or {}
    return _inserted(name, details)


def _inserted(name: str, details: Mapping) -> list[str]:
    if name == "insert_convolution" and isinstance(details.get("edge"), str):
        return [details["edge"]]
    out: list[str] = []
    for r in details.get("chain", ()) if isinstance(details.get("chain"), list) else ():
        if isinstance(r, Mapping):
            out += _inserted(str(r.get("name", "")), r.get("details") or {})
    return out


def _pieces(src: TensorSource | tuple[TensorSource, ...]) -> tuple[TensorSource, ...]:
    return (src,) if isinstance(src, TensorSource) else tuple(src)
