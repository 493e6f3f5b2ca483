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


def apply_plan(chrom: Chromosome, parents: Sequence[dict], plan: VariationPlan, *, seed: int,
               filter_sigma: float) -> dict[str, torch.Tensor]:
    """The child's weights: gene i from ``parents[plan.source[i]]``, then the mutated genes
    perturbed with noise from a generator seeded by ``seed``.  Parents' tensors are not modified.
    (:func:`apply_plans` for one child: the same values, draw for draw.)"""
    names = [t.name for t in chrom.tensors]
    first = {n: parents[0][n].detach().to("cpu", torch.float32).unsqueeze(0) for n in names}
    second = {n: parents[-1][n].detach().to("cpu", torch.float32).unsqueeze(0) for n in names}
    mutate = torch.zeros(1, chrom.length, dtype=torch.bool)
    if plan.mutate:
        mutate[0, torch.tensor(plan.mutate, dtype=torch.int64)] = True
    source = torch.tensor(plan.source, dtype=torch.bool).unsqueeze(0)
    out = apply_plans(chrom, first, second, source, mutate, torch.Generator().manual_seed(seed), filter_sigma)
    return {n: t.squeeze(0).contiguous() for n, t in out.items()}


def apply_plans(chrom: Chromosome, first: dict[str, torch.Tensor], second: dict[str, torch.Tensor],
                source: torch.Tensor, mutate: torch.Tensor, generator: torch.Generator,
                filter_sigma: float) -> dict[str, torch.Tensor]:
    """N children at once.  ``first[name]``, ``second[name]``: (N, *shape), child k's two
    parents (the same tensor twice for a clone); ``source`` (N, genes) bool: gene from the
    second parent; ``mutate`` (N, genes) bool: gene perturbed, with noise drawn from
    ``generator`` (per tensor, for all N children, only where some child mutates that tensor)."""
    dev = next(iter(first.values())).device
    source, mutate = source.to(dev), mutate.to(dev)
    out: dict[str, torch.Tensor] = {}
    for i, (t, start) in enumerate(zip(chrom.tensors, chrom.offsets)):
        stop = start + chrom.genes_of(t)
        child = torch.where(_expand_rows(chrom, i, source[:, start:stop]), second[t.name], first[t.name])
        m = mutate[:, start:stop]
        if bool(m.any()):
            n = child.shape[0]
            if t.section == "features":
                noise = torch.randn((n, *t.shape), generator=generator) * filter_sigma
            else:
                noise = glorot_normal(t, generator, leading=(n,))
            child = torch.where(_expand_rows(chrom, i, m), child + noise.to(dev), child)
        out[t.name] = child
    return out


def _expand_rows(chrom: Chromosome, i: int, per_gene: torch.Tensor) -> torch.Tensor:
    """Per-gene values (N, genes of tensor i) in the tensor's shape, (N, *shape)."""
    t = chrom.tensors[i]
    n = per_gene.shape[0]
    if chrom.encoding == "accordion":
        return per_gene.view(n, t.rows, *([1] * (len(t.shape) - 1))).expand(n, *t.shape)
    return per_gene.view(n, *t.shape)
