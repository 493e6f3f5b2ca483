"""Launchers: start (or resume) an experiment and run its workers, locally or on Slurm.

One interface, one backend each (STYLE.md 5): :func:`prepare_experiment` creates or resumes
the population's ``experiment.json``; then either :func:`launch_local` runs N ``worker.py``
processes on this machine, or :func:`launch_slurm` submits them as a job array
(:mod:`lse.runners.slurm`).  ``python -m lse.runners.launch`` and ``lse launch`` parse options and call these.

Local backend:

* each worker is a subprocess of ``worker.py`` with its share of the CPU cores as torch/OMP
  threads (oversubscription made training 6x slower here, NOTES.md), or its GPU round robin
  (``--workers-per-gpu`` workers share one GPU);
* a crashed worker is restarted with exponential backoff (1, 2, 4, ... 60 s); a worker that
  exits with a usage/configuration error (exit 2) stops the launch with its message;
* Ctrl-C / SIGTERM: SIGTERM to every worker (each drops the child it is training and
  publishes nothing half-done), a grace period, then SIGKILL;
* a progress line refreshed about once a second from the store, and a closing summary.

Resuming: launching on a population that exists continues it.  Options given on the command
line must match its identity (everything but the stop conditions) or the launch is refused
with the list of differences, unless ``--force``; stop conditions may change freely.  A second
launch on another machine with the same ``--pop`` simply adds its workers.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, TextIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lse.core.datasets import classes_of
from lse.config import ExperimentConfig, apply_preset
from lse.errors import ConfigError, LaunchError, LseError
from lse.store import Store, clock
from lse.runners.warmstart import read_dna_file, seed_from
from lse.runners.worker import LAUNCHER_PID_ENV, count_births
from lse.store.scan import PopulationScan

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER_SCRIPT = REPO_ROOT / "worker.py"
#: exit status of worker.py for a usage or configuration error: restarting cannot help
WORKER_CONFIG_ERROR = 2
#: a worker that ran at least this long before crashing resets its backoff
STABLE_SECONDS = 60.0
#: how often the launcher reads each worker's heartbeat for the births it reports
HEARTBEAT_READ_SECONDS = 2.0

Echo = Callable[[str], None]


#: workers per GPU when --workers-per-gpu is not given (docs/GPU.md: individuals per GPU-hour
#: for 1 to 32 workers on one H200)
DEFAULT_WORKERS_PER_GPU = 16
#: --finish: a finish with less time than this left (a relaunch near the end of the hours) is skipped
FINISH_MIN_MINUTES = 0.25


class LaunchOptions(BaseModel):
    """How the local launcher runs its workers (machine-specific, not saved)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workers: int = Field(1, ge=1, description="worker processes on this machine")
    workers_per_gpu: int = Field(1, ge=1, description="workers sharing one GPU (round robin over GPUs)")
    device: str = Field("auto", pattern="^(auto|cpu|cuda)$", description="auto: cuda when available, else cpu")
    threads: int | None = Field(None, ge=1, description="torch threads per worker; None: its share of the cores")
    grace_seconds: float = Field(30.0, gt=0, description="after SIGTERM, seconds before workers are killed")
    max_restarts: int = Field(8, ge=0, description="consecutive quick crashes of one worker before giving up on it")
    precision: str = Field("auto", pattern="^(auto|fp32|bf16)$", description="CUDA arithmetic of the workers")
    cuda_graph: bool = Field(True, description="CUDA: workers replay each child's training step from a CUDA graph")
    mps: bool | None = Field(None, description="CUDA: start an MPS daemon so the workers of one GPU share it "
                             "concurrently; None: try, and go on without it if it cannot start")

    @classmethod
    def parse(cls, data: dict) -> "LaunchOptions":
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(map(str, err["loc"]))
            hint = "valid devices: auto, cpu, cuda" if loc == "device" else "fix the value and try again"
            raise ConfigError(f"--{loc.replace('_', '-')}: {err['msg']} (got {err.get('input')!r})", hint) from None


# --------------------------------------------------------------------------------------------
# experiment creation / resume


def parse_mutation_probs(items: list[str] | None) -> dict[str, float] | None:
    """``["insert_convolution=2", "identity=0.5"]`` -> dict; names not given weigh 0."""
    if not items:
        return None
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--mutation-prob {item!r} is not NAME=WEIGHT", "e.g. --mutation-prob insert_convolution=2") from None
    return out


def parse_steps_from(items: list[str] | None) -> list[list[float]] | None:
    """``["1000@15m", "2000@25m"]`` -> ``[[15.0, 1000], [25.0, 2000]]`` (minutes, steps), sorted by
    minute; the values' range is the config's to check."""
    if not items:
        return None
    from lse.core.events import parse_duration

    out = []
    for item in items:
        steps, sep, at = item.partition("@")
        try:
            if not sep:
                raise ValueError
            out.append([parse_duration(at) / 60, int(steps)])
        except ValueError:
            raise ConfigError(f"--steps-from {item!r} is not STEPS@AT",
                              "e.g. --steps-from 1000@15m (children that start from minute 15 train 1000 steps)") from None
    return sorted(out)


def parse_channels(text: str | None) -> list[int] | None:
    """``"16,32,64"`` -> ``[16, 32, 64]``; the values' range is the config's to check."""
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise ConfigError(f"--insert-channels {text!r} is not a comma-separated list of integers",
                          "e.g. --insert-channels 16,32,64") from None


def parse_algorithm(name: str | None, items: list[str] | None) -> dict | None:
    """``--algorithm NAME --algorithm-option KEY=VALUE ...`` -> ``{"name", "options"}``; values are
    read as JSON where they parse (numbers, true/false), else as strings.  None: not given."""
    if name is None and not items:
        return None
    options: dict = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--algorithm-option {item!r} is not KEY=VALUE", "e.g. --algorithm-option tournament_size=10")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return {"name": name or "real2017", "options": options}


