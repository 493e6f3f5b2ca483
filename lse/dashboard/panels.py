"""What the dashboard's panels show, as pure functions over plain data (no filesystem, no HTTP).

The reader (:mod:`lse.dashboard.reader`) turns the population into one small dict per
individual (a *row*) and calls these; the browser only draws what they return.  Kept pure so
that the Pareto front, the species and generation panels are unit-tested on hand-made rows in
milliseconds, like :mod:`lse.reports.curves` for the report.

Conventions: every objective is *maximised* (an algorithm that minimises stores the negated
value); a row is a mapping with at least ``id``, ``born_at`` (unix s), ``alive`` (bool) and the
optional fields of schema-v2 records (``objectives``, ``fitness``, ``age``, ``species``,
``barrier_generation``), each absent or None when the algorithm does not record it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence

from lse.core.dna import DNA, render_dot, render_line
from lse.core.genomes import describe
from lse.errors import LseError
from lse.reports import curves as cv


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` Pareto-dominates ``b`` (all objectives maximised): no worse in every objective and
    strictly better in at least one."""
    better = False
    for x, y in zip(a, b, strict=True):
        if x < y:
            return False
        better = better or x > y
    return better


def non_dominated(points: Mapping[str, Sequence[float]]) -> list[str]:
    """Keys of the points no other point dominates (the first Pareto front), sorted by key.

    Equal points do not dominate each other, so duplicates are all on the front.  O(n log n +
    n * front) by sweeping in decreasing lexicographic order: a point can only be dominated by
    one that comes before it, and only front members need to be checked (anything dominated by
    a dominated point is dominated by a front member, by transitivity)."""
    order = sorted(points, key=lambda k: tuple(-v for v in points[k]))
    front: list[str] = []
    for k in order:
        p = points[k]
        if not any(dominates(points[f], p) for f in front):
            front.append(k)
    return sorted(front)


def objective_names(rows: Iterable[Mapping]) -> list[str]:
    """Objective names of the first row that has at least two (the order the algorithm wrote)."""
    for r in rows:
        obj = r.get("objectives")
        if isinstance(obj, Mapping) and len(obj) >= 2:
            return [str(k) for k in obj]
    return []


def pareto_panel(rows: Iterable[Mapping]) -> dict | None:
    """The front of the alive individuals, or None when no record carries >= 2 objectives.

    Only alive rows whose objective vector has every named objective as a finite number take
    part (a failed child has none)."""
    rows = list(rows)
    names = objective_names(rows)
    if not names:
        return None
    points: dict[str, list[float]] = {}
    for r in rows:
        obj = r.get("objectives")
        if not r.get("alive") or not isinstance(obj, Mapping):
            continue
        vec = [obj.get(n) for n in names]
        if all(_finite(v) for v in vec):
            points[r["id"]] = [float(v) for v in vec]
    front = set(non_dominated(points))
    return {
        "objectives": names,
        "points": [{"id": k, "values": v, "front": k in front} for k, v in sorted(points.items())],
        "front_size": len(front),
    }


def alive_counts_over_time(
    intervals: Iterable[tuple[str, float, float | None]], times: Sequence[float]
) -> dict[str, list[int]]:
    """For each key, how many intervals ``(key, start, end)`` contain each of ``times``.

    An interval holds from ``start`` (inclusive) to ``end`` (exclusive; None: still open).  Used
    for the species panel: how many alive individuals each species had at each time."""
    out: dict[str, list[int]] = {}
    for key, start, end in intervals:
        counts = out.setdefault(key, [0] * len(times))
        for k, t in enumerate(times):
            if start <= t and (end is None or t < end):
                counts[k] += 1
    return out


def species_panel(rows: Iterable[Mapping], now: float, points: int = 60) -> dict | None:
    """Alive individuals per species at ``points`` times from the first birth to ``now``; None
    when no record names a species."""
    rows = [r for r in rows if isinstance(r.get("species"), str)]
    if not rows:
        return None
    t0 = min(r["born_at"] for r in rows)
    t1 = max(now, t0)
    times = [t0 + (t1 - t0) * k / max(points - 1, 1) for k in range(points)]
    intervals = []
    for r in rows:
        end = None if r.get("alive") else (r.get("killed_at") if _finite(r.get("killed_at")) else r["born_at"])
        if r.get("failed"):
            continue  # born dead: never in the population
        intervals.append((r["species"], float(r["born_at"]), end))
    counts = alive_counts_over_time(intervals, times)
    return {"times": times, "species": {k: counts[k] for k in sorted(counts)}}


def fitness_of(r: Mapping) -> float | None:
    """The algorithm's fitness where recorded, else the validation accuracy (schema v1)."""
    f = r.get("fitness")
    if _finite(f):
        return float(f)
    v = r.get("val")
    return float(v) if _finite(v) else None


def generation_panel(rows: Iterable[Mapping]) -> dict | None:
    """Per barrier generation: individuals, best and mean fitness; None when none is recorded."""
    by_gen: dict[int, list[float | None]] = {}
    for r in rows:
        g = r.get("barrier_generation")
        if isinstance(g, int) and not isinstance(g, bool):
            by_gen.setdefault(g, []).append(fitness_of(r))
    if not by_gen:
        return None
    out = []
    for g in sorted(by_gen):
        fs = [f for f in by_gen[g] if f is not None]
        out.append({"generation": g, "count": len(by_gen[g]), "best": max(fs) if fs else None,
                    "mean": sum(fs) / len(fs) if fs else None})
    return {"generations": out}


