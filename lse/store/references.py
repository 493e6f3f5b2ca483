"""Anchor curves in a population (``POP/reference/<name>.json``): written whole by `lse reference`
(private file, then one rename), read by `lse report`.  Workers never read them."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from lse.core.reference import ReferenceCurve
from lse.store.atomic import write_json_atomic
from lse.store.population import PopulationPaths

log = logging.getLogger(__name__)

_MAX_BYTES = 4 << 20


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
            if not stat.S_ISREG(os.lstat(folder / fname).st_mode):  # a FIFO or a link to /dev/zero never ends
                raise ValueError("not a regular file")
            with open(folder / fname, "rb") as f:
                data = f.read(_MAX_BYTES + 1)
            if len(data) > _MAX_BYTES:
                raise ValueError(f"larger than {_MAX_BYTES >> 20} MiB; a curve is a few KB")
            curve = ReferenceCurve.model_validate_json(data)
            if f"{curve.name}.json" != fname:
                raise ValueError(f"its name {curve.name!r} is not its file's")
        except (OSError, ValueError) as e:
            log.warning("skipped reference/%s: %s", fname, str(e).splitlines()[0])
            continue
        out.append(curve)
    return out
