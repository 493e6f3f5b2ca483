"""Typed errors of lse, in one place.

Every error a user can meet carries a message that says what went wrong *and what to do*,
on one line, so that a CLI can print ``str(err)`` and exit.  Code that needs to react to a
specific failure catches the specific class; the CLIs catch :class:`LseError` only.

A lost race in the population store is *not* an error: it is the ordinary outcome of two
workers touching the same individual, reported as :class:`LostRace` so that callers can
retry without catching broad exceptions.
"""

from __future__ import annotations


class LseError(Exception):
    """Base class of every error lse raises on purpose (never for programming bugs)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}: {hint}" if hint else message)


class ConfigError(LseError):
    """An invalid option or experiment configuration (bad value, unknown name, version)."""


class DNAError(LseError):
    """A malformed or inconsistent DNA (names the offending field)."""


class MutationError(LseError):
    """A mutation could not be applied to this DNA (callers draw another one)."""


class DataError(LseError):
    """A data set is missing, truncated or malformed."""


class StoreError(LseError):
    """The population directory cannot be used (missing, read-only, full disk, foreign layout)."""


class DiskFull(StoreError):
    """ENOSPC/EDQUOT while writing: nothing was published; free space and the worker resumes."""


class CorruptIndividual(StoreError):
    """An individual's files are malformed or hostile; it is quarantined, never fatal."""


class LostRace(Exception):
    """Another worker changed this individual first (ENOENT/ESTALE on a rename source).

    Deliberately not an :class:`LseError`: it is not a failure, just "give up and try again"
    (paper, section 3.1).
    """


class StopRequested(Exception):
    """A stop condition was met or a stop signal arrived; unwind without publishing."""


class LaunchError(LseError):
    """The launcher could not start or submit workers (e.g. sbatch missing or refused)."""
