"""A compute budget per child (issue 30): at one machine a child's cost must count.

The paper trains every child the same number of steps whatever its size (it had 250 GPUs).
With ``child_flops`` set, a child trains ``min(steps, child_flops / F_t)`` steps, F_t being its
training FLOPs per batch (section 3.5): a network ten times as expensive trains ten times fewer
steps, so it is judged on what it learns for the same compute, and no child takes longer than
the budget allows.  One that could not train even ``min_steps`` within the budget is refused
before training (its record says why)."""

from __future__ import annotations

import math

#: how a refused child's record begins (its failed_reason)
REFUSED = "over the per-child compute budget"


def refused(failed_reason: str | None) -> bool:
    """Whether a child's ``failed_reason`` says the budget refused it before training."""
    return bool(failed_reason and failed_reason.startswith(REFUSED))


def steps_within(steps: int, flops_per_step: float, budget: float | None, min_steps: int) -> int | None:
    """Steps a child trains under ``budget`` FLOPs (None: no budget, ``steps``); None: refused,
    the budget does not cover ``min_steps``.  A child that trains no steps (evaluated only)
    costs no training and is never refused."""
    if budget is None or steps <= 0 or flops_per_step <= 0:
        return steps
    affordable = math.floor(budget / flops_per_step)
    if affordable < min(min_steps, steps):
        return None
    return min(steps, affordable)
