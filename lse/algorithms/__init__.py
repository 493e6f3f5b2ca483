"""Every algorithm, one module per paper, behind the seam of :mod:`lse.algorithms.base`.

``experiment.json`` names one (``algorithm: {name, options}``); ``lse algorithms`` lists them.
"""

from __future__ import annotations

from lse.algorithms.base import Algorithm, AlgorithmSpec
from lse.algorithms.ea4cnn import EA4CNN
from lse.algorithms.real2017 import Real2017
from lse.algorithms.recombination import Recombination
from lse.algorithms.regularized import Regularized
from lse.algorithms.pycortex import PyCortex
from lse.algorithms.testbed import ParetoTestbed
from lse.algorithms.twostep import TwoStepAutoencoder
from lse.algorithms.weightga import WeightElitism, WeightGenerational, WeightSteadyState

#: name -> class, in the order ``lse algorithms`` lists them
ALGORITHMS: dict[str, type[Algorithm]] = {cls.name: cls for cls in (Real2017, Regularized, ParetoTestbed, PyCortex, EA4CNN, WeightSteadyState, WeightGenerational, WeightElitism, TwoStepAutoencoder, Recombination)}


def algorithm_class(name: str) -> type[Algorithm]:
    """The class registered as ``name``; ValueError naming the valid ones otherwise."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; valid: {', '.join(ALGORITHMS)} (see `lse algorithms`)") from None


def make_algorithm(config) -> Algorithm:
    """The algorithm of an experiment, with its options."""
    return algorithm_class(config.algorithm.name)(config)


def describe() -> list[dict]:
    """Every algorithm with its paper, summary and options (name, default, meaning): what
    ``lse algorithms`` prints."""
    out = []
    for name, cls in ALGORITHMS.items():
        options = [
            {"name": k, "default": f.default, "meaning": f.description or ""}
            for k, f in cls.Options.model_fields.items()
        ]
        out.append({"name": name, "paper": cls.paper, "summary": cls.summary, "generational": cls.generational,
                    "random_control": cls.random_control, "options": options})
    return out


__all__ = ["ALGORITHMS", "Algorithm", "AlgorithmSpec", "algorithm_class", "describe", "make_algorithm"]
