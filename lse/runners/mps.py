"""CUDA MPS (Multi-Process Service): several worker processes on one GPU whose kernels run side
by side instead of taking turns.

Without MPS a GPU time-slices between processes: one process's kernels run at a time, so K
small workers on one card leave most of it idle.  With MPS every client's kernels go through one
server context and share the multiprocessors.  The launcher starts the control daemon as the
user who runs it (no root needed), in private pipe and log folders that its workers are pointed
at through the environment, and stops it when the workers are done.  docs/GPU.md measures
individuals per GPU-hour with and without it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lse.errors import ConfigError

MPS_CONTROL = "nvidia-cuda-mps-control"


@dataclass(frozen=True)
class MpsDaemon:
    """A running MPS control daemon and the folders its clients must be told about."""

    control: str  # path of nvidia-cuda-mps-control
    pipe_dir: Path
    log_dir: Path

    def env(self) -> dict[str, str]:
        """What a client process needs in its environment to connect to this daemon."""
        return mps_env(self.pipe_dir, self.log_dir)

    def ask(self, command: str, timeout: float = 10.0) -> str:
        """One command to the control daemon (e.g. ``get_server_list``); its answer."""
        r = subprocess.run([self.control], input=command + "\n", capture_output=True, text=True,
                           env={**os.environ, **self.env()}, timeout=timeout)
        return r.stdout.strip()

    def server_pids(self) -> list[int]:
        """PIDs of the MPS servers: one appears once a client has connected (the check that
        clients really use MPS, and do not silently fall back to their own context)."""
        return [int(t) for t in self.ask("get_server_list").split() if t.isdigit()]

    def stop(self) -> None:
        try:
            self.ask("quit")
        except (OSError, subprocess.SubprocessError):
            pass
        shutil.rmtree(self.pipe_dir.parent, ignore_errors=True)


def mps_env(pipe_dir: Path, log_dir: Path) -> dict[str, str]:
    return {"CUDA_MPS_PIPE_DIRECTORY": str(pipe_dir), "CUDA_MPS_LOG_DIRECTORY": str(log_dir)}


def start_mps(which=shutil.which) -> MpsDaemon:
    """Start a private MPS control daemon (``nvidia-cuda-mps-control -d``) as this user.  Its
    folders are short paths under the temporary folder: the daemon's Unix sockets live there and
    a socket path may not exceed 107 bytes, which a population path easily would."""
    control = which(MPS_CONTROL)
    if control is None:
        raise ConfigError(f"--mps: {MPS_CONTROL} was not found on PATH",
                          "install the NVIDIA driver's utilities, or launch without --mps")
    base = Path(tempfile.mkdtemp(prefix=f"lse-mps-{os.getuid()}-"))
    daemon = MpsDaemon(control, base / "pipe", base / "log")
    daemon.pipe_dir.mkdir()
    daemon.log_dir.mkdir()
    r = subprocess.run([control, "-d"], capture_output=True, text=True, env={**os.environ, **daemon.env()}, timeout=30)
    if r.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        why = (r.stderr or r.stdout).strip().splitlines()[-1:] or [f"exit status {r.returncode}"]
        raise ConfigError(f"--mps: {MPS_CONTROL} -d failed: {why[0]}", "launch without --mps")
    return daemon
