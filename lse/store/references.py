"""Anchor curves in a population (``POP/reference/<name>.json``): written whole by `lse reference`
(private file, then one rename), read by `lse report`.  Workers never read them."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from lse.core.reference import ReferenceCurve
from lse.store import safe_read
from lse.store.atomic import write_json_atomic
from lse.store.population import PopulationPaths

log = logging.getLogger(__name__)

def write_reference(path: Path, curve: ReferenceCurve) -> None:
    """Private file, then one rename: a report never reads half a curve."""
    write_json_atomic(path, curve.model_dump(mode="json"),
                      fix="free some space or fix the folder's permissions, then run lse reference again")


def read_references(pop: str | os.PathLike) -> list[ReferenceCurve]:
    """Every anchor curve of ``pop``, by name; a malformed or hostile file is skipped with a
    warning (a report shows what it can)."""
    folder = PopulationPaths(pop).reference
    out = []
    try:
        names = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    for fname in names:
        if fname.startswith(".") or not fname.endswith(".json"):
            continue
        try:
            # the safe read: a FIFO swapped in between an lstat and an open blocked the report
            curve = ReferenceCurve.model_validate(safe_read.read_json(folder / fname, "curve"))
            if f"{curve.name}.json" != fname:
                raise ValueError(f"its name {curve.name!r} is not its file's")
        except (OSError, ValueError) as e:
            log.warning("skipped reference/%s: %s", fname, str(e).splitlines()[0])
            continue
        out.append(curve)
    return out
