"""experiment.json: what an experiment searches and when it stops, written once by its creator.

Two launchers may create one population at once: the file is written privately and published
by ``link``, which never replaces an existing name (unlike ``rename``), so exactly one wins and
the other reads the winner's.  Only the stop conditions change on resume (``replace``), and the
file's mtime -- the experiment's creation time, which ``max_hours`` counts from
(lse.store.clock) -- is carried over.  Every reader goes through the safe read.
"""

from __future__ import annotations

import os

from lse.config import ExperimentConfig
from lse.errors import ConfigError, StoreError
from lse.store.durable import fsync_dir, unlink_quiet, write_error, write_file
from lse.store.paths import PopulationPaths
from lse.store.saferead import UnsafeFile, read_bytes

__all__ = ["create", "read_config", "replace"]


def read_config(paths: PopulationPaths) -> ExperimentConfig:
    """The experiment's configuration (StoreError saying what to do when it cannot be read)."""
    try:
        text = read_bytes(paths.experiment, "config").decode("utf-8", "replace")
    except UnsafeFile as e:
        raise StoreError(e.message, "restore experiment.json from a copy (it must be a small regular file)") from None
    except FileNotFoundError:
        raise StoreError(f"{paths.experiment} does not exist",
                         "create the experiment with `python -m lse.runners.launch`") from None
    except OSError as e:
        raise StoreError(f"cannot read {paths.experiment}: {os.strerror(e.errno or 0)}") from None
    return ExperimentConfig.from_json(text, str(paths.experiment))


def create(paths: PopulationPaths, config: ExperimentConfig) -> None:
    """Create the layout and write experiment.json unless it exists (the caller then reads the
    configuration in force and compares it with its own: ExperimentConfig.differences)."""
    try:
        paths.root.mkdir(parents=True, exist_ok=True)
        for d in paths.folders:
            d.mkdir(exist_ok=True)
        if not paths.experiment.exists():
            tmp = paths.experiment_tmp()
            try:
                write_file(tmp, config.to_json().encode())
                try:
                    os.link(tmp, paths.experiment)
                except FileExistsError:
                    pass  # another launcher won: the caller reads its configuration
            finally:
                unlink_quiet(tmp)
            fsync_dir(paths.root)
    except OSError as e:
        raise write_error(paths.root, e, "create the population") from None


def replace(paths: PopulationPaths, current: ExperimentConfig, config: ExperimentConfig, *, force: bool = False) -> None:
    """Replace experiment.json (``current``) with ``config``: private file, fsync, one rename.

    Without ``force`` only the stop conditions (``STOP_FIELDS``) may change: a difference in what
    is searched raises ConfigError listing it.  The mtime is carried over, so raising
    ``max_hours`` on resume extends the run instead of restarting its clock.
    """
    diffs = current.differences(config)
    if diffs and not force:
        raise ConfigError(
            f"{paths.root} holds a different experiment ({'; '.join(diffs)})",
            "only max_individuals, max_hours, max_flops and mutations_per_child change on resume; pass force to replace the rest",
        )
    dst = paths.experiment
    tmp = paths.experiment_tmp()
    try:
        st = os.stat(dst)
        write_file(tmp, config.to_json().encode())
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.rename(tmp, dst)
        fsync_dir(paths.root)
    except OSError as e:
        unlink_quiet(tmp)
        err = write_error(paths.root, e, "update experiment.json")
        if isinstance(err, OSError):
            err = StoreError(f"cannot update {dst}: {e.strerror}", "check the population's permissions and free space")
        raise err from None
