"""What the section 5 reproductions share: run experiments with the real launcher, at most
two at a time (one worker and one thread each: the development machines have 2 cores), then
read them with the real report.  Nothing here computes a figure's numbers differently from
`lse launch` + `lse report`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "experiments" / "out"  # populations and reports: large, not committed
DATA = ROOT / "docs"  # the numbers a doc cites: committed beside it
FIGURES = ROOT / "docs" / "figures"
SECTION5 = DATA / "SECTION5.md"  # the page whose tables the section 5 scripts write

#: the paper's settings this reproduction scales down, and how (printed with every result)
COMMON = ["--dataset", "fashion-mnist", "--validation-size", "2000", "--workers", "1", "--threads", "1",
          "--no-progress", "--device", "cpu"]


def device_args(device: str) -> list[str]:
    """The launch options that put a study's runs on ``device`` (COMMON says cpu)."""
    return [] if device == "cpu" else ["--device", device]


def launch_all(runs: list[tuple[Path, list[str] | Callable[[], list[str]]]], parallel: int = 2,
               fresh: bool = True, watch: Callable[[Path], None] | None = None) -> None:
    """Run each ``(pop, launch arguments)`` with `python -m lse.launch` (niced), ``parallel``
    at a time; the arguments may be a function, called when the run starts (a resume whose
    options depend on its start time).  ``fresh``: a population that exists is removed first
    (a reproduction starts fresh); otherwise it is resumed.  ``watch(pop)`` is called for every
    running population every 2 seconds (it may stop it, with `lse stop`'s STOP file)."""
    pending = list(runs)
    active: list[tuple[Path, subprocess.Popen]] = []
    while pending or active:
        while pending and len(active) < parallel:
            pop, args = pending.pop(0)
            if fresh and pop.exists():
                shutil.rmtree(pop)
            if callable(args):
                args = args()
            pop.parent.mkdir(parents=True, exist_ok=True)
            log = open(pop.parent / f"{pop.name}.launch.log", "w")
            cmd = ["nice", "-n", "10", sys.executable, "-m", "lse.launch", "--pop", str(pop), *COMMON, *args]
            print("$", " ".join(cmd[3:]), flush=True)
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            active.append((pop, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)))
        time.sleep(2)
        for pop, proc in list(active):
            if watch is not None and proc.poll() is None:
                watch(pop)
            if proc.poll() is not None:
                active.remove((pop, proc))
                if proc.returncode != 0:
                    sys.exit(f"launch of {pop} failed (exit {proc.returncode}); see {pop.parent / (pop.name + '.launch.log')}")


def report(pops: list[Path], labels: list[str], out: Path, until_flops: float | None = None) -> dict:
    """`lse report` on ``pops``: its summary (best by validation with its test accuracy, ...);
    ``until_flops``: every population read up to that compute (`lse report --until-flops`)."""
    from lse.reports.report import make_report

    return make_report([str(p) for p in pops], out, labels=labels, until_flops=until_flops)


def best_test(summary: dict) -> list[float | None]:
    return [(e["best"] or {}).get("test_accuracy") for e in summary["experiments"]]


def copy_figure(src: Path, name: str) -> Path:
    FIGURES.mkdir(parents=True, exist_ok=True)
    dst = FIGURES / name
    shutil.copyfile(src, dst)
    return dst


def save(name: str, data: dict) -> Path:
    """The measured numbers of one experiment, as docs/<name>.json: beside the docs that cite
    them, to be committed with them (experiments/out/ keeps only populations and reports)."""
    path = DATA / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")
    return path


def committed(name: str) -> dict:
    """docs/<name>.json, as :func:`save` wrote it."""
    return json.loads((DATA / f"{name}.json").read_text())


def study_data(a, name: str, run: Callable[[object], dict]) -> dict:
    """A section 5 study's JSON: the committed docs/<name>.json with ``--table``, else what
    ``run(a)`` measured, saved there first."""
    if a.table:
        return committed(name)
    data = run(a)
    save(name, data)
    return data


def publish(data: dict, *, begin: str, end: str, table: Callable[[dict], str],
            figure: Callable[[dict, Path], None], figure_path: Path) -> None:
    """A section 5 study's table between its two markers in docs/SECTION5.md and its figure, both
    from its JSON only (so a test can regenerate the table), then the table on screen."""
    from _study import write_tables

    text = table(data)
    write_tables(SECTION5, begin, end, text)
    figure(data, figure_path)
    print(text)


def phase_stats(pop: Path, cuts_minutes: list[float]) -> list[dict]:
    """Validation accuracy of the individuals born in each period between ``cuts_minutes``
    (from the experiment's creation): count, best, median -- what Figure 4's dots show."""
    import statistics

    from lse.store import Store

    store = Store(pop).open()
    t0 = store.paths.experiment.stat().st_mtime
    edges = [0.0, *cuts_minutes, float("inf")]
    out = []
    for lo, hi in zip(edges, edges[1:]):
        vals = [r.val_accuracy for r in store.records()
                if r.val_accuracy is not None and lo <= (r.born_at - t0) / 60 < hi]
        out.append({"from_min": lo, "to_min": hi, "births": len(vals), "best_val": max(vals, default=None),
                    "median_val": statistics.median(vals) if vals else None})
    return out
