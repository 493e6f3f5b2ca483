"""The experiment's clock: its time zero is experiment.json's mtime (the launcher keeps it when a
resume updates the stop fields).  ``max_hours``, the step schedule, the section-5 schedules and
the reports' time axes all count from it; on a shared filesystem it is the file server's clock."""

from __future__ import annotations

import os
import time


def created_at(paths) -> float:
    """Unix time the experiment began (``paths``: a Store or its PopulationPaths)."""
    paths = getattr(paths, "paths", paths)
    return os.stat(paths.experiment).st_mtime


def age_seconds(paths, now: float | None = None) -> float:
    """Seconds since the experiment began."""
    return (time.time() if now is None else now) - created_at(paths)
