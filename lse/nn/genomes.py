"""Building a torch model from any genome kind (the pure side is :mod:`lse.core.genomes`).

Each kind names a builder ``(genome, input_shape, num_classes) -> nn.Module`` whose tensor
names are stable across variation (weight inheritance copies by name, section 3.6), imported on
first use like the genome kinds themselves.
"""

from __future__ import annotations

import importlib

import torch
from torch import nn

from lse.core.genomes import parse_genome
from lse.nn.flops import FlopCount, measure_flops

#: genome kind -> "module:function" building its model
BUILDERS: dict[str, str] = {
    "dna": "lse.nn.build:build_model",
    "cortex": "lse.nn.cortex:build_cortex",
    "layerlist": "lse.nn.layerlist:build_layerlist",  # EA4CNN (seed 001)
    "fixed-net": "lse.nn.fixednet:build_fixed_net",
    "autoencoder": "lse.nn.autoencoder:build_autoencoder",
}


def builder(kind: str):
    target = BUILDERS.get(kind)
    if target is None:
        raise ValueError(f"no model builder for genome kind {kind!r} (known: {', '.join(BUILDERS)})")
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def build(kind: str, genome: object, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """The model of ``genome`` (an object of its kind, or its JSON)."""
    if isinstance(genome, dict):
        genome = parse_genome(kind, genome)
    return builder(kind)(genome, input_shape, num_classes)


def flops(kind: str, genome: object, input_shape: tuple[int, int, int], num_classes: int, batch_size: int,
          eval_batch_size: int | None = None) -> FlopCount:
    """F_t, F_v and parameters of any genome (section 3.5), counted on the meta device.  The
    paper's DNA goes through lse.nn.flops.count_flops (cached by its JSON)."""
    if isinstance(genome, dict):
        genome = parse_genome(kind, genome)
    if kind == "dna":
        from lse.nn.flops import count_flops

        return count_flops(genome, input_shape, num_classes, batch_size, eval_batch_size)
    dump = getattr(genome, "model_dump_json", None)
    key = dump() if dump is not None else repr(genome)
    return _flops(kind, key, genome, tuple(input_shape), int(num_classes), int(batch_size),
                  int(eval_batch_size or batch_size))


_CACHE: dict[tuple, FlopCount] = {}


def _flops(kind, key, genome, input_shape, num_classes, batch_size, eval_batch_size) -> FlopCount:
    k = (kind, key, input_shape, num_classes, batch_size, eval_batch_size)
    if k not in _CACHE:
        with torch.device("meta"):
            model = builder(kind)(genome, input_shape, num_classes)
        train, evaluation = measure_flops(model, input_shape, num_classes, batch_size, eval_batch_size, device="meta")
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if len(_CACHE) > 1024:
            _CACHE.clear()
        _CACHE[k] = FlopCount(train_per_batch=train, eval_per_batch=evaluation, params=params)
    return _CACHE[k]


