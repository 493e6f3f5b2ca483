"""EA4CNN's size-aware fitness (seed 001, equation 1) and its energy estimate (section 3.6).

    f = a * (k / log(s_rel + 1) + 1)   if a >= a_min
    f = 0                              otherwise

``a`` is the accuracy on the fitness split (the validation split here; never the test split),
``s_rel`` the parameter count over that of a reference network (the seed network, or the best
network of the initial population, frozen once).  ``log`` is the natural logarithm (the paper
does not say; with it a network of the reference's size scores a * 1.72 at k = 0.5).

The size reward k / log(s_rel + 1) grows without bound as s_rel -> 0 (a 1,000-parameter network
against a 300k reference would score ~150 a): the a_min gate alone keeps a tiny, useless network
out, and only while its accuracy is below a_min.  Here s_rel is floored at ``s_rel_floor``
(default 0.01: nothing is rewarded for being more than 100 x smaller than the reference); the
raw and the floored values are both recorded in the objectives.

Pure: no torch, no filesystem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: energy of a 32-bit float multiplication over that of a 16-bit fixed-point one (65 nm, [2])
C1_FIXED16 = 2.4


@dataclass(frozen=True)
class SizeFitness:
    """Equation 1 with its constants: k, a_min and the floor on s_rel."""

    k: float = 0.5
    a_min: float = 0.8
    s_rel_floor: float = 0.01

    def relative_size(self, params: int, reference_params: int) -> tuple[float, float]:
        """(raw s_rel, the s_rel used: raw floored at ``s_rel_floor``)."""
        if reference_params <= 0:
            raise ValueError(f"reference network has {reference_params} parameters; it needs at least one")
        raw = params / reference_params
        return raw, max(raw, self.s_rel_floor)

    def __call__(self, accuracy: float, params: int, reference_params: int) -> float:
        if not accuracy >= self.a_min:  # also false for NaN
            return 0.0
        _, s = self.relative_size(params, reference_params)
        return accuracy * (self.k / math.log(s + 1.0) + 1.0)


def energy_reduction(params_orig: int, params_red: int, *, fixed_point: bool, c1: float = C1_FIXED16) -> float:
    """Section 3.6: E_mult shrinks about c1 * params_orig / params_red times (each parameter is
    used by at least one multiplication); c1 = 2.4 with 16-bit fixed-point multipliers instead
    of 32-bit float ones, 1 for float."""
    if params_red <= 0:
        raise ValueError(f"a network with {params_red} parameters has no multiplications to compare")
    return (c1 if fixed_point else 1.0) * params_orig / params_red


__all__ = ["C1_FIXED16", "SizeFitness", "energy_reduction"]
