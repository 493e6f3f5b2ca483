"""What the paired studies share (seed003_weights_ga.py, pycortex_table1.py): one JSON per run
under OUT/runs/, written atomically when the run ends (an interrupted study resumes), and a page
whose tables are regenerated between two markers from those files only, so a hand-edited
number cannot survive the next --report."""

from __future__ import annotations

import json
import os
from pathlib import Path


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
