"""What a report computes, as pure functions over plain data (no torch, no filesystem).

The report (:mod:`lse.reports.report`) reads the population, turns every record into an
:class:`Individual` and calls the functions below; the figures and the HTML page only draw
what these return.  Keeping the arithmetic here means the curve of Figure 2, the repeat band
and the ensemble vote are unit-tested on hand-made data in milliseconds.

Definitions (paper, sections 3.5 and 3.7, Figure 2):

* **Progress curve.**  At time t the curve shows the individual with the highest *validation*
  accuracy among those born (became alive) at or before t, and reports its *test* accuracy.
  Time is wall-clock hours since the experiment's start, or the experiment's cumulative FLOPs:
  the sum, over individuals in birth order, of each individual's cost F_t*N_t + F_v*N_v.
  Failed individuals (diverged, out of memory) cost FLOPs but are never "best".
* **Repeats.**  Experiments given the same label are drawn as their mean with a +-2 sigma band
  (sigma: sample standard deviation, ddof=1, across the repeats defined at that abscissa),
  after step-interpolating every repeat onto one common grid.
* **Ensemble.**  Majority vote of the models ranked first by validation accuracy; a tie (with
  two voters: whenever they disagree) goes to the tied class with the highest summed softmax
  probability over the voters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class Individual:
    """The fields of one individual that the report needs (from an IndividualRecord)."""

    id: str
    parent_id: str | None
    born_at: float  # unix seconds: when it was published (became alive)
    val_accuracy: float | None  # None: failed, no fitness
    flops: float  # its cost F_t*N_t + F_v*N_v (section 3.5)
    alive: bool = False
    mutation: str | None = None  # name of the mutation that produced it (None: initial)
    failed_reason: str | None = None
    worker: str | None = None
    killed_at: float | None = None
    params: int | None = None
    generation: int | None = None

    @property
    def has_fitness(self) -> bool:
        return self.val_accuracy is not None and self.failed_reason is None and math.isfinite(self.val_accuracy)


def _get(obj: object, name: str, default: object = None) -> object:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def from_record(record: object, alive: bool | None = None) -> Individual:
    """Build an :class:`Individual` from an IndividualRecord (or a dict of the same shape).

    ``alive`` overrides the guess from the record (alive = never killed and not failed), for
    callers that know the individual's state from the store's listing."""
    flops = _get(record, "flops")
    total = _get(flops, "total", 0.0) if flops is not None else 0.0
    mutation = _get(record, "mutation")
    name = _get(mutation, "name") if mutation is not None else None
    failed = _get(record, "failed_reason")
    killed_at = _get(record, "killed_at")
    if alive is None:
        state = _get(record, "state")
        alive = state == "alive" if state is not None else (killed_at is None and failed is None)
    val = _get(record, "val_accuracy")
    born_at = _get(record, "born_at")
    if born_at is None:  # an old or hand-written record: the id carries the birth stamp
        from lse.core.records import id_time  # pure module

        born_at = id_time(str(_get(record, "id")))
    return Individual(
        id=str(_get(record, "id")),
        parent_id=_get(record, "parent_id"),
        born_at=float(born_at),
        val_accuracy=None if val is None else float(val),
        flops=float(total or 0.0),
        alive=bool(alive),
        mutation=name,
        failed_reason=failed,
        worker=_get(record, "worker"),
        killed_at=killed_at,
        params=_get(record, "params"),
        generation=_get(record, "generation"),
    )


def birth_order(inds: Iterable[Individual]) -> list[Individual]:
    """Individuals by birth time (ties by id, so the order never depends on listing order)."""
    return sorted(inds, key=lambda i: (i.born_at, i.id))


def experiment_start(inds: Sequence[Individual], created_at: float | None = None) -> float:
    """The experiment's time zero (unix s): its creation time when known, else the first birth.

    A creation time later than the first birth (clock skew between hosts) is ignored so that
    no individual is drawn at negative time."""
    first = min((i.born_at for i in inds), default=created_at if created_at is not None else 0.0)
    if created_at is None:
        return first
    return min(created_at, first)


@dataclass
class Curve:
    """A progress curve: one point per birth, in birth order (step function, 'post' style).

    ``test`` is NaN where the best individual's test accuracy is unknown (its weights were
    garbage-collected); ``test_shown`` carries the last known value forward there and
    ``carried`` marks those points, so a plot can say so instead of silently dropping them."""

    label: str
    hours: np.ndarray  # (n,) hours since the start at each birth
    flops: np.ndarray  # (n,) cumulative experiment FLOPs after each birth
    best_id: list[str | None]  # (n,) id of the best-so-far (None until the first fitness)
    val: np.ndarray  # (n,) its validation accuracy (NaN before any)
    test: np.ndarray  # (n,) its test accuracy (NaN when unknown)
    test_shown: np.ndarray  # (n,) test with the last known value carried forward
    carried: np.ndarray  # (n,) bool: test_shown is a carried value, not this individual's

    def __len__(self) -> int:
        return len(self.hours)

    def changes(self) -> list[int]:
        """Indices where the best individual changes (the curve's steps)."""
        return [k for k in range(len(self)) if self.best_id[k] is not None and (k == 0 or self.best_id[k] != self.best_id[k - 1])]


def best_so_far(inds: Iterable[Individual]) -> list[str | None]:
    """For each individual in birth order, the id of the best by validation so far.

    Ties keep the earlier individual: a later one must be strictly better to take over."""
    best: Individual | None = None
    out: list[str | None] = []
    for ind in birth_order(inds):
        if ind.has_fitness and (best is None or ind.val_accuracy > best.val_accuracy):
            best = ind
        out.append(None if best is None else best.id)
    return out


def best_chain_ids(inds: Iterable[Individual]) -> list[str]:
    """Every individual that was the best-so-far at some time, in order (the curve's needs)."""
    chain: list[str] = []
    for b in best_so_far(inds):
        if b is not None and (not chain or chain[-1] != b):
            chain.append(b)
    return chain


def progress_curve(
    inds: Sequence[Individual],
    test_accuracy: Mapping[str, float | None],
    start: float | None = None,
    label: str = "",
) -> Curve:
    """The Figure 2 curve of one experiment; ``test_accuracy`` maps id -> accuracy or None."""
    order = birth_order(inds)
    if start is None:
        start = experiment_start(order)
    by_id = {i.id: i for i in order}
    best = best_so_far(order)
    hours = np.array([(i.born_at - start) / SECONDS_PER_HOUR for i in order], dtype=float)
    flops = np.cumsum(np.array([i.flops for i in order], dtype=float)) if order else np.zeros(0)
    val = np.array([np.nan if b is None else by_id[b].val_accuracy for b in best], dtype=float)
    test = np.array([_nan(test_accuracy.get(b)) if b is not None else np.nan for b in best], dtype=float)
    shown, carried = carry_forward(test)
    return Curve(label, hours, flops, best, val, test, shown, carried)


def _nan(v: float | None) -> float:
    return np.nan if v is None else float(v)


def carry_forward(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replace NaNs by the last finite value before them; return (filled, was_carried).

    Leading NaNs stay NaN (nothing to carry) and are not marked as carried."""
    filled = np.array(values, dtype=float, copy=True)
    carried = np.zeros(len(filled), dtype=bool)
    last = np.nan
    for k, v in enumerate(filled):
        if np.isnan(v):
            if not np.isnan(last):
                filled[k] = last
                carried[k] = True
        else:
            last = v
    return filled, carried


def step_interpolate(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Value of the step function (xp, fp) at each x: fp at the last xp <= x; NaN before xp[0].

    A progress curve is a step function (the best only changes at births), so linear
    interpolation between births would invent values no individual ever had."""
    x = np.asarray(x, dtype=float)
    if len(xp) == 0:
        return np.full(x.shape, np.nan)
    idx = np.searchsorted(np.asarray(xp, dtype=float), x, side="right") - 1
    out = np.asarray(fp, dtype=float)[np.clip(idx, 0, None)]
    return np.where(idx >= 0, out, np.nan)


@dataclass(frozen=True)
class Anchor:
    """A hand-designed network's curve (`lse reference`): its accuracy after each chunk of
    training, against its own wall time and FLOPs -- drawn beside the evolution's curves."""

    label: str
    hours: np.ndarray  # (n,) hours of training and validation so far
    flops: np.ndarray  # (n,) FLOPs so far, counted as the experiment counts its own
    val: np.ndarray  # (n,)
    test: np.ndarray  # (n,)

    def __len__(self) -> int:
        return len(self.hours)

    def test_at(self, hours: float) -> float:
        """Its test accuracy after ``hours`` of wall time (NaN before its first point)."""
        return float(step_interpolate(np.array([hours]), self.hours, self.test)[0])


def anchor_curve(curve: object, label: str | None = None) -> Anchor:
    """An :class:`Anchor` from a reference curve (``lse.core.reference.ReferenceCurve`` or a
    dict with the same fields)."""
    points = _get(curve, "points", []) or []
    col = lambda name: np.array([float(_get(p, name)) for p in points], dtype=float)  # noqa: E731
    return Anchor(label or str(_get(curve, "name", "reference")), col("seconds") / SECONDS_PER_HOUR, col("flops"),
                  col("val_accuracy"), col("test_accuracy"))


@dataclass
class Band:
    """Mean and +-2 sigma of repeated experiments on a common grid."""

    label: str
    x: np.ndarray  # (m,) grid (hours or FLOPs)
    mean: np.ndarray  # (m,)
    std: np.ndarray  # (m,) sample std (ddof=1); NaN where fewer than 2 repeats are defined
    count: np.ndarray  # (m,) how many repeats are defined at each x
    repeats: int = 0
    members: list[str] = field(default_factory=list)

    @property
    def lower(self) -> np.ndarray:
        return self.mean - 2.0 * self.std

    @property
    def upper(self) -> np.ndarray:
        return self.mean + 2.0 * self.std


def common_grid(curves: Sequence[Curve], axis: str = "hours", points: int = 200) -> np.ndarray:
    """A grid from 0 to the end of the *shortest* repeat (beyond it the mean would silently mix
    a different set of experiments); log-spaced for FLOPs, which span orders of magnitude."""
    ends = [float(getattr(c, axis)[-1]) for c in curves if len(c)]
    if not ends:
        return np.zeros(0)
    end = min(ends)
    if axis == "flops":
        starts = [float(c.flops[0]) for c in curves if len(c) and c.flops[0] > 0]
        lo = min(starts) if starts else 1.0
        if end <= lo:
            return np.array([end])
        return np.geomspace(lo, end, points)
    return np.linspace(0.0, end, points)


def repeat_band(curves: Sequence[Curve], axis: str = "hours", value: str = "test_shown", points: int = 200, label: str = "") -> Band:
    """Mean and sample std of ``value`` across repeats, step-interpolated onto a common grid."""
    x = common_grid(curves, axis, points)
    ys = np.array([step_interpolate(x, getattr(c, axis), getattr(c, value)) for c in curves]).reshape(len(curves), len(x))
    count = np.sum(~np.isnan(ys), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.nansum(ys, axis=0)
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        dev = np.where(np.isnan(ys), 0.0, (ys - mean) ** 2).sum(axis=0)
        std = np.where(count > 1, np.sqrt(dev / np.maximum(count - 1, 1)), np.nan)
    return Band(label or (curves[0].label if curves else ""), x, mean, std, count, len(curves), [c.label for c in curves])


def lineage(inds: Iterable[Individual], leaf: str) -> list[Individual]:
    """Ancestors of ``leaf`` from the oldest known one to ``leaf`` itself (via parent_id).

    Stops at an initial individual, at a parent missing from the records, or at a cycle
    (a corrupt record must not hang the report)."""
    by_id = {i.id: i for i in inds}
    out: list[Individual] = []
    seen: set[str] = set()
    cur = by_id.get(leaf)
    while cur is not None and cur.id not in seen:
        out.append(cur)
        seen.add(cur.id)
        cur = by_id.get(cur.parent_id) if cur.parent_id is not None else None
    return out[::-1]


def pick_ancestors(chain: Sequence[Individual], count: int = 4) -> list[Individual]:
    """``count`` individuals spread evenly along a lineage, always ending with the leaf (as
    Figure 1 draws the best individual and three of its ancestors)."""
    if len(chain) <= count:
        return list(chain)
    idx = np.unique(np.round(np.linspace(0, len(chain) - 1, count)).astype(int))
    return [chain[k] for k in idx]


def top_by_validation(inds: Iterable[Individual], k: int) -> list[Individual]:
    """The ``k`` individuals with the highest validation accuracy (ties: earlier birth first)."""
    ok = [i for i in inds if i.has_fitness]
    return sorted(ok, key=lambda i: (-i.val_accuracy, i.born_at, i.id))[:k]


@dataclass(frozen=True)
class MutationStat:
    name: str
    children: int  # children produced by this mutation whose parent is in the records
    improved: int  # of those, strictly better validation accuracy than the parent
    failed: int  # children whose training failed

    @property
    def rate(self) -> float:
        return self.improved / self.children if self.children else float("nan")


def mutation_stats(inds: Iterable[Individual]) -> list[MutationStat]:
    """Per mutation name, how often the child beat its parent's validation accuracy.

    A failed child counts as a child that did not improve.  Children whose parent is not in
    the records (a foreign or quarantined entry) are left out: nothing to compare against."""
    by_id = {i.id: i for i in inds}
    counts: dict[str, list[int]] = {}
    for ind in by_id.values():
        if ind.mutation is None or ind.parent_id not in by_id:
            continue
        parent = by_id[ind.parent_id]
        c = counts.setdefault(ind.mutation, [0, 0, 0])
        c[0] += 1
        if not ind.has_fitness:
            c[2] += 1
        elif parent.has_fitness and ind.val_accuracy > parent.val_accuracy:
            c[1] += 1
    stats = [MutationStat(name, *c) for name, c in counts.items()]
    return sorted(stats, key=lambda s: (-s.children, s.name))


def majority_vote(votes: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Majority vote of k models over n examples.

    votes: (k, n) int predicted class per model and example.
    probs: (k, n, C) softmax probabilities per model; used only to break ties: among the
    classes with the most votes, the one with the highest summed probability wins (with two
    voters that disagree, this is the class the pair is most confident in overall).
    Returns (n,) int labels."""
    votes = np.asarray(votes)
    probs = np.asarray(probs, dtype=float)
    k, n = votes.shape
    classes = probs.shape[2]
    counts = np.zeros((n, classes), dtype=np.int64)
    for m in range(k):
        np.add.at(counts, (np.arange(n), votes[m]), 1)
    tied = counts == counts.max(axis=1, keepdims=True)  # (n, C) the classes with the most votes
    score = np.where(tied, probs.sum(axis=0), -np.inf)
    return np.argmax(score, axis=1)


def per_hour(count: int, hours: float) -> float:
    return count / hours if hours > 0 else float("nan")


# ---------------------------------------------------------------------------------------------
# Section 5: changes made while the run went on, and evolved mutation distributions


@dataclass(frozen=True)
class Mark:
    """An event on a report's time axis (hours from the experiment's start)."""

    kind: str  # "mutations" | "reset"
    start: float
    end: float | None  # mutations: when the setting ended (None: for good); reset: None
    label: str


def event_marks(events: Sequence, start: float) -> list[Mark]:
    """The events of lse.core.events as marks, in time order; a permanent setting ends where
    the next one that began later takes over (for the shading), else at the right edge."""
    out = []
    for e in sorted(events, key=lambda e: (e.at, e.id)):
        h = (e.at - start) / 3600.0
        if e.kind == "reset":
            out.append(Mark("reset", h, None, "weight reset"))
        else:
            end = None if e.until is None else (e.until - start) / 3600.0
            out.append(Mark("mutations", h, end, f"{e.mutations_per_child} mutation(s) per child"))
    return out


def distribution_trend(records: Sequence, start: float, bins: int = 12) -> tuple[list[float], dict[str, list[float]]]:
    """How evolved mutation distributions moved: per time bin (hours from ``start``, the bin's
    middle), the mean probability of each mutation over the individuals born in it that carry
    a distribution (``dna.mutation_probabilities``).  Empty when none does."""
    points = []
    for r in records:
        dna = _get(r, "dna") or {}
        p = dna.get("mutation_probabilities") if isinstance(dna, Mapping) else None
        if p:
            born = _get(r, "born_at")
            if born is None:
                from lse.core.records import id_time

                born = id_time(str(_get(r, "id")))
            points.append(((float(born) - start) / 3600.0, p))
    if not points:
        return [], {}
    lo, hi = min(t for t, _ in points), max(t for t, _ in points)
    width = (hi - lo) / bins if hi > lo else 1.0
    names = sorted({n for _, p in points for n in p})
    sums = [dict.fromkeys(names, 0.0) for _ in range(bins)]
    counts = [0] * bins
    for t, p in points:
        k = min(bins - 1, int((t - lo) / width))
        counts[k] += 1
        for n in names:
            sums[k][n] += float(p.get(n, 0.0))
    keep = [k for k in range(bins) if counts[k]]
    xs = [lo + (k + 0.5) * width for k in keep]
    return xs, {n: [sums[k][n] / counts[k] for k in keep] for n in names}
