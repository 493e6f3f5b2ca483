"""Slurm backend of the launcher: an sbatch job array, one worker per array task.

:func:`render_sbatch` is pure (template text and options in, script text out) and is tested
against a recorded expected script (STYLE.md 5); :func:`submit` hands the script to
``sbatch`` on its standard input and returns the job id.  Every value that reaches the
script is quoted with :func:`shlex.quote`: population paths with spaces or quotes are
ordinary on shared filesystems.

Signals: the script ``exec``\\ s the worker, so the SIGTERM Slurm sends on a time limit, a
preemption or ``scancel`` reaches the worker itself (a graceful stop, nothing half-published);
``--signal=B:TERM@N`` asks for that SIGTERM N seconds *before* the time limit, so the worker
is not SIGKILLed before it has unwound.
"""

from __future__ import annotations

import re
import shlex
import string
import subprocess
from pathlib import Path
from typing import Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lse.errors import ConfigError, LaunchError

#: The sbatch template, beside the package in a source checkout (``launcher/``).
TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "launcher" / "lse-array.sbatch.tmpl"

_TIME_RE = re.compile(r"^(\d+-)?\d+(:\d+){0,2}$|^\d+-\d+$")
_MEM_RE = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)


class SlurmOptions(BaseModel):
    """How the job array is requested from Slurm (not part of the experiment's identity)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workers: int = Field(1, ge=1, description="array tasks, one worker each")
    partition: str | None = Field(None, description="--partition; None: the cluster's default")
    time: str | None = Field(None, description="--time per task, Slurm format (MM, HH:MM:SS, D-HH:MM:SS)")
    gpus_per_task: int | None = Field(None, ge=1, description="--gpus-per-task; None: CPU workers")
    cpus_per_task: int = Field(1, ge=1, description="--cpus-per-task; the worker uses as many torch threads")
    mem: str | None = Field(None, description="--mem per task, e.g. 8G")
    account: str | None = Field(None, description="--account to charge")
    requeue: bool = Field(False, description="--requeue: a preempted task is requeued and resumes as a new worker")
    job_name: str = Field("lse", min_length=1, description="--job-name")
    signal_seconds: int = Field(120, ge=1, description="SIGTERM this many seconds before the time limit")

    @classmethod
    def parse(cls, data: object) -> "SlurmOptions":
        try:
            opts = cls.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            raise ConfigError(
                f"slurm option {'.'.join(map(str, err['loc']))}: {err['msg']} (got {err.get('input')!r})",
                "fix the value and try again",
            ) from None
        if opts.time is not None and not _TIME_RE.match(opts.time):
            raise ConfigError(f"--time {opts.time!r} is not a Slurm time", "use MM, HH:MM:SS or D-HH:MM:SS")
        if opts.mem is not None and not _MEM_RE.match(opts.mem):
            raise ConfigError(f"--mem {opts.mem!r} is not a Slurm size", "use a number with K, M, G or T, e.g. 8G")
        return opts


def _directive_path(path: str) -> str:
    """A path for an ``#SBATCH --output`` line: sbatch reads these lines with its own parser,
    where ``%`` starts a pattern (``%%`` is a literal one), a backslash turns every pattern off
    and a newline ends the line -- refuse what it cannot carry rather than write elsewhere."""
    bad = [c for c in path if c == "\\" or ord(c) < 32]
    if bad:
        raise LaunchError(
            f"the population path {path!r} contains {''.join(sorted(set(map(repr, bad))))}, which sbatch "
            "cannot carry in an --output directive",
            "use a --pop folder without backslashes or control characters",
        )
    return path.replace("%", "%%")


def render_sbatch(
    template: str,
    *,
    options: SlurmOptions,
    pop_dir: str,
    log_dir: str,
    python: str,
    worker_script: str,
    worker_args: Sequence[str] = (),
) -> str:
    """The job-array script: ``options.workers`` tasks, each ``exec``-ing
    ``python worker_script --pop pop_dir *worker_args``.  Pure: no file, no environment."""
    directives = []
    for flag, value in (
        ("--partition", options.partition),
        ("--time", options.time),
        ("--gpus-per-task", options.gpus_per_task),
        ("--mem", options.mem),
        ("--account", options.account),
    ):
        if value is not None:
            directives.append(f"#SBATCH {flag}={shlex.quote(str(value))}")
    if options.requeue:
        directives.append("#SBATCH --requeue")
    command = shlex.join([python, worker_script, "--pop", pop_dir, *worker_args])
    output = _directive_path(log_dir.rstrip("/")) + "/slurm-%A_%a.out"
    return string.Template(template).substitute(
        job_name=shlex.quote(options.job_name),
        last_task=options.workers - 1,
        cpus_per_task=options.cpus_per_task,
        output=shlex.quote(output),
        signal_seconds=options.signal_seconds,
        directives="\n".join(directives),
        command=command,
    )


def render_finish(*, options: SlurmOptions, pop_dir: str, log_dir: str, python: str, array_job: str,
                  device: str = "auto") -> str:
    """The finishing job of ``--finish``: one task that starts once every task of ``array_job``
    has ended (``afterany``: stopped at evolution's deadline, failed or cancelled) and runs
    ``lse finish`` on the population -- the best by validation retrained for what is left of
    max_hours, on the resources one worker task gets.  Pure, like :func:`render_sbatch`."""
    directives = [f"#SBATCH {flag}={shlex.quote(str(value))}" for flag, value in (
        ("--partition", options.partition), ("--time", options.time), ("--gpus-per-task", options.gpus_per_task),
        ("--mem", options.mem), ("--account", options.account)) if value is not None]
    output = _directive_path(log_dir.rstrip("/")) + "/slurm-finish-%j.out"
    command = shlex.join([python, "-m", "lse.cli", "finish", "--pop", pop_dir, "--device", device])
    return "\n".join([
        "#!/bin/bash",
        "# lse: the finish of an experiment launched with --finish (lse.runners.slurm.render_finish):",
        "# after the worker array, retrain the best by validation for what is left of max_hours.",
        f"#SBATCH --job-name={shlex.quote(options.job_name + '-finish')}",
        f"#SBATCH --dependency=afterany:{array_job}",
        "#SBATCH --ntasks=1",
        f"#SBATCH --cpus-per-task={options.cpus_per_task}",
        f"#SBATCH --output={shlex.quote(output)}",
        *directives,
        "set -eu",
        'export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"',
        f"exec {command}",
        "",
    ])


def load_template(path: Path = TEMPLATE_PATH) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise LaunchError(
            f"sbatch template {path} not found", "run lse from its source checkout (launcher/ beside lse/)"
        ) from None


def submit(script: str, env: dict | None = None, sbatch: str = "sbatch") -> str:
    """Submit ``script`` (on sbatch's standard input); return the job id."""
    try:
        r = subprocess.run([sbatch, "--parsable"], input=script, capture_output=True, text=True, env=env, timeout=120)
    except FileNotFoundError:
        raise LaunchError("sbatch not found", "run on a Slurm login node, or use --dry-run to print the script") from None
    except subprocess.TimeoutExpired:
        raise LaunchError("sbatch did not answer within 120 s", "check the Slurm controller (sinfo)") from None
    if r.returncode != 0:
        raise LaunchError(f"sbatch refused the job: {r.stderr.strip() or r.stdout.strip()}",
                          "check --partition/--account/--time, or inspect the script with --dry-run")
    job_id = r.stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise LaunchError(f"sbatch answered {r.stdout.strip()!r}, not a job id", "check the Slurm installation")
    return job_id
