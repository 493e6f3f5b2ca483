"""Two-parent variation of the paper's DNA graph.

:func:`recombine` keeps the structure of the first parent and draws, module by module, from
which parent the trained weights come: every convolution edge, batch-norm vertex and the
classifier that exists in both parents (same stable id: they share the ancestor that created
it) comes from either with probability 1/2.  Where the chosen parent's tensor has another shape
(its copy was mutated since), the first parent's is used, and failing that the tensor starts
fresh (:func:`lse.nn.inherit.inherit`).  The learning rate comes from either parent.

Pure: DNA and provenance data, no torch.
"""

from __future__ import annotations

import random

from lse.core.dna import DNA
from lse.core.provenance import Provenance


def recombine(first: DNA, first_id: str, second: DNA, second_id: str, rng: random.Random) -> tuple[DNA, Provenance]:
    """The child DNA (``first``'s structure, either learning rate) and its provenance map."""
    shared = sorted(
        [f"edges.{e.id}." for e in first.conv_edges() if e.id in {x.id for x in second.conv_edges()}]
        + [f"vertices.{v.id}." for v in first.vertices if v.id in {x.id for x in second.vertices}]
        + ["classifier."]
    )
    by_prefix = {p: second_id for p in shared if rng.random() < 0.5}
    lr = first.learning_rate if rng.random() < 0.5 else second.learning_rate
    child = first.model_copy(update={"learning_rate": lr})
    return child, Provenance(default=first_id, by_prefix=by_prefix)
