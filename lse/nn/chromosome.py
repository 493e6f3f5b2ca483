"""Carrying out a child's gene plan on weight tensors (the decisions are :mod:`lse.core.chromosome`'s).

One code path for both encodings: a gene is a row of a weight tensor (Accordion) or one scalar
(traditional); the plan's per-gene choices are expanded to the tensor's shape, so the two
encodings differ only in how many scalars a gene covers.

Mutation noise (section 4.1.1, step 6), per mutated gene:
* feature extraction (a filter, or a scalar of one): each value v becomes N(v, filter_sigma);
* classifier (a neuron's incoming weights, or one of them): a draw of the initialisation
  distribution (Glorot normal of that layer) is added.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lse.core.chromosome import Chromosome, VariationPlan
from lse.nn.fixednet import glorot_normal


def _expand(chrom: Chromosome, i: int, per_gene: torch.Tensor) -> torch.Tensor:
    """Per-gene values of tensor ``i`` (its slice of the chromosome) in the tensor's shape."""
    t = chrom.tensors[i]
    if chrom.encoding == "accordion":
        return per_gene.view(t.rows, *([1] * (len(t.shape) - 1))).expand(t.shape)
    return per_gene.view(t.shape)


def apply_plan(chrom: Chromosome, parents: Sequence[dict], plan: VariationPlan, *, seed: int,
               filter_sigma: float) -> dict[str, torch.Tensor]:
    """The child's weights: gene i from ``parents[plan.source[i]]``, then the mutated genes
    perturbed with noise from a generator seeded by ``seed``.  Parents' tensors are not modified."""
    source = torch.tensor(plan.source, dtype=torch.int64)
    mutate = torch.zeros(chrom.length, dtype=torch.bool)
    if plan.mutate:
        mutate[torch.tensor(plan.mutate, dtype=torch.int64)] = True
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for i, (t, start) in enumerate(zip(chrom.tensors, chrom.offsets)):
        stop = start + chrom.genes_of(t)
        stacked = torch.stack([p[t.name].detach().to("cpu", torch.float32).reshape(t.shape) for p in parents])
        pick = _expand(chrom, i, source[start:stop]).unsqueeze(0)
        child = torch.gather(stacked, 0, pick).squeeze(0).clone()
        m = mutate[start:stop]
        if bool(m.any()):
            if t.section == "features":
                noise = torch.randn(t.shape, generator=g) * filter_sigma
            else:
                noise = glorot_normal(t, g)
            child = torch.where(_expand(chrom, i, m), child + noise, child)
        out[t.name] = child.contiguous()
    return out
