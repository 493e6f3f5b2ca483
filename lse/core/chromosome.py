"""Chromosomes of a fixed net's weights and seed 003's genetic operators on them.

Two encodings of the same weight tensors (section 4.1), and the same operators for both:

* **Accordion** (the paper's "semi-folded" chromosome): one gene per convolution filter or per
  dense neuron's incoming weight vector -- one ROW of a weight tensor along its output axis.
* **Traditional**: one gene per scalar weight.

Genes are numbered tensor by tensor in the net's order, so the feature-extraction section
(convolutions) comes first and the classifier section (dense layers) after it.

Operators (sections 4.1.1-4.1.3, 5):

* :func:`crossover_mask` -- uniform crossover: each gene from either parent by a fair coin;
  :func:`complement` gives the second, complementary child of a pair (Figure 8).
* :func:`mutation_sites` -- in each section, ``int(ratio x section genes)`` distinct genes,
  uniformly at random (MNIST net, Accordion: int(0.1 x 66) = 6 filters, int(0.1 x 50) = 5
  neurons).  What a mutation does to a gene's values (a filter's become N(v, 0.5); a neuron gets
  a draw of the initialisation distribution added) is :mod:`lse.nn.chromosome`'s: noise is torch's.
* :func:`plan_variation` -- a child's whole decision from a :class:`Variation` (seeds and flags,
  small enough for the record): which parent gives each gene, which genes mutate.  The record
  keeps the seeds; anyone can replay the decision.

Pure: no torch, no filesystem.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lse.core.fixednet import TensorShape

ENCODINGS = ("accordion", "traditional")
Encoding = Literal["accordion", "traditional"]


@dataclass(frozen=True)
class Chromosome:
    """The genes of a net's weight tensors under one encoding."""

    encoding: str
    tensors: tuple[TensorShape, ...]

    def genes_of(self, t: TensorShape) -> int:
        """Genes of one tensor: its rows (Accordion) or its scalars (traditional)."""
        return t.rows if self.encoding == "accordion" else t.size

    @property
    def offsets(self) -> tuple[int, ...]:
        """Index of the first gene of each tensor."""
        out, n = [], 0
        for t in self.tensors:
            out.append(n)
            n += self.genes_of(t)
        return tuple(out)

    @property
    def length(self) -> int:
        return sum(self.genes_of(t) for t in self.tensors)

    def section_range(self, section: str) -> range:
        """Gene indices of a section ("features" or "classifier"): contiguous, in net order."""
        idx = [i for i, t in enumerate(self.tensors) if t.section == section]
        if not idx:
            return range(0)
        offsets = self.offsets
        start = offsets[idx[0]]
        stop = offsets[idx[-1]] + self.genes_of(self.tensors[idx[-1]])
        return range(start, stop)

    def section_genes(self) -> dict[str, int]:
        return {s: len(self.section_range(s)) for s in ("features", "classifier")}


def chromosome(tensors: Sequence[TensorShape], encoding: str) -> Chromosome:
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; valid: {', '.join(ENCODINGS)}")
    sections = [t.section for t in tensors]
    if sections != sorted(sections, key=lambda s: s != "features"):
        raise ValueError("the feature-extraction tensors must come before the classifier's")
    return Chromosome(encoding, tuple(tensors))


def crossover_mask(length: int, rng: random.Random) -> tuple[int, ...]:
    """Uniform crossover: for each gene, 0 (first parent) or 1 (second) by a fair coin."""
    if length <= 0:
        return ()
    bits = format(rng.getrandbits(length), f"0{length}b")
    return tuple(1 if c == "1" else 0 for c in bits)


def complement(mask: Sequence[int]) -> tuple[int, ...]:
    """The complementary child's mask: each gene from the other parent (Figure 8)."""
    return tuple(1 - m for m in mask)


def mutation_sites(chrom: Chromosome, rng: random.Random, ratio: float = 0.1) -> tuple[int, ...]:
    """Genes to mutate: ``int(ratio x genes)`` distinct genes of each section, uniformly at
    random (section 5), sorted."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mutation ratio {ratio} is not in [0, 1]")
    out: list[int] = []
    for section in ("features", "classifier"):
        r = chrom.section_range(section)
        out.extend(rng.sample(r, int(ratio * len(r))))
    return tuple(sorted(out))


class Variation(BaseModel):
    """How one child is made, as recorded (``extra.variation``).

    ``op``: "crossover" (two parents, uniform mask; ``complement``: the pair's second child),
    or "mutation" (a clone of one parent).  ``mutation_seed`` set: the child is also mutated
    (in-place mutation of the generational and elitism schemes; always for "mutation")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    op: Literal["crossover", "mutation"]
    encoding: Encoding = "accordion"
    mask_seed: int | None = Field(None, description="seed of the crossover mask (shared by a complementary pair)")
    complement: bool = Field(False, description="the complementary child of the pair")
    mutation_seed: int | None = Field(None, description="seed of the mutation sites and noise; None: not mutated")
    mutation_ratio: float = Field(0.1, ge=0.0, le=1.0, description="genes mutated per section, as a fraction")
    filter_sigma: float = Field(0.5, gt=0.0, description="standard deviation of a mutated filter value's N(v, sigma)")


@dataclass(frozen=True)
class VariationPlan:
    """A child's genes: ``source[i]`` = index of the parent giving gene i (all 0 for a clone);
    ``mutate`` = the genes whose values are perturbed."""

    source: tuple[int, ...]
    mutate: tuple[int, ...]

    def counts(self, chrom: Chromosome) -> dict:
        """Genes from each parent and mutated per section (what the record keeps)."""
        first = self.source.count(0)
        per_section = {s: sum(1 for i in self.mutate if i in chrom.section_range(s)) for s in ("features", "classifier")}
        return {"genes": len(self.source), "from_first": first, "from_second": len(self.source) - first,
                "mutated": per_section}


def plan_variation(chrom: Chromosome, v: Variation) -> VariationPlan:
    """Replay a child's decisions from its recorded :class:`Variation` (deterministic)."""
    if v.encoding != chrom.encoding:
        raise ValueError(f"variation for the {v.encoding} encoding applied to a {chrom.encoding} chromosome")
    if v.op == "crossover":
        if v.mask_seed is None:
            raise ValueError("a crossover needs its mask_seed")
        mask = crossover_mask(chrom.length, random.Random(v.mask_seed))
        source = complement(mask) if v.complement else mask
    else:
        source = (0,) * chrom.length
    sites = () if v.mutation_seed is None else mutation_sites(chrom, random.Random(v.mutation_seed), v.mutation_ratio)
    return VariationPlan(source, sites)


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (stable across processes and Python versions, unlike hash())."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1
