"""Weight inheritance (paper, section 3.6).

The child is built fresh (He-initialised, :mod:`lse.nn.build`); then every tensor of the parent's
state dict whose NAME and exact SHAPE match a tensor of the child is copied into it --
parameters and buffers alike (batch-norm running mean/var and ``num_batches_tracked``).
Names derive from stable DNA ids, so a tensor keeps its name across mutations.  Exceptions,
taken from the :class:`lse.core.mutations.MutationRecord`:

* ``record.reset_all`` (reset-weights): nothing is copied;
* ``record.changed_edges``: the tensors of these edges (``edges.<id>.*``) are not copied even
  where the shape matches (e.g. a filter-size mutation: the old filter means nothing now).

So identity and alter-learning-rate keep everything, filter-size loses only the mutated
convolution, and a change of width re-initialises exactly the tensors whose shape changed.

Two-parent variation generalises this to a provenance map (:mod:`lse.core.provenance`): each
child tensor, or rows of it, from a named parent; :func:`inherit` carries it out and counts the
tensors each parent gave.  :func:`inherit_weights` is the one-parent case of section 3.6.

Network morphism (``ExperimentConfig.morph``, not the paper; :meth:`Provenance.morphism`)
copies the overlap of a tensor whose shape changed instead of re-initialising it, with new
fan-in at zero and inserted convolutions starting as the identity: a child computes what its
parent computed, exactly after a widening or a grown kernel, approximately after the rest.

Inheritance off (``ExperimentConfig.inheritance == False``, the paper's control) is simply
*not calling* this function: the child keeps its fresh initialisation.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from pydantic import BaseModel, Field
from torch import nn

from lse.core.mutations import MutationRecord
from lse.core.provenance import Provenance, TensorSource


class InheritanceReport(BaseModel):
    """What inheritance did; ``kept + reinitialised`` = number of tensors in the child's state."""

    kept: int = Field(description="child tensors copied (whole or in part) from a parent")
    reinitialised: int = Field(description="child tensors left at their fresh initialisation")
    kept_names: list[str] = Field(default_factory=list)
    reinitialised_names: list[str] = Field(default_factory=list)
    by_parent: dict[str, int] = Field(default_factory=dict, description="parent id -> child tensors it gave")

    def summary(self) -> dict:
        """The part saved in an individual's record: ``{"kept", "reinitialised", "by_parent"}``."""
        return {"kept": self.kept, "reinitialised": self.reinitialised, "by_parent": dict(self.by_parent)}


def inherit_weights(
    child: nn.Module, parent_state: Mapping[str, torch.Tensor], record: MutationRecord | None
) -> InheritanceReport:
    """Copy into ``child`` (in place) each tensor of ``parent_state`` whose name and shape
    match, except those excluded by ``record`` (see the module docstring).  ``record`` None:
    no exclusions.  Tensors are copied across devices and dtypes as needed."""
    return inherit(child, {"parent": parent_state}, Provenance.from_mutation("parent", record))


def inherit(
    child: nn.Module, states: Mapping[str, Mapping[str, torch.Tensor]], provenance: Provenance
) -> InheritanceReport:
    """Carry out ``provenance`` (:mod:`lse.core.provenance`): copy into ``child`` (in place)
    the tensors it names from ``states`` (parent id -> state dict).

    A whole-tensor source is copied only when its shape matches exactly (section 3.6); a
    row source copies the listed rows, and of their trailing dimensions the overlapping corner.
    A source whose parent or tensor is missing, or whose rows are out of range, is skipped:
    that part keeps its fresh initialisation.  A child tensor counts as kept when at least one
    piece was copied, and is credited to each parent that gave a piece."""
    kept: list[str] = []
    fresh: list[str] = []
    by_parent: dict[str, int] = {}
    with torch.no_grad():
        for name, tensor in child.state_dict().items():  # tensors share storage with the module
            givers: set[str] = set()
            fresh_values = None
            if name in provenance.zero_rest:  # what no piece covers starts at zero
                fresh_values = tensor.clone()
                tensor.zero_()
            for pieces in provenance.plan(name):
                givers = {s.parent for s in pieces if _copy(tensor, states, s)}
                if givers:
                    break
            if not givers and fresh_values is not None:
                tensor.copy_(fresh_values)  # nothing copied: the fresh initialisation after all
            if not givers and provenance.morph and provenance.default is not None:
                src = states.get(provenance.default, {}).get(name)
                givers = {provenance.default} if src is not None and _morph_copy(tensor, src) else set()
            if not givers:
                if name in provenance.identity:
                    _identity_(tensor)
                fresh.append(name)
                continue
            kept.append(name)
            for p in givers:
                by_parent[p] = by_parent.get(p, 0) + 1
    return InheritanceReport(kept=len(kept), reinitialised=len(fresh), kept_names=kept, reinitialised_names=fresh,
                             by_parent=by_parent)