def prepare_experiment(
    pop_dir: str | os.PathLike,
    given: dict,
    *,
    workers: int = 1,
    force: bool = False,
    echo: Echo = print,
    check_data: bool = True,
) -> ExperimentConfig:
    """Create the population with ``given`` options (defaults for the rest), or resume it.

    ``given`` holds only the options the user passed.  On resume they are checked against the
    saved experiment: identity differences raise ConfigError listing them (``force``: the saved
    configuration is replaced, with a warning); stop conditions are updated.  A leftover STOP
    file is removed (launching means "run").  ``check_data``: a new experiment's data set must
    load here first (a typo in --data-dir is reported now, not by every worker).
    """
    given = {k: v for k, v in given.items() if v is not None}
    seed_source = given.pop("seed_from", None)
    # section 5: a schedule of mutation bursts and weight resets, recorded as events
    bursts, resets = given.pop("mutation_bursts", None) or (), given.pop("weight_resets", None) or ()
    if bursts or resets:  # malformed schedules are refused before anything is created
        from lse.core.events import parse_burst, parse_duration

        try:
            [parse_burst(b) for b in bursts], [parse_duration(r) for r in resets]
        except ValueError as e:
            raise ConfigError(str(e), "fix --mutation-burst / --weight-reset") from None
    if given.get("data_dir"):
        given["data_dir"] = str(Path(given["data_dir"]).expanduser().resolve())
    store = Store(pop_dir)
    if not store.paths.experiment.exists():
        wanted = ExperimentConfig.parse({"population_size": 4 * workers, **given}, "options")
        if check_data:
            from lse.nn.data import load_dataset

            checked = load_dataset(wanted.dataset, wanted.data_dir, validation_size=wanted.validation_size,
                                   seed=wanted.seed, cache=False, image=wanted.image_options())
        saved = store.create(wanted)
        if saved == wanted:
            if check_data:
                write_classes(store.root, checked)
            echo(f"created experiment in {store.root} (population {saved.population_size}, algorithm "
                 f"{saved.algorithm.name}, {saved.selection} selection)")
            _schedule(store.open(), bursts, resets, echo)
            if seed_source is not None:
                n = seed_from(store.open(), seed_source, saved, echo)
                echo(f"seeded {n} individual(s) from {seed_source}")
            _warn_ratio(saved, workers, echo)
            return saved
        # another launcher created it first: resume theirs like any existing population
    if seed_source is not None:
        raise ConfigError(f"--seed-from: {store.root} already holds an experiment", "seed a new --pop")
    store.open()
    saved = store.config
    wanted = ExperimentConfig.parse({**saved.model_dump(), **given}, "options")
    diffs = saved.differences(wanted)
    if diffs and not force:
        raise ConfigError(
            f"{store.root} holds a different experiment ({'; '.join(diffs)})",
            "launch with its options (or none), use another --pop, or pass --force to replace them",
        )
    if diffs:
        echo(f"warning: --force: replacing the experiment's configuration ({'; '.join(diffs)})")
    if wanted != saved:
        changed = [k for k in ("max_individuals", "max_hours", "max_flops") if getattr(wanted, k) != getattr(saved, k)]
        if changed:
            echo("updated stop conditions: " + ", ".join(f"{k}={getattr(wanted, k)}" for k in changed))
        store.replace_config(wanted, force=force)
        if wanted.mutations_per_child != saved.mutations_per_child:
            # a live setting: recorded as an event too, so it is in force from now even over an
            # earlier `lse mutations`, and the reports mark it
            from lse.store.events import EventLog

            EventLog(store).set_mutations(wanted.mutations_per_child, source="resume")
            echo(f"updated mutations per child: {wanted.mutations_per_child}")
    _schedule(store, bursts, resets, echo)
    if store.stop_requested():
        store.clear_stop()
        echo("removed the STOP file left by an earlier stop")
    if finished_line(store) is None:  # otherwise the caller says why nothing starts, in one line
        echo(f"resuming the experiment in {store.root} ({len(count_births(store))} individuals so far)")
        _warn_ratio(wanted, workers, echo)
    return wanted


def write_classes(pop: Path, ds) -> None:
    """POP/classes.json: class names by label, input shape and the training split's mean and std
    of the experiment's data set ``ds``, so exports and predictions need not read the data."""
    from lse.store.atomic import write_json_atomic

    write_json_atomic(Path(pop) / "classes.json", {
        "classes": list(ds.classes) or [str(k) for k in range(ds.num_classes)], "input_shape": list(ds.input_shape),
        "mean": list(ds.mean), "std": list(ds.std),
        "dataset": ds.record()}, fix="make the population writable", indent=2)


def _schedule(store: Store, bursts, resets, echo: Echo) -> None:
    if bursts or resets:
        from lse.runners.live import schedule

        schedule(store, bursts, resets, echo)


def _warn_ratio(cfg: ExperimentConfig, workers: int, echo: Echo) -> None:
    if workers > cfg.population_size / 2:
        echo(
            f"warning: {workers} workers for a population of {cfg.population_size}: with more than half as many "
            "workers as individuals, workers keep killing each other's parents (the paper uses 1/4)"
        )


# --------------------------------------------------------------------------------------------
# progress and summary (read from the store, like any other reader)


@dataclass
class Snapshot:
    births: int
    alive: int
    best: float | None
    flops: float
    rate_per_min: float


class Progress:
    """Cheap periodic view of a population: listings every tick, record reads only when the
    number of births changed (and at most every ``read_every`` seconds)."""

    def __init__(self, store: Store, read_every: float = 2.0) -> None:
        self.store = store
        self.read_every = read_every
        self.t0 = time.monotonic()
        self.births0: int | None = None
        self.best: float | None = None
        self.flops = 0.0
        self._flops_by_id: dict[str, float] = {}
        self._last_read = -float("inf")
        self._read_births = -1
        self.scan = PopulationScan(store.paths)  # kept: each tick parses only the new names

    def snapshot(self) -> Snapshot:
        births = len(count_births(self.store, self.scan))
        if self.births0 is None:
            self.births0 = births
        entries = self.store.entries()
        alive = sum(e.state == "alive" for e in entries)
        for e in entries:
            if e.fitness is not None and (self.best is None or e.fitness > self.best):
                self.best = e.fitness
        now = time.monotonic()
        if births != self._read_births and now - self._last_read >= self.read_every:
            self._read(now, births)
        minutes = max((now - self.t0) / 60.0, 1e-9)
        return Snapshot(births, alive, self.best, self.flops, (births - self.births0) / minutes)

    def _read(self, now: float, births: int) -> None:
        self._last_read, self._read_births = now, births
        for rec in self.store.records():
            if rec.id not in self._flops_by_id:
                self._flops_by_id[rec.id] = rec.flops.total if rec.flops else 0.0
            if rec.val_accuracy is not None and (self.best is None or rec.val_accuracy > self.best):
                self.best = rec.val_accuracy
        self.flops = sum(self._flops_by_id.values())


