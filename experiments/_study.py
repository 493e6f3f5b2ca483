"""What the paired studies share (seed003_weights_ga.py, pycortex_table1.py): one JSON per run
under OUT/runs/, written atomically when the run ends (an interrupted study resumes), and a page
whose tables are regenerated between two markers from those files only, so a hand-edited
number cannot survive the next --report."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def mean_2sd(xs: list[float]) -> str:
    """mean ± 2 sample standard deviations, in percent (points for differences); one value:
    itself with (n=1); none: -."""
    import statistics

    if not xs:
        return "-"
    if len(xs) < 2:
        return f"{100 * xs[0]:.1f} (n=1)"
    return f"{100 * statistics.fmean(xs):.1f} ± {200 * statistics.stdev(xs):.1f}"


def band(ax, points: list[tuple[float, list[float]]], scale: float = 100, **line) -> None:
    """Draw the mean of each x's values times ``scale`` (fractions, drawn in percent; 1 for
    counts) with a ±2 sample sd band (none where an x has one value); ``line``: the plot's
    keywords (label, color, marker)."""
    import statistics

    x = [p[0] for p in points]
    m = [scale * statistics.fmean(v) for _, v in points]
    sd = [2 * scale * statistics.stdev(v) if len(v) > 1 else 0.0 for _, v in points]
    (drawn,) = ax.plot(x, m, **line)
    ax.fill_between(x, [a - b for a, b in zip(m, sd)], [a + b for a, b in zip(m, sd)], alpha=0.15,
                    color=drawn.get_color())


def load_runs(out: Path) -> dict[str, dict]:
    """OUT/runs/*.json by name (the run's key)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))}


def save_run(path: Path, result: dict) -> None:
    """Write one run's JSON in one rename: a reader never sees half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, path)


def write_tables(page: Path, begin: str, end: str, text: str) -> None:
    """Put ``text`` between the page's two marker lines; the prose around them is kept."""
    doc = page.read_text() if page.exists() else f"{begin}\n{end}\n"
    if begin not in doc or end not in doc:
        raise SystemExit(f"{page} has no table markers; add the lines\n{begin}\n{end}")
    head, rest = doc.split(begin, 1)
    page.write_text(f"{head}{begin}\n{text}{end}{rest.split(end, 1)[1]}")


def pending(tasks: list[dict], key: Callable[[dict], str], out: Path, *, only: str | None = None,
            skip: str | None = None, force: bool = False) -> list[dict]:
    """The tasks still to run: those whose key matches ``only`` and not ``skip`` (regular
    expressions), and whose JSON is not in OUT/runs/ yet (``force``: all of them)."""
    return [t for t in tasks if (only is None or re.search(only, key(t)))
            and (skip is None or not re.search(skip, key(t)))
            and (force or not (out / "runs" / f"{key(t)}.json").exists())]


def run_all(worker: Callable[[Any], tuple[str, str]], payloads: list, jobs: int) -> int:
    """``worker(payload) -> (key, message)`` for every payload, ``jobs`` processes at a time
    (spawned: each run its own process), one line per finished run; how many failed."""
    if jobs <= 1:
        results = map(worker, payloads)
    else:
        import multiprocessing as mp

        results = mp.get_context("spawn").Pool(jobs).imap_unordered(worker, payloads)
    failed = 0
    for k, msg in results:
        failed += msg.startswith("FAILED")
        print(f"{time.strftime('%H:%M:%S')} {k}: {msg}", flush=True)
    return failed


def report(out: Path, begin: str, end: str, tables: Callable[[dict], str],
           plots: Callable[[dict, Path], object]) -> None:
    """OUT/README.md's tables (between its markers) and the figures, from OUT/runs/*.json only."""
    runs = load_runs(out)
    if not runs:
        raise SystemExit(f"no runs under {out / 'runs'}: run the study first")
    text = tables(runs)
    write_tables(out / "README.md", begin, end, text)
    plots(runs, out)
    print(text)