def age_panel(rows: Iterable[Mapping], bins: int = 20) -> dict | None:
    """Histogram of the recorded ``age`` of the alive individuals; None when none is recorded."""
    ages = [int(r["age"]) for r in rows if r.get("alive") and isinstance(r.get("age"), int) and not isinstance(r.get("age"), bool)]
    if not ages:
        return None
    lo, hi = min(ages), max(ages)
    width = max(1, math.ceil((hi - lo + 1) / bins))
    counts: dict[int, int] = {}
    for a in ages:
        b = lo + (a - lo) // width * width
        counts[b] = counts.get(b, 0) + 1
    return {"bin_width": width, "bins": [{"from": b, "to": b + width - 1, "count": counts[b]} for b in sorted(counts)],
            "alive": len(ages), "mean": sum(ages) / len(ages), "max": hi}


def curve_steps(curve: cv.Curve) -> dict:
    """The points of a progress curve where the best individual changes, plus its last point
    (a step function: drawing these in 'post' style reproduces the curve exactly).

    NaNs become None (JSON has no NaN)."""
    idx = curve.changes()
    if len(curve) and (not idx or idx[-1] != len(curve) - 1):
        idx = idx + [len(curve) - 1]

    def num(x: float) -> float | None:
        return None if math.isnan(x) else float(x)

    return {
        "hours": [float(curve.hours[k]) for k in idx],
        "flops": [float(curve.flops[k]) for k in idx],
        "best_id": [curve.best_id[k] for k in idx],
        "val": [num(curve.val[k]) for k in idx],
        "test": [num(curve.test[k]) for k in idx],
        "steps": len(curve.changes()),
    }


def overview_panel(rows: Iterable[Mapping], inds: list[cv.Individual], cfg: Mapping, now: float, start: float, *,
                   pop: str, label: str, config_error: str | None, stop_file: bool) -> dict:
    """The overview: counts by state, FLOPs, births per hour, the best, and each stop condition
    beside its limit (``rows``: the reader's rows; ``cfg``: experiment.json as read)."""
    counts = {"alive": 0, "dead": 0, "collected": 0, "failed": 0}
    flops = 0.0
    last_hour = 0
    n = 0
    for r in rows:
        n += 1
        if r["state"] == "alive":
            counts["alive"] += 1
        elif r["collected"]:
            counts["collected"] += 1
        else:
            counts["dead"] += 1
        counts["failed"] += r["failed"]
        flops += r["flops"]
        last_hour += now - r["born_at"] <= 3600.0
    best = cv.top_by_validation(inds, 1)
    hours = max(0.0, (now - start) / 3600.0)

    def stop(name: str, key: str, value: float, unit: str = "") -> dict:
        limit = cfg.get(key)
        return {"name": name, "limit": limit if _finite(limit) else None, "value": value, "unit": unit}

    stops = [stop("individuals", "max_individuals", n), stop("hours", "max_hours", hours, "h"),
             stop("FLOPs", "max_flops", flops)]
    finish, max_hours = cfg.get("finish_minutes"), cfg.get("max_hours")
    if _finite(finish) and _finite(max_hours) and finish > 0:  # --finish: evolution stops that much earlier
        stops.insert(2, {"name": "evolution (--finish)", "limit": max_hours - finish / 60, "value": hours, "unit": "h"})

    algorithm = cfg.get("algorithm")
    return {
        "pop": pop, "label": label, "settings": _scalars(cfg), "config_error": config_error,
        "algorithm": algorithm if isinstance(algorithm, dict) else None,
        "individuals": n, **counts, "flops": flops, "hours": hours, "start": start,
        "per_hour": None if hours <= 0 else n / hours, "last_hour": last_hour,
        "best": None if not best else {"id": best[0].id, "val": best[0].val_accuracy},
        "stops": stops,
        "stop_file": stop_file,
    }


def _scalars(cfg: Mapping) -> dict:
    """experiment.json's settings for display: scalars and small mappings, nothing else."""
    out = {}
    for k, v in list(cfg.items())[:100]:
        if isinstance(v, (str, int, float, bool)) or v is None:
            out[str(k)[:100]] = v if not isinstance(v, str) else v[:500]
        elif isinstance(v, dict):
            out[str(k)[:100]] = json.dumps(v, sort_keys=True)[:500]
    return out


def architecture_panel(genome: str, dna: dict, classes: int) -> dict:
    """How the detail panel shows a genome: the paper's DNA as one line, a Graphviz graph and
    the drawing's backbone; another paper's genome as its one-line rendering; or the error."""
    try:
        if genome == "dna":
            d = DNA.model_validate(dna)
            return {"line": render_line(d, classes), "dot": render_dot(d), "graph": architecture(d)}
        return {"line": describe(genome, dna, classes)[0]}  # lse.core.genomes
    except (LseError, ValueError) as e:
        return {"error": str(e).splitlines()[0]}


def architecture(dna: DNA) -> dict:
    """The DNA as the browser draws it: backbone vertices in order, backbone edges, skips."""
    path = dna.backbone()
    pos = {v: i for i, v in enumerate(path)}

    def token(e) -> str:
        if e.kind == "conv":
            kh, kw = e.kernel()
            return f"conv {kh}x{kw} /{e.stride()} x{e.channels()}"
        return "identity"

    return {
        "vertices": [{"id": v, "activation": dna.vertex(v).activation,
                      "role": "input" if v == dna.input_id else "output" if v == dna.output_id else ""} for v in path],
        "edges": [{"id": e.id, "from": pos[e.src], "to": pos[e.dst], "label": token(e)} for e in dna.backbone_edges()],
        "skips": [{"id": e.id, "from": pos[e.src], "to": pos[e.dst]} for e in dna.skips()],
        "learning_rate": dna.learning_rate,
    }