def format_line(s: Snapshot, limit: int | None, running: int, workers: int) -> str:
    births = f"{s.births}/{limit}" if limit else str(s.births)
    best = "-" if s.best is None else f"{s.best:.4f}"
    return (
        f"individuals {births} | alive {s.alive} | best val acc {best} | FLOPs {s.flops:.3g} | "
        f"{s.rate_per_min:.1f}/min | workers {running}/{workers}"
    )


def deaths_text(reasons: Iterable[str | None]) -> str:
    """How many children died in training, and of what: a search's own deaths (a mutated learning
    rate that diverges) read apart from a fault.  A child cut off by the deadline is never
    published, so it is not among them."""
    from collections import Counter

    kinds = Counter(r.split(":")[0].strip() for r in reasons if r is not None)
    if not kinds:
        return "none died"
    n = sum(kinds.values())
    return f"{n} died in training: " + ", ".join(f"{c} {k}" for k, c in kinds.most_common())


def summary_text(store: Store, stop_reason: str) -> str:
    """The closing summary: counts, best initial vs best, the best individual and its architecture."""
    from lse.core.genomes import describe

    recs = store.records()
    cfg = store.config
    lines = [f"stopped: {stop_reason}"]
    flops = sum(r.flops.total for r in recs if r.flops)
    lines.append(f"individuals: {len(recs)} ({deaths_text(r.failed_reason for r in recs)}), FLOPs spent: {flops:.3g}")
    scored = [r for r in recs if r.val_accuracy is not None]
    if scored:
        best = max(scored, key=lambda r: (r.val_accuracy, r.id))
        initial = [r.val_accuracy for r in scored if r.parent_id is None]
        if initial:
            lines.append(f"best initial val accuracy: {max(initial):.4f}")
        try:
            arch = describe(best.genome, best.dna, classes_of(cfg.dataset))[0]
        except LseError as e:
            arch = f"(unreadable DNA: {e})"
        lines.append(f"best individual: {best.id}  val accuracy {best.val_accuracy:.4f}  generation {best.generation}")
        lines.append(f"  architecture: {arch}  lr {best.dna.get('learning_rate', float('nan')):.4g}")
    lines.append(f"report: lse report --pop {_shell_path(store.root)}")
    return "\n".join(lines)


def _shell_path(p: Path) -> str:
    import shlex

    return shlex.quote(str(p))


# --------------------------------------------------------------------------------------------
# local backend


@dataclass
class _Slot:
    index: int
    gpu: int | None
    threads: int
    proc: subprocess.Popen | None = None
    started: float = 0.0
    quick_crashes: int = 0
    next_start: float = 0.0
    done: bool = False
    exit_codes: list[int] = field(default_factory=list)
    worker_id: str = ""  # id of the worker process now (or last) in this slot
    births: int = 0  # births of that worker, as its heartbeat last said
    heard: float = 0.0  # monotonic time its heartbeat was last read


@dataclass
class LaunchSummary:
    pop: Path
    stop_reason: str
    births: int
    best_val_accuracy: float | None
    exit_codes: dict[int, list[int]]
    text: str


def _resolve_gpus(device: str) -> int:
    """Number of GPUs the workers will use (0: CPU)."""
    if device == "cpu":
        return 0
    try:
        import torch

        n = torch.cuda.device_count()
    except ImportError:
        n = 0
    if device == "cuda" and n == 0:
        raise ConfigError("--device cuda but no CUDA device is visible", "use --device cpu or auto")
    return n


