"""A child's judgement and its birth record: pure functions of what the algorithm decided and
what the trainer measured (no file, no clock, no torch), so the record a worker publishes is
tested without a worker."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lse.algorithms.base import Algorithm, Child
from lse.core.genomes import genome_kind
from lse.core.records import IndividualRecord
from lse.runners.trainer import ChildResult


@dataclass(frozen=True)
class Judgement:
    """The algorithm's verdict on a trained child: objectives and fitness, or why it failed."""

    objectives: dict
    fitness: float | None
    failed_reason: str | None  # None: alive


def judge(algorithm: Algorithm, res: ChildResult, child: Child | None = None) -> Judgement:
    """Objectives and fitness of a trained child (the algorithm's), or its failure: the trainer's
    reason, no measurement at all, an objective that could not be computed, a non-finite fitness."""
    metrics = dict(res.metrics)
    if res.val_accuracy is not None and math.isfinite(res.val_accuracy):
        metrics["val_accuracy"] = float(res.val_accuracy)
    if res.failed_reason is not None or not metrics:
        return Judgement({}, None, res.failed_reason or "no validation accuracy")
    try:
        objectives = algorithm.objectives(metrics, res.params, child)
        fitness = algorithm.fitness(objectives)
    except (KeyError, ValueError, ZeroDivisionError) as e:  # e.g. a metric the trainer did not give
        return Judgement({}, None, f"objectives: {type(e).__name__}: {e}")
    if fitness is None or not math.isfinite(fitness):
        return Judgement({}, None, f"non-finite fitness {fitness!r}")
    return Judgement(objectives, fitness, None)


def birth_record(child_id: str, child: Child, first: IndividualRecord | None, res: ChildResult, verdict: Judgement, *,
                 algorithm: str, worker: str, host: str, barrier_generation: int | None, extra: dict) -> IndividualRecord:
    """The record of ``child`` (already settled by its algorithm), born of ``first`` (its first
    parent's record; None: an initial individual)."""
    failed = verdict.failed_reason is not None
    return IndividualRecord(
        id=child_id,
        parent_id=first.id if first is not None else None,
        parents=list(child.parents),
        generation=0 if first is None else first.generation + 1,
        algorithm=algorithm,
        dna=genome_kind(child.genome).dump(child.dna),
        mutation=None if child.mutation is None else child.mutation.model_dump(mode="json"),
        inheritance=res.inheritance if first is not None else None,
        val_accuracy=None if failed or res.val_accuracy is None else float(res.val_accuracy),
        objectives=verdict.objectives,
        fitness=verdict.fitness,
        failed_reason=verdict.failed_reason,
        genome=child.genome,
        age=child.age,
        species=child.species,
        steps=res.steps,
        examples=res.examples,
        flops=res.flops,
        params=res.params,
        worker=worker,
        host=host,
        train_seconds=res.train_seconds,
        eval_seconds=res.eval_seconds,
        barrier_generation=barrier_generation,
        extra={**res.extra, **child.details, **extra},
    )
