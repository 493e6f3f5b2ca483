"""The file of a hand-designed anchor (``POP/reference/<name>.json``, written by `lse reference`,
drawn by `lse report`): a standard CNN trained on the experiment's data with the experiment's
trainer, its accuracy recorded against its own wall time and FLOPs.  Pure: the schema only."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

REFERENCE_SCHEMA_VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


def is_reference_name(name: str) -> bool:
    """Letters, digits, '-' and '_', at most 80: a file name on every filesystem."""
    return bool(_NAME.match(name))


class ReferencePoint(BaseModel):
    """The anchor after ``steps`` SGD steps."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seconds: float = Field(ge=0, description="wall time spent training and validating so far (test evaluation excluded)")
    steps: int = Field(ge=0, description="SGD steps so far")
    flops: float = Field(ge=0, description="F_t * N_t + F_v * N_v so far (section 3.5, as the experiment counts)")
    val_accuracy: float = Field(ge=0, le=1, description="accuracy on the experiment's validation split")
    test_accuracy: float = Field(ge=0, le=1, description="accuracy on the test split (a report's number; never trained on)")


class ReferenceCurve(BaseModel):
    """One anchor's run: what was trained, how, where, and its points in order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(REFERENCE_SCHEMA_VERSION, le=REFERENCE_SCHEMA_VERSION)
    name: str = Field(description="file name, also the legend's label")
    architecture: str = Field(description="the network, in words")
    params: int = Field(ge=0, description="trainable parameters")
    learning_rate: float = Field(gt=0)
    batch_size: int = Field(ge=1)
    seed: int
    threads: int = Field(ge=1, description="intra-op threads it trained with")
    device: str
    host: str
    budget_seconds: float = Field(gt=0, description="the wall time it was given")
    started_at: float = Field(description="unix time the training began")
    done: bool = Field(description="False while it runs (or when it was killed): the points so far")
    points: list[ReferencePoint] = Field(default_factory=list)

    def final(self) -> ReferencePoint | None:
        return self.points[-1] if self.points else None