def plan_slots(opts: LaunchOptions, gpus: int, cores: int) -> list[_Slot]:
    """Worker i gets GPU i mod gpus (round robin), or cores // workers threads on CPU."""
    if gpus:
        threads = opts.threads or max(1, cores // opts.workers)
        return [_Slot(i, i % gpus, threads) for i in range(opts.workers)]
    threads = opts.threads or max(1, cores // opts.workers)
    return [_Slot(i, None, threads) for i in range(opts.workers)]


class LocalLauncher:
    def __init__(self, pop_dir: Path, opts: LaunchOptions, *, echo: Echo = print, out: TextIO | None = None,
                 progress: bool = True, python: str = sys.executable) -> None:
        self.pop = Path(pop_dir).resolve()
        self.opts = opts
        self.echo = echo
        self.out = out or sys.stdout
        self.progress = progress
        self.python = python
        self.store = Store(self.pop).open()
        self.stopping: str | None = None
        self.kill_at: float | None = None
        self.fatal: str | None = None
        gpus = _resolve_gpus(opts.device)
        self.device = "cuda" if gpus else "cpu"
        self.slots = plan_slots(opts, gpus, os.cpu_count() or 1)
        self.label = f"launch-{_host_label()}-{os.getpid()}"
        self.mps = None  # the MPS daemon this launcher started (--mps on CUDA)

    # -- worker processes --
    def _start(self, slot: _Slot) -> None:
        argv = [self.python, str(WORKER_SCRIPT), "--pop", str(self.pop), "--device", self.device,
                "--threads", str(slot.threads)]
        if slot.gpu is not None:
            argv += ["--gpu", str(slot.gpu), "--precision", self.opts.precision]
            if not self.opts.cuda_graph:
                argv.append("--no-cuda-graph")
        # A known worker id per run: its heartbeat says how many children it published, which
        # tells a crash-looping worker from one that made progress (see _on_exit).
        slot.worker_id = f"{self.label}-w{slot.index}-{len(slot.exit_codes)}"
        slot.births, slot.heard = 0, time.monotonic()
        argv += ["--worker-id", slot.worker_id]
        env = dict(os.environ)
        env.update({"OMP_NUM_THREADS": str(slot.threads), "MKL_NUM_THREADS": str(slot.threads),
                    LAUNCHER_PID_ENV: str(os.getpid()), "PYTHONUNBUFFERED": "1"})
        if self.mps is not None:
            env.update(self.mps.env())
        # Workers' stderr (warnings, tracebacks) in a log file per slot; each worker also
        # writes its full log to logs/<worker id>.log.
        log_path = self.store.paths.log(f"{self.label}-w{slot.index}")
        with open(log_path, "ab") as log:
            # Own session: a terminal's Ctrl-C reaches the launcher only, which then stops the
            # workers in order (SIGTERM, grace, SIGKILL) instead of racing them.
            slot.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                         start_new_session=True)
        slot.started = time.monotonic()

    def _listen(self, slot: _Slot, now: float) -> None:
        """Note the births the slot's worker reports in its heartbeat (lse.store.liveness)."""
        slot.heard = now
        hb = self.store.heartbeat_of(slot.worker_id) if slot.worker_id else None
        if hb is not None and hb.get("births"):
            slot.births = max(slot.births, hb["births"])

    def _on_exit(self, slot: _Slot, rc: int) -> None:
        slot.exit_codes.append(rc)
        slot.proc = None
        if rc == 0 or self.stopping:
            slot.done = True
            return
        log_path = self.store.paths.log(f"{self.label}-w{slot.index}")
        if rc == WORKER_CONFIG_ERROR:
            self.fatal = f"worker {slot.index} refused to run: {_tail(log_path)}"
            slot.done = True
            return
        ran = time.monotonic() - slot.started
        self._listen(slot, time.monotonic())  # its last heartbeat, unless recovery took it already
        # A worker that published before it died (killed by the OOM killer, an admin, a node
        # failure) is not crash-looping: restart it at once instead of backing off towards
        # giving up.  Without this, a storm of kills left evolution waiting 32 s per restart.
        stable = ran >= STABLE_SECONDS or slot.births > 0
        slot.quick_crashes = 1 if stable else slot.quick_crashes + 1
        if slot.quick_crashes > self.opts.max_restarts:
            self.echo(f"\nworker {slot.index} crashed {slot.quick_crashes} times in a row; giving up on it "
                      f"(see {log_path})")
            slot.done = True
            return
        delay = min(60.0, 2.0 ** (slot.quick_crashes - 1))
        slot.next_start = time.monotonic() + delay
        self.echo(f"\nworker {slot.index} exited with {rc}; restarting in {delay:.0f} s (log: {log_path})")

    def _signal(self, signum: int, _frame: object) -> None:
        if self.stopping is None:
            self.stopping = f"{signal.Signals(signum).name} (resume with the same command)"
        else:  # a second Ctrl-C: do not wait for the grace period
            self.kill_at = time.monotonic()

    def _begin_stop(self, reason: str) -> None:
        if self.stopping is None:
            self.stopping = reason
        if self.kill_at is None:
            self.kill_at = time.monotonic() + self.opts.grace_seconds
        for s in self.slots:
            if s.proc is not None and s.proc.poll() is None:
                try:
                    s.proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def run(self) -> LaunchSummary:
        previous = {sig: signal.signal(sig, self._signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        view = Progress(self.store)
        limit = None
        sigtermed = False
        last_tick = -float("inf")
        line_len = 0
        tty = self.progress and getattr(self.out, "isatty", lambda: False)()
        try:
            if self.opts.mps is not False and self.device == "cuda" and len(self.slots) > 1:
                from lse.runners.mps import start_mps

                try:
                    self.mps = start_mps()
                    self.echo(f"started a CUDA MPS daemon for the workers (pipes in {self.mps.pipe_dir})")
                except ConfigError as e:
                    if self.opts.mps:  # asked for explicitly: refuse
                        raise
                    self.echo(f"warning: {e}; the workers share the GPU without MPS (time-sliced)")
            for s in self.slots:
                self._start(s)
            self.echo(f"started {len(self.slots)} worker(s) on {self.device}"
                      f" ({self.slots[0].threads} thread(s) each); logs in {self.store.paths.logs}")
            while True:
                now = time.monotonic()
                for s in self.slots:
                    if s.proc is not None:
                        rc = s.proc.poll()
                        if rc is not None:
                            self._on_exit(s, rc)
                        elif now - s.heard >= HEARTBEAT_READ_SECONDS:
                            self._listen(s, now)
                    elif not s.done and not self.stopping and now >= s.next_start:
                        self._start(s)
                if self.fatal and not self.stopping:
                    self.stopping = "a worker could not run"
                if self.stopping and not sigtermed:
                    self._begin_stop(self.stopping)
                    sigtermed = True
                if self.stopping:
                    for s in self.slots:
                        if s.proc is None:
                            s.done = True
                    if self.kill_at is not None and now >= self.kill_at:
                        for s in self.slots:
                            if s.proc is not None and s.proc.poll() is None:
                                s.proc.kill()
                if all(s.done for s in self.slots):
                    break
                if self.progress and now - last_tick >= 1.0:
                    last_tick = now
                    try:
                        limit = self.store.config.max_individuals if limit is None else limit
                        snap = view.snapshot()
                        running = sum(s.proc is not None for s in self.slots)
                        line = format_line(snap, _current_limit(self.store), running, len(self.slots))
                        if tty:
                            self.out.write("\r" + line.ljust(line_len))
                            line_len = len(line)
                            self.out.flush()
                        elif now - getattr(self, "_last_plain", -1e9) >= 10.0:
                            self._last_plain = now
                            self.out.write(line + "\n")
                            self.out.flush()
                    except (OSError, LseError):
                        pass  # a progress line is never worth a crash
                time.sleep(0.2)
        finally:
            for s in self.slots:  # never leave a worker behind, whatever happened above
                if s.proc is not None and s.proc.poll() is None:
                    s.proc.kill()
                    s.proc.wait()
            if self.mps is not None:
                self.mps.stop()
            for sig, h in previous.items():
                signal.signal(sig, h)
            if tty:
                self.out.write("\n")
        if self.fatal:
            raise LaunchError(self.fatal, "fix the option or data set and launch again")
        reason = self.stopping or _limit_reason(self.store) or "all workers exited"
        text = summary_text(self.store, reason)
        recs = self.store.records()
        scored = [r.val_accuracy for r in recs if r.val_accuracy is not None]
        return LaunchSummary(self.pop, reason, len(recs), max(scored) if scored else None,
                             {s.index: s.exit_codes for s in self.slots}, text)


def _current_limit(store: Store) -> int | None:
    try:
        return ExperimentConfig.from_json(store.paths.experiment.read_text()).max_individuals
    except (OSError, LseError):
        return None


def _limit_reason(store: Store) -> str | None:
    cfg = ExperimentConfig.from_json(store.paths.experiment.read_text())
    if store.stop_requested():
        return "STOP file (lse stop)"
    if cfg.max_individuals is not None and len(count_births(store)) >= cfg.max_individuals:
        return f"max_individuals={cfg.max_individuals} reached"
    if cfg.max_hours is not None and clock.age_seconds(store) >= cfg.evolve_hours * 3600:
        if cfg.finish_minutes:
            return f"evolution's time is up (max_hours={cfg.max_hours:g} less {cfg.finish_minutes:g} minutes to finish)"
        return f"max_hours={cfg.max_hours} reached"
    if cfg.max_flops is not None:
        return f"max_flops={cfg.max_flops:.3g} (or another stop condition) reached"
    return None


def finished_line(store: Store) -> str | None:
    """One line if the experiment's stop condition is already met, so that a launch on it would
    start workers that stop at once (the trap of re-running the quick start on its folder):
    which condition, since when, and how to extend it or start fresh.  None: there is work left.

    Checked the way the workers check (lse.runners.worker), after a resume updated the stop
    fields; a STOP file is not a condition here (launching removes it, meaning "run").
    """
    cfg = ExperimentConfig.from_json(store.paths.experiment.read_text(), str(store.paths.experiment))
    created = clock.created_at(store)  # the clock max_hours counts from
    births = count_births(store)
    met = extend = None
    if cfg.max_individuals is not None and len(births) >= cfg.max_individuals:
        met = f"max_individuals={cfg.max_individuals} reached ({len(births)} individuals)"
        extend = f"--max-individuals {2 * cfg.max_individuals}"
    elif cfg.max_hours is not None and time.time() - created >= cfg.evolve_hours * 3600:
        at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(created + cfg.evolve_hours * 3600))
        met = f"max_hours={cfg.max_hours:g} reached at {at} ({len(births)} individuals)"
        if cfg.finish_minutes:
            met = (f"its evolution ended at {at} (max_hours={cfg.max_hours:g} less --finish {cfg.finish_minutes:g}; "
                   f"{len(births)} individuals; its final model, if the finish ran, is in {_shell_path(store.root / 'retrained')}; "
                   f"another: lse retrain --pop {_shell_path(store.root)} best --minutes M)")
        # max_hours counts from the creation, so "as long again" is the hours elapsed plus the
        # old limit (2 x the limit would still be met on a run relaunched a day later)
        elapsed = (time.time() - created) / 3600
        extend = f"--max-hours {math.ceil((elapsed + cfg.max_hours) * 100) / 100:g}"
    elif cfg.max_flops is not None:
        recs = (store.record(i) for i in births)
        spent = sum(r.flops.total for r in recs if r is not None and r.flops)
        if spent >= cfg.max_flops:
            met = f"max_flops={cfg.max_flops:.3g} reached ({spent:.3g} spent)"
            extend = f"--max-flops {2 * cfg.max_flops:.3g}"
    if met is None:
        return None
    q = _shell_path(store.root)
    return (f"nothing to do: {q} is finished, {met}; to go on, launch it again with a larger limit "
            f"(e.g. {extend}); to start fresh, use another --pop or remove {q}")


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return f"(no log at {path})"
    errs = [ln for ln in text if "error" in ln.lower()]
    return " | ".join((errs or text)[-lines:]) or f"(empty log {path})"


def _host_label() -> str:
    h = "".join(c if c.isalnum() or c == "-" else "-" for c in socket.gethostname())[:40].strip("-")
    return h or "host"


def launch_local(pop_dir, opts: LaunchOptions, *, echo: Echo = print, progress: bool = True) -> LaunchSummary:
    """Run ``opts.workers`` local workers on the (prepared) population until they stop."""
    summary = LocalLauncher(Path(pop_dir), opts, echo=echo, progress=progress).run()
    echo(summary.text)
    finish(Path(pop_dir), opts, echo=echo)
    return summary


def finish(pop: Path, opts: LaunchOptions, *, echo: Echo = print) -> dict | None:
    """``finish_minutes``: when the workers stopped because evolution's time was up, retrain the
    best by validation (``lse retrain``) on every thread the workers had, until ``max_hours``.
    Returns the retrained result, or None when there is no finish to run (not asked for; the run
    stopped for another reason; too little time left; nothing scored)."""
    store = Store(pop).open()
    cfg = ExperimentConfig.from_json(store.paths.experiment.read_text(), str(store.paths.experiment))
    if not cfg.finish_minutes or store.stop_requested():
        return None
    age = clock.age_seconds(store)
    left_min = (cfg.max_hours * 3600 - age) / 60
    if age < cfg.evolve_hours * 3600 or left_min < FINISH_MIN_MINUTES:
        return None  # stopped for another reason, or relaunched after the hours (too late to finish)
    if not any(r.val_accuracy is not None for r in store.records()):
        echo("finish: no individual has a validation accuracy; nothing to retrain")
        return None
    import torch

    from lse.runners.retrain import retrain

    cores = os.cpu_count() or 1
    threads = min(cores, opts.workers * opts.threads) if opts.threads else cores
    torch.set_num_threads(max(1, threads))
    echo(f"finish: retraining the best by validation for the {left_min:.1f} minutes left of max_hours="
         f"{cfg.max_hours:g} ({threads} thread(s); --finish {cfg.finish_minutes:g})")
    try:
        r = retrain(pop, "best", minutes=left_min, device=opts.device, echo=echo)
    except (LseError, KeyboardInterrupt) as err:  # the evolution's results are kept whatever the finish does
        why = "interrupted" if isinstance(err, KeyboardInterrupt) else f"failed: {err}"
        echo(f"finish {why}; the population is intact: lse retrain --pop {_shell_path(pop)} best --minutes M")
        return None
    echo(f"final model: {pop / 'retrained' / r['name']} ({r['steps']} steps): validation {r['val_accuracy_before']:.4f} "
         f"-> {r['val_accuracy']:.4f}, test {r['test_accuracy']:.4f}; use it: lse export --pop {_shell_path(pop)} "
         f"retrained:{r['name']}")
    return r


# --------------------------------------------------------------------------------------------
# Slurm backend


def launch_slurm(pop_dir, slurm_opts, *, device: str = "auto", dry_run: bool = False, echo: Echo = print,
                 env: dict | None = None, python: str = sys.executable, finish_minutes: float | None = None) -> str | None:
    """Render the job-array script; print it (``dry_run``) or submit it.  Returns the job id.
    ``finish_minutes``: also a finishing job that runs once the array has ended (--finish)."""
    from lse.runners import slurm
    from lse.store.population import PopulationPaths

    paths = PopulationPaths(Path(pop_dir).resolve())
    script = slurm.render_sbatch(
        slurm.load_template(), options=slurm_opts, pop_dir=str(paths.root), log_dir=str(paths.logs),
        python=python, worker_script=str(WORKER_SCRIPT), worker_args=["--device", device],
    )
    if dry_run:
        echo(script.rstrip("\n"))
        if finish_minutes:
            echo("\n# then, submitted with the array's job id:\n" + slurm.render_finish(
                options=slurm_opts, pop_dir=str(paths.root), log_dir=str(paths.logs), python=python,
                array_job="ARRAY_JOB_ID", device=device).rstrip("\n"))
        return None
    job = slurm.submit(script, env=env)
    q = _shell_path(paths.root)
    echo(f"submitted job array {job} ({slurm_opts.workers} task(s)); worker logs in {paths.logs}\n"
         f"  progress: lse status --pop {q} --watch    queue: squeue -j {job}\n"
         f"  stop gracefully: lse stop --pop {q}    (or scancel {job}: workers stop on SIGTERM)")
    if finish_minutes:
        fin = slurm.submit(slurm.render_finish(options=slurm_opts, pop_dir=str(paths.root), log_dir=str(paths.logs),
                                               python=python, array_job=job, device=device), env=env)
        echo(f"submitted finishing job {fin}: after the array, the best is retrained for the last "
             f"{finish_minutes:g} minutes of max_hours (--finish)")
    return job


# --------------------------------------------------------------------------------------------
# command line


def _plain_help_command():
    """The launch command's class: click's plain help instead of typer's rich panels.  With ~50
    options, rich's table cut option names at 80 columns (``--initial-learni…``) and squeezed
    their meanings into a column ~20 characters wide; click's layout puts a long name on its own
    line and the meaning below, at any width."""
    from typer.core import TyperCommand

    class PlainHelpCommand(TyperCommand):
        def format_help(self, ctx, formatter) -> None:
            self.rich_markup_mode = None  # typer's switch back to click's formatter
            super().format_help(ctx, formatter)

    return PlainHelpCommand


def _command():
    import typer

    def launch_cmd(
        pop: Path = typer.Option(Path("population"), "--pop", help="population folder (created if missing, resumed if it exists)"),
        workers: int = typer.Option(None, "--workers", "-w", min=1, help="workers: local processes or Slurm array tasks (default: one per core on CPU, GPUs x --workers-per-gpu on GPU)"),
        workers_per_gpu: int = typer.Option(None, "--workers-per-gpu", min=1, help=f"local workers sharing one GPU (default: {DEFAULT_WORKERS_PER_GPU}, measured in docs/GPU.md)"),
        precision: str = typer.Option("auto", "--precision", help="CUDA arithmetic: auto | fp32 | bf16 (auto: see docs/GPU.md)"),
        cuda_graph: bool = typer.Option(True, "--cuda-graph/--no-cuda-graph", help="CUDA: replay each child's training step from a CUDA graph"),
        mps: bool = typer.Option(None, "--mps/--no-mps", help="CUDA: run the workers of a GPU under an MPS daemon this launch starts and stops (default: on when it can start)"),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda (auto: cuda when available)"),
        threads: int = typer.Option(None, "--threads", min=1, help="torch threads per local worker (default: cores / workers)"),
        dataset: str = typer.Option(None, "--dataset", help="fashion-mnist | mnist | cifar10 | cifar100 | encoded (codes written by `lse ae encode`; --data-dir names them) | folder:PATH (your images: PATH/train/<class>/*.png) | npz:FILE (your arrays); see docs/OWNDATA.md (default: fashion-mnist)"),
        image_size: str = typer.Option(None, "--image-size", help="HxW: folder/npz images are resized to this (default: their common size)"),
        channels: int = typer.Option(None, "--channels", help="1 | 3: folder/npz images forced grey or colour (default: as found)"),
        test_fraction: float = typer.Option(None, "--test-fraction", help="folder/npz without a test set: stratified fraction held out as the test set (default: 0.2)"),
        skip_bad_images: bool = typer.Option(None, "--skip-bad-images/--no-skip-bad-images", help="folder: leave unreadable images out instead of refusing (default: refuse)"),
        data_dir: Path = typer.Option(None, "--data-dir", help="folder with the data set's standard files, or their usual subfolder (cifar-10-batches-py, cifar-100-python, mnist, fashion-mnist); looked up only there when given; default: $LSE_DATA, then $XDG_DATA_HOME/lse/data (~/.local/share/lse/data: `lse data fetch` writes there), then for fashion-mnist /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist)"),
        augment: bool = typer.Option(None, "--augment/--no-augment", help="pad-and-crop (and flip where allowed) augmentation of training batches (default: on)"),
        validation_size: int = typer.Option(None, "--validation-size", min=1, help="training examples held out for fitness (default: 5000)"),
        population_size: int = typer.Option(None, "--population-size", min=2, help="alive individuals to maintain (default: 4 x workers, the paper's ratio)"),
        steps: int = typer.Option(None, "--steps", min=1, help="SGD steps per individual, batch 50 (default: 25600)"),
        steps_from: list[str] = typer.Option(None, "--steps-from", help="STEPS@AT, repeatable: children that start training AT or later after the experiment began train STEPS steps (e.g. 2000@25m; not the paper)"),
        child_flops: float = typer.Option(None, "--child-flops", help="training FLOPs one child may spend: a network 10x as expensive trains 10x fewer steps; one that cannot train --min-child-steps within it is refused (not the paper; default: none)"),
        min_child_steps: int = typer.Option(None, "--min-child-steps", min=1, help="with --child-flops: the fewest steps worth training (default: 50)"),
        selection: str = typer.Option(None, "--selection", help="tournament (section 3.1) | random (the random-search control) (default: tournament)"),
        inheritance: bool = typer.Option(None, "--inheritance/--no-inheritance", help="children inherit the parent's weights (section 3.6) (default: on)"),
        morph: bool = typer.Option(None, "--morph/--no-morph", help="inheritance as a network morphism: a child starts computing what its parent did (not the paper; default: off)"),
        flip: bool = typer.Option(None, "--flip/--no-flip", help="augmentation mirrors half the images left-right (default: on for fashion-mnist and CIFAR, off for mnist)"),
        seed: int = typer.Option(None, "--seed", help="experiment seed: validation split, workers' seeds (default: 0)"),
        initial_learning_rate: float = typer.Option(None, "--initial-learning-rate", help="learning rate of initial individuals (default: 0.1)"),
        lr_schedule: str = typer.Option(None, "--lr-schedule", help="constant (section 3.4) | cosine (each child's learning rate decays to 0 over its steps; not the paper) (default: constant)"),
        preset: str = typer.Option("paper", "--preset", help="paper (the paper's algorithm) | quick (insert-convolution draws 8/16/32 channels) | hour (for an hour on one machine: 16/32/64 channels, 500 steps then 1000 from minute 15 and 2000 from minute 25, population 10, morphism inheritance, cosine learning rate, growth-weighted mutations) | gpu (hour's ideas for 10 minutes on one GPU: population 32, 1000 steps then 2000 from minute 3 and 4000 from minute 6); see docs/OPTIONS.md; options given explicitly win"),
        insert_channels: str = typer.Option(None, "--insert-channels", help="C1,C2,...: an inserted convolution draws its output channels from these (default: its input's, the paper's)"),
        mutation_prob: list[str] = typer.Option(None, "--mutation-prob", help="NAME=WEIGHT, repeatable; names not given weigh 0 (default: uniform over the 11 mutations)"),
        algorithm: str = typer.Option(None, "--algorithm", help="the algorithm, from `lse algorithms` (default: real2017, the paper's)"),
        algorithm_option: list[str] = typer.Option(None, "--algorithm-option", "-o", help="KEY=VALUE, repeatable: an option of the algorithm (see `lse algorithms`)"),
        initial_dna: Path = typer.Option(None, "--initial-dna", help="JSON file with the DNA of every initial individual (a DNA, or a record.json)"),
        seed_from: Path = typer.Option(None, "--seed-from", help="a new experiment starts from this population's alive individuals, weights included"),
        mutations_per_child: int = typer.Option(None, "--mutations-per-child", min=1, max=100, help="mutations applied to each child (default: 1, the paper's; may change on resume)"),
        mutation_burst: list[str] = typer.Option(None, "--mutation-burst", help="N@START-END, repeatable: N mutations per child in that window after the start (e.g. 5@30m-45m; section 5)"),
        weight_reset: list[str] = typer.Option(None, "--weight-reset", help="AT, repeatable: reset the population's weights that long after the start (e.g. 20m; section 5)"),
        max_individuals: int = typer.Option(None, "--max-individuals", min=1, help="stop after this many births (may change on resume)"),
        max_hours: float = typer.Option(None, "--max-hours", help="stop this many hours after the experiment was created (may change on resume: a larger value extends a finished run)"),
        finish: float = typer.Option(None, "--finish", help="the last this-many minutes of --max-hours retrain the best by validation as the final model (lse retrain; evolution stops that much earlier; may change on resume; not the paper)"),
        max_flops: float = typer.Option(None, "--max-flops", help="stop when the experiment's FLOPs (section 3.5) exceed this (may change on resume)"),
        force: bool = typer.Option(False, "--force", help="resume even if the options differ from the saved experiment (replaces them)"),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="live progress line"),
        prepare_only: bool = typer.Option(False, "--prepare-only", help="create or update experiment.json, start no worker (then run worker.py yourself, e.g. docker compose)"),
        use_slurm: bool = typer.Option(False, "--slurm", help="submit the workers as a Slurm job array instead of running them here"),
        partition: str = typer.Option(None, "--partition", help="Slurm partition"),
        time_limit: str = typer.Option(None, "--time", help="Slurm time limit per task (e.g. 4:00:00); workers stop gracefully before it"),
        gpus_per_task: int = typer.Option(None, "--gpus-per-task", min=1, help="Slurm GPUs per task"),
        cpus_per_task: int = typer.Option(1, "--cpus-per-task", min=1, help="Slurm CPUs per task (= the worker's threads)"),
        mem: str = typer.Option(None, "--mem", help="Slurm memory per task (e.g. 8G)"),
        account: str = typer.Option(None, "--account", help="Slurm account"),
        requeue: bool = typer.Option(False, "--requeue", help="requeue preempted Slurm tasks (they resume as new workers)"),
        job_name: str = typer.Option("lse", "--job-name", help="Slurm job name"),
        dry_run: bool = typer.Option(False, "--dry-run", help="with --slurm: print the sbatch script, submit nothing"),
    ) -> None:
        """Create or resume an evolution experiment and run its workers (locally, or as a Slurm job array).

        On a population whose stop condition is already met it starts nothing: one line says
        which condition and how to extend it or start fresh, and the exit status is 0.
        """
        try:
            if dataset is not None:
                from lse.nn.images import parse_dataset_arg

                dataset, own_dir = parse_dataset_arg(dataset)
                if own_dir is not None:
                    data_dir = Path(own_dir)
            from lse.nn.images import parse_image_size

            given = dict(
                dataset=dataset, data_dir=None if data_dir is None else str(data_dir), validation_size=validation_size,
                image_size=parse_image_size(image_size), channels=channels, test_fraction=test_fraction,
                skip_bad_images=skip_bad_images,
                augment=augment,
                population_size=population_size, steps=steps, steps_schedule=parse_steps_from(steps_from), child_flops=child_flops,
                min_child_steps=min_child_steps, selection=selection, inheritance=inheritance, morph=morph, flip=flip, seed=seed,
                initial_learning_rate=initial_learning_rate, lr_schedule=lr_schedule, mutation_probabilities=parse_mutation_probs(mutation_prob),
                insert_channels=parse_channels(insert_channels),
                max_individuals=max_individuals, max_hours=max_hours, max_flops=max_flops, finish_minutes=finish,
                algorithm=parse_algorithm(algorithm, algorithm_option),
                initial_dna=None if initial_dna is None else read_dna_file(initial_dna),
                mutations_per_child=mutations_per_child, mutation_bursts=mutation_burst or None,
                weight_resets=weight_reset or None,
            )
            given = apply_preset(preset, {k: v for k, v in given.items() if v is not None})
            if seed_from is not None:
                given["seed_from"] = str(seed_from)
            if prepare_only:
                prepare_experiment(pop, given, workers=workers or 1, force=force, echo=typer.echo)
                _say_finished(pop)
                return
            if use_slurm:
                from lse.runners.slurm import SlurmOptions

                sopts = SlurmOptions.parse(dict(
                    workers=workers or 1, partition=partition, time=time_limit, gpus_per_task=gpus_per_task,
                    cpus_per_task=cpus_per_task, mem=mem, account=account, requeue=requeue, job_name=job_name))
                LaunchOptions.parse({"device": device})  # validates --device
                if dry_run:
                    # Nothing is created: the script only names the folder.
                    launch_slurm(pop, sopts, device=device, dry_run=True, echo=typer.echo,
                                 finish_minutes=given.get("finish_minutes"))
                    return
                cfg = prepare_experiment(pop, given, workers=sopts.workers, force=force, echo=typer.echo)
                if _say_finished(pop):
                    return
                launch_slurm(pop, sopts, device=device, echo=typer.echo, finish_minutes=cfg.finish_minutes)
                return
            if dry_run:
                raise ConfigError("--dry-run only applies to --slurm", "add --slurm, or drop --dry-run")
            workers_per_gpu = workers_per_gpu or DEFAULT_WORKERS_PER_GPU
            n = workers or _default_workers(device, workers_per_gpu)
            opts = LaunchOptions.parse(dict(workers=n, workers_per_gpu=workers_per_gpu, device=device, threads=threads,
                                            precision=precision, cuda_graph=cuda_graph, mps=mps))
            prepare_experiment(pop, given, workers=n, force=force, echo=typer.echo)
            if _say_finished(pop):
                return
            launch_local(pop, opts, echo=typer.echo, progress=progress)
        except LseError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from None

    return launch_cmd


def _say_finished(pop: Path) -> bool:
    """A launch on a finished experiment starts nothing: one line says so, and the exit status
    is 0 (like ``make`` with nothing to do: the experiment is in the state asked for)."""
    import typer

    line = finished_line(Store(pop).open())
    if line:
        typer.echo(line)
    return line is not None


def _default_workers(device: str, workers_per_gpu: int) -> int:
    gpus = _resolve_gpus(device) if device != "cpu" else 0
    return gpus * workers_per_gpu if gpus else max(1, os.cpu_count() or 1)


def stop(pop_dir) -> Path:
    """Ask every worker of the population to stop after its current step (the STOP file)."""
    store = Store(pop_dir).open()
    store.request_stop("lse stop")
    return store.paths.stop


def register_cli(app) -> None:
    """``lse launch`` and ``lse stop``."""
    import typer

    app.command("launch", cls=_plain_help_command())(_command())

    @app.command("stop")
    def stop_cmd(pop: Path = typer.Option(Path("population"), "--pop", help="population folder")) -> None:
        """Stop every worker of a population gracefully (writes POP/STOP; a new launch removes it)."""
        try:
            path = stop(pop)
        except LseError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"wrote {path}: workers stop within one training step; nothing half-done is published")

    @app.command("finish")
    def finish_cmd(pop: Path = typer.Option(Path("population"), "--pop", help="population folder"),
                   device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
                   threads: int = typer.Option(None, "--threads", min=1, help="torch threads (default: every core)")) -> None:
        """--finish by hand (or by the Slurm finishing job): once evolution's time is up, retrain the best by validation for what is left of --max-hours."""
        try:
            opts = LaunchOptions.parse(dict(workers=1, device=device, threads=threads))
            if finish(pop, opts, echo=typer.echo) is None:
                typer.echo("nothing to finish: the experiment has no --finish, its evolution is not over, it was "
                           "stopped by hand, or its hours are spent (lse retrain --pop POP best --minutes M still works)")
        except LseError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from None


def main() -> None:
    import typer

    app = typer.Typer(add_completion=False)
    app.command(cls=_plain_help_command())(_command())
    app()


if __name__ == "__main__":
    main()
