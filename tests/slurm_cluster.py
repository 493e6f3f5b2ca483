"""A real, private, single-node Slurm for tests (NOTES.md recipe), always torn down.

``SlurmCluster(folder)`` starts ``munged``, ``slurmctld -D`` and ``slurmd -D`` with every file
(config, state, spool, logs, munge socket) under ``folder`` and free TCP ports, so it touches
neither ``/etc/slurm`` nor a munged or Slurm that may already run on the machine.  Clients
find it through ``SLURM_CONF`` (see :meth:`env`).  Leaving the ``with`` block cancels every
job and stops the three daemons it started (by their pid), even when the test failed.

Daemons run as root here (the NOTES.md setup); elsewhere the fixture skips with the reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel")


def unavailable_reason() -> str | None:
    """Why a real Slurm cannot be started here, or None when it can."""
    missing = [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]
    if missing:
        return f"Slurm binaries missing ({', '.join(missing)}): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "a private Slurm needs root here (SlurmUser=root, as in NOTES.md)"
    if not Path("/etc/munge/munge.key").exists():
        return "no munge key (/etc/munge/munge.key): reinstall munge"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _which(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class SlurmCluster:
    def __init__(self, folder: Path, cpus: int | None = None) -> None:
        self.dir = Path(folder)
        self.host = socket.gethostname().split(".")[0]
        self.cpus = cpus or os.cpu_count() or 1
        self.conf = self.dir / "slurm.conf"
        self.munge_socket = self.dir / "munge" / "munge.socket"
        self._procs: list[subprocess.Popen] = []

    def env(self, base: dict | None = None) -> dict:
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        return env

    # --- lifecycle ---
    def __enter__(self) -> "SlurmCluster":
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _start(self) -> None:
        for sub in ("state", "spool", "munge", "log"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir / "munge", 0o700)
        mem_mb = 1024
        try:
            import psutil

            mem_mb = max(1024, int(psutil.virtual_memory().total / 2**20 * 0.8))
        except ImportError:
            pass
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=lsetest",
                    f"SlurmctldHost={self.host}",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={self.munge_socket}",
                    f"StateSaveLocation={self.dir}/state",
                    f"SlurmdSpoolDir={self.dir}/spool",
                    f"SlurmctldPidFile={self.dir}/slurmctld.pid",
                    f"SlurmdPidFile={self.dir}/slurmd.pid",
                    f"SlurmctldLogFile={self.dir}/log/slurmctld.log",
                    f"SlurmdLogFile={self.dir}/log/slurmd.log",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SchedulerType=sched/backfill",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core",
                    "ReturnToService=2",
                    "MpiDefault=none",
                    "MailProg=/bin/true",
                    "KillWait=10",
                    f"NodeName={self.host} CPUs={self.cpus} RealMemory={mem_mb} State=UNKNOWN",
                    "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        log = open(self.dir / "log" / "daemons.out", "ab")
        self._spawn(
            [_which("munged"), "--foreground", "--force", f"--socket={self.munge_socket}",
             f"--pid-file={self.dir}/munge/munged.pid", f"--log-file={self.dir}/log/munged.log",
             f"--seed-file={self.dir}/munge/seed"], log)
        self._wait(lambda: self.munge_socket.exists(), "munged did not create its socket")
        self._spawn([_which("slurmctld"), "-D", "-c", "-f", str(self.conf)], log)
        self._spawn([_which("slurmd"), "-D", "-f", str(self.conf)], log)
        self._wait(self._node_idle, "the Slurm node did not become idle")

    def _spawn(self, argv: list[str], log) -> None:
        # A new session each, so that stop() can signal a daemon and nothing else.
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=self.env(), start_new_session=True)
        self._procs.append(p)

    def _wait(self, ok, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self._procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.args[0]} exited with {p.returncode}; see {self.dir}/log\n{self.logs()}")
            if ok():
                return
            time.sleep(0.5)
        raise RuntimeError(f"{what} within {timeout:.0f}s; see {self.dir}/log\n{self.logs()}")

    def _node_idle(self) -> bool:
        r = self.run(["sinfo", "-h", "-o", "%t"], check=False)
        return r.returncode == 0 and r.stdout.strip().startswith("idle")

    def stop(self) -> None:
        if any(p.poll() is None for p in self._procs[1:]):
            self.run(["scancel", "--full", "-u", "root"], check=False)  # our private cluster only
            time.sleep(1)
        for p in reversed(self._procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self._procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        self._procs.clear()

    # --- clients ---
    def run(self, argv: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=self.env(kw.pop("env", None)), capture_output=True, text=True,
                              check=check, timeout=60, **kw)

    def jobs(self, job_id: str) -> list[str]:
        """States of the job's (array) tasks still known to the controller."""
        r = self.run(["squeue", "-h", "-r", "-j", job_id, "-o", "%T"], check=False)
        return r.stdout.split() if r.returncode == 0 else []

    def wait_job(self, job_id: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.jobs(job_id):
                return
            time.sleep(1)
        raise TimeoutError(f"job {job_id} still {self.jobs(job_id)} after {timeout:.0f}s")

    def logs(self) -> str:
        out = []
        for f in sorted((self.dir / "log").glob("*")):
            text = f.read_text(errors="replace")[-2000:]
            out.append(f"--- {f.name}\n{text}")
        return "\n".join(out)