def _morph_copy(tensor: torch.Tensor, src: torch.Tensor) -> bool:
    """Network morphism's copy of a tensor whose shape changed (:meth:`Provenance.morphism`):
    the overlap of every dimension, kernels (dimensions 2 and up) centre-aligned.  In the rows
    copied, fan-in columns the source lacks and kernel taps outside its kernel start at zero,
    so new input channels and a grown kernel add nothing yet; new rows (new output channels)
    keep their fresh initialisation.  False where nothing overlaps (nothing is copied)."""
    if src.dim() != tensor.dim() or src.dim() == 0:
        return False
    overlap = [min(a, b) for a, b in zip(src.shape, tensor.shape)]
    if min(overlap) <= 0:
        return False
    src = src.to(tensor.device, tensor.dtype)
    if tensor.dim() >= 2:
        tensor[: overlap[0]] = 0
    dst_ix, src_ix = [], []
    for d, m in enumerate(overlap):
        a, b = src.shape[d], tensor.shape[d]
        if d >= 2:  # kernel height, width: centred
            src_ix.append(slice((a - m) // 2, (a - m) // 2 + m))
            dst_ix.append(slice((b - m) // 2, (b - m) // 2 + m))
        else:
            src_ix.append(slice(0, m))
            dst_ix.append(slice(0, m))
    tensor[tuple(dst_ix)] = src[tuple(src_ix)]
    return True


def _identity_(weight: torch.Tensor) -> None:
    """A fresh convolution weight (out, in, kh, kw) to the identity on the channels its input
    and output share: output channel i copies input channel i through the kernel's centre.
    Further output channels keep their fresh initialisation (zeros there could never learn:
    their consumers' fan-in starts at zero too)."""
    if weight.dim() != 4:
        return
    n = min(weight.shape[0], weight.shape[1])
    weight[:n] = 0
    idx = torch.arange(n, device=weight.device)
    weight[idx, idx, weight.shape[2] // 2, weight.shape[3] // 2] = 1


def _copy(tensor: torch.Tensor, states: Mapping[str, Mapping[str, torch.Tensor]], s: TensorSource) -> bool:
    src = states.get(s.parent, {}).get(s.name)
    if src is None:
        return False
    if s.rows is None and not (s.cols_at or s.centred):
        if tuple(src.shape) != tuple(tensor.shape):
            return False
        tensor.copy_(src)
        return True
    if src.dim() != tensor.dim() or src.dim() == 0:
        return False
    rows, into = s.rows, s.into
    if rows is None:  # every row (structure fusion: the classifier's classes)
        if src.shape[0] != tensor.shape[0]:
            return False
        rows = into = tuple(range(src.shape[0]))
    if max(rows, default=-1) >= src.shape[0] or max(into or (), default=-1) >= tensor.shape[0]:
        return False
    rows_src = src[list(rows)].to(tensor.device, tensor.dtype)
    idx = torch.tensor(into, device=tensor.device)
    target = tensor.index_select(0, idx)
    src_ix: list = [slice(None)]
    dst_ix: list = [slice(None)]
    for d, (a, b) in enumerate(zip(src.shape[1:], tensor.shape[1:]), start=1):
        if d == 1 and s.cols is not None:  # a repaired fan-in (node-level crossover)
            pairs = [(c, x) for c, x in enumerate(s.cols[:b]) if x is not None and 0 <= x < a]
            if not pairs:
                return False  # no column of this fan-in exists in the source
            dst_ix.append(torch.tensor([c for c, _ in pairs], device=tensor.device))
            src_ix.append(torch.tensor([x for _, x in pairs], device=tensor.device))
            continue
        at = s.cols_at if d == 1 else 0
        m = min(a, b - at)
        if m <= 0:
            return False
        if d >= 2 and s.centred:  # centre-aligned: crop the larger, place it in the middle
            src_ix.append(slice((a - m) // 2, (a - m) // 2 + m))
            dst_ix.append(slice((b - m) // 2, (b - m) // 2 + m))
        else:
            src_ix.append(slice(0, m))
            dst_ix.append(slice(at, at + m))
    if s.cols is not None and src.dim() > 2:
        # advanced indexing on dimension 1 only: move it first, slice the rest, move it back
        piece = rows_src[tuple(src_ix[:1])].index_select(1, src_ix[1])[(slice(None), slice(None), *src_ix[2:])]
        view = target[(slice(None), slice(None), *dst_ix[2:])]
        view.index_copy_(1, dst_ix[1], piece)
    elif s.cols is not None:
        target.index_copy_(1, dst_ix[1], rows_src.index_select(1, src_ix[1]))
    else:
        target[tuple(dst_ix)] = rows_src[tuple(src_ix)]
    tensor.index_copy_(0, idx, target)
    return True
