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

Inheritance off (``ExperimentConfig.inheritance == False``, the paper's control) is simply
*not calling* this function: the child keeps its fresh initialisation.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from pydantic import BaseModel, Field
from torch import nn

from lse.core.mutations import MutationRecord


class InheritanceReport(BaseModel):
    """What inheritance did; ``kept + reinitialised`` = number of tensors in the child's state."""

    kept: int = Field(description="child tensors copied from the parent")
    reinitialised: int = Field(description="child tensors left at their fresh initialisation")
    kept_names: list[str] = Field(default_factory=list)
    reinitialised_names: list[str] = Field(default_factory=list)

    def summary(self) -> dict[str, int]:
        """The part saved in an individual's record: ``{"kept": k, "reinitialised": r}``."""
        return {"kept": self.kept, "reinitialised": self.reinitialised}


def inherit_weights(
    child: nn.Module, parent_state: Mapping[str, torch.Tensor], record: MutationRecord | None
) -> InheritanceReport:
    """Copy into ``child`` (in place) each tensor of ``parent_state`` whose name and shape
    match, except those excluded by ``record`` (see the module docstring).  ``record`` None:
    no exclusions.  Tensors are copied across devices and dtypes as needed."""
    blocked: tuple[str, ...] = ()
    if record is not None:
        if record.reset_all:
            names = list(child.state_dict())
            return InheritanceReport(kept=0, reinitialised=len(names), reinitialised_names=names)
        blocked = tuple(f"edges.{eid}." for eid in record.changed_edges)
    kept: list[str] = []
    fresh: list[str] = []
    with torch.no_grad():
        for name, tensor in child.state_dict().items():  # tensors share storage with the module
            src = parent_state.get(name)
            if src is None or tuple(src.shape) != tuple(tensor.shape) or name.startswith(blocked):
                fresh.append(name)
                continue
            tensor.copy_(src)
            kept.append(name)
    return InheritanceReport(kept=len(kept), reinitialised=len(fresh), kept_names=kept, reinitialised_names=fresh)
