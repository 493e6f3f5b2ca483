"""lse: Large-Scale Evolution of Image Classifiers (Real et al., ICML 2017).

The public API for notebooks and other tools::

    import random, lse
    dna = lse.initial_dna()                                   # section 3.3
    child, record = lse.mutate(dna, random.Random(0))         # section 3.2
    model = lse.build_model(child, (3, 32, 32), 10)           # torch.nn.Module
    report = lse.inherit_weights(model, parent_state, record) # section 3.6
    cost = lse.count_flops(child, (3, 32, 32), 10, 50)        # section 3.5
    print(lse.render_line(child, 10))
    model, preprocess = lse.load("population", "best")      # trained nn.Module, eval mode

``import lse`` stays torch-free: the torch-dependent names are imported on first use.
"""

from __future__ import annotations

from typing import Any

from lse.core.dna import DNA, initial_dna, render_dot, render_line
from lse.core.mutations import MUTATION_NAMES, MutationRecord, mutate

__version__ = "0.1.0"

_LAZY = {
    "build_model": "lse.nn.build",
    "inherit_weights": "lse.nn.inherit",
    "InheritanceReport": "lse.nn.inherit",
    "count_flops": "lse.nn.flops",
    "FlopCount": "lse.nn.flops",
    "load": "lse.reports.models",
}

__all__ = [
    "DNA", "MUTATION_NAMES", "MutationRecord", "initial_dna", "mutate", "render_dot", "render_line",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lse' has no attribute {name!r}")
