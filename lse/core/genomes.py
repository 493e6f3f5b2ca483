"""Genome kinds: what an individual's ``dna`` field holds, for every algorithm.

The paper's individuals carry the DNA graph of :mod:`lse.core.dna`; other papers evolve other
genomes (a convolutional autoencoder, a layer list, a fixed network's weights).  A record says
which in ``genome`` and keeps the genome's JSON in ``dna``.  Each kind is a :class:`GenomeKind`
in its own pure module, named in :data:`GENOME_MODULES` and imported on first use, so the store
can validate (and quarantine) any record without knowing the algorithms, and nothing has to be
imported in the right order.

The torch side (building a model from a genome) is :mod:`lse.nn.genomes`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: genome kind -> "module:attribute" of its GenomeKind (imported lazily)
GENOME_MODULES: dict[str, str] = {
    "dna": "lse.core.dna:GENOME",
    "cortex": "lse.core.cortex:GENOME",
    "layerlist": "lse.core.layerlist:GENOME",  # EA4CNN (seed 001)
    "fixed-net": "lse.core.fixednet:GENOME",  # seed 003: a fixed net whose weights evolve
    "autoencoder": "lse.core.autoencoder:GENOME",
}


@dataclass(frozen=True)
class GenomeKind:
    """How to read, write and describe one kind of genome.  ``parse`` raises (ValueError,
    pydantic's ValidationError, LseError) on anything malformed."""

    name: str
    parse: Callable[[dict], Any]
    dump: Callable[[Any], dict]
    render: Callable[[Any, int | None], str]  # one line for tables (num_classes may be None)
    depth: Callable[[Any], int | None] = lambda _g: None


def genome_kind(name: str) -> GenomeKind:
    """The kind registered as ``name``; ValueError for an unknown one (a newer lse wrote it)."""
    target = GENOME_MODULES.get(name)
    if target is None:
        raise ValueError(f"unknown genome kind {name!r} (known: {', '.join(GENOME_MODULES)}); upgrade lse")
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def parse_genome(kind: str, data: object) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"a {kind} genome is a JSON object, got {type(data).__name__}")
    return genome_kind(kind).parse(data)


def describe(kind: str, data: object, num_classes: int | None = None) -> tuple[str, int | None]:
    """(one-line rendering, depth) of a record's genome; never raises: a malformed genome is
    shown as such (reports and tables must survive a hostile record)."""
    try:
        k = genome_kind(kind)
        g = parse_genome(kind, data)
        return k.render(g, num_classes), k.depth(g)
    except Exception as e:  # noqa: BLE001
        msg = getattr(e, "message", None) or (str(e).splitlines()[0] if str(e) else type(e).__name__)
        return f"(invalid {kind} genome: {msg})", None
