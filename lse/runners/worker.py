"""One evolution worker: the loop of section 3.1 against the shared population store.

Every worker runs the same loop, alone, talking to the others only through the store:

1. **Stop?**  Signal (SIGTERM/SIGINT), the STOP file, ``max_hours`` since the experiment was
   created, ``max_individuals`` births, ``max_flops`` spent (re-read from experiment.json
   every iteration, so a resume that raises a bound reaches running workers).
2. **Claim a birth slot** (below): keeps the number of births exactly ``max_individuals`` and
   the initial population exactly ``population_size`` even with many workers.
3. **Initial or evolved.**  While fewer than ``population_size`` births exist (section 3.3),
   or fewer than two individuals are alive (nothing to compare), the child is an initial
   individual: no convolution, learning rate ``initial_learning_rate``.  Otherwise a tournament
   (:mod:`lse.core.selection`): two random alive individuals, kill the worse (lost race: retry),
   read the better (lost race: retry), mutate a copy (:func:`lse.core.mutations.mutate`, with a
   per-worker seeded rng).  A variation that raises gives this child up (a warning) and the
   loop tries again: nothing a mutation produces can end a worker.
4. **Train** through the injectable :class:`Trainer` (build, inherit weights unless the
   experiment disabled inheritance, train, evaluate on the validation split, count FLOPs as
   ``F_t*N_t + F_v*N_v``, section 3.5).  Training polls :meth:`_Stopper.should_stop`.
5. **Publish** (one rename).  A failed training (divergence, out of memory) is published
   *dead* with its reason, so it is counted and visible, never selected.

Birth slots.  Before training, a worker writes a claim ``workers/<wid>/claim-<child id>``,
then lists births (``individuals/``, ``gc/``, ``history/``: listings, no reads) and every
worker's claims.  Claims are ranked by child id (ids sort by time; every worker sees the same
order), and a claim whose rank does not fit under the limit is withdrawn and retried a second
later: two workers racing for the last slot never both train it.  A claim disappears with its
worker's private folder when the worker stops or is reclaimed as dead (``Store.recover``), so a
crash frees its slot.  The claim is removed only *after* the birth rename: for an instant the
child counts twice, which only makes others wait, never overshoot.

Signals and stops never half-publish: the handler only sets a flag; training notices it at the
next poll and raises :class:`~lse.errors.StopRequested`, the child being assembled is dropped,
and the worker's private folder (scratch, claim) is removed as it unregisters.
"""

from __future__ import annotations

import logging
import math
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Callable, Protocol

from lse.algorithms import make_algorithm
from lse.algorithms.base import Child, PopulationView, Recipe
from lse.config import ExperimentConfig, WorkerOptions
from lse.core import events as ev
from lse.core.genomes import genome_kind
from lse.core.records import IndividualName, IndividualRecord, is_id, is_worker_id, new_id
from lse.errors import DiskFull, LostRace, StopRequested
from lse.store import Store
from lse.store.events import EventLog
from lse.store.generations import Generations
from lse.store.view import ViewCache

log = logging.getLogger("lse.runners.worker")

#: seconds between two garbage collections / recoveries of a worker
MAINTENANCE_SECONDS = 30.0
#: a worker whose claim does not fit under a limit waits this long before looking again
SLOT_WAIT_SECONDS = 1.0

#: environment variable through which the local launcher tells a worker its pid
LAUNCHER_PID_ENV = "LSE_LAUNCHER_PID"

ShouldStop = Callable[[], bool]


# --------------------------------------------------------------------------------------------
# the trainer interface (real: TorchTrainer; `lse simulate` passes a stand-in)


@dataclass
class ChildResult:
    """What training one child produced; everything the record needs."""

    val_accuracy: float | None  # None (or ignored) when failed_reason is set
    failed_reason: str | None = None
    state_dict: dict | None = None  # weights to publish (None for a failed child)
    inheritance: dict | None = None  # {"kept", "reinitialised", "by_parent"}; None: initial child
    flops: dict | None = None  # {"train_per_batch", "eval_per_batch", "total"} (section 3.5)
    params: int | None = None
    steps: int = 0
    examples: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # further measurements the algorithm's objectives use


class Trainer(Protocol):
    """Turns a DNA (and its parent's weights) into a trained, evaluated child.

    ``prepare`` is called once per worker process (load the data set there); ``input_channels``
    is valid after it.  ``train_child`` builds ``child.dna``, inherits what ``child.provenance``
    names from ``parent_states`` (parent id -> weights; empty: nothing is inherited), trains it
    as ``recipe`` says and evaluates it on the validation split.  It must poll ``should_stop`` and let
    :class:`~lse.errors.StopRequested` propagate; any other failure of the child is reported in
    ``ChildResult.failed_reason`` rather than raised.
    """

    input_channels: int

    def prepare(self, config: ExperimentConfig) -> None: ...

    def train_child(
        self,
        child: Child,
        parent_states: Mapping[str, dict],
        recipe: Recipe,
        *,
        seed: int,
        should_stop: ShouldStop,
    ) -> ChildResult: ...


class TorchTrainer:
    """The real trainer: lse.nn.build, lse.nn.inherit, lse.nn.flops and lse.nn.train on one device."""

    def __init__(self, options: WorkerOptions) -> None:
        self.options = options
        self.config: ExperimentConfig | None = None
        self.dataset: Any = None
        self.device: Any = None
        self.input_channels = 1

    def prepare(self, config: ExperimentConfig) -> None:
        import torch

        from lse.nn.data import load_dataset
        from lse.nn.train import resolve_device, set_threads

        set_threads(self.options.threads)
        dev = resolve_device(self.options.device)
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                from lse.errors import ConfigError

                raise ConfigError("--device cuda but no CUDA device is visible", "use --device cpu or auto")
            dev = torch.device("cuda", self.options.gpu_index or 0)
            torch.cuda.set_device(dev)
        self.device = dev
        self.config = config
        # Loaded once per process; every child trains on the same tensors (section 3.4).
        self.dataset = load_dataset(
            config.dataset, config.data_dir, validation_size=config.validation_size, seed=config.seed, device=dev,
            flip=config.flip, image=config.image_options(),
        )
        self.input_channels = self.dataset.input_shape[0]
        self.input_shape = tuple(self.dataset.input_shape)

    def train_child(self, child, parent_states, recipe, *, seed, should_stop) -> ChildResult:
        import torch

        from lse.nn.genomes import build, flops
        from lse.nn.inherit import inherit
        from lse.nn.train import train

        cfg, ds, dna = self.config, self.dataset, child.dna
        assert cfg is not None and ds is not None, "prepare() first"
        steps = recipe.steps if recipe.steps is not None else cfg.steps
        if recipe.epochs is not None:
            steps = math.ceil(recipe.epochs * ds.train_x.shape[0] * recipe.data_fraction / cfg.batch_size)
        if recipe.optimizer == "none":
            steps = 0  # no gradient training: the child is only evaluated
        try:
            fc = flops(child.genome, dna, ds.input_shape, ds.num_classes, cfg.batch_size, cfg.eval_batch_size)
            torch.manual_seed(seed)  # model initialisation; train() seeds batches and augmentation
            model = build(child.genome, dna, ds.input_shape, ds.num_classes)
            if parent_states and child.provenance is not None:
                inheritance = inherit(model, parent_states, child.provenance).summary()
            else:
                inheritance = {"kept": 0, "reinitialised": len(model.state_dict())}
            params = sum(p.numel() for p in model.parameters())
            res = train(
                model, ds, learning_rate=getattr(dna, "learning_rate", cfg.initial_learning_rate), steps=steps,
                batch_size=cfg.batch_size,
                momentum=cfg.momentum, weight_decay=cfg.weight_decay, seed=seed, augment=cfg.augment,
                should_stop=should_stop, device=self.device, eval_batch_size=cfg.eval_batch_size,
                optimizer="sgd" if recipe.optimizer == "none" else recipe.optimizer,
                data_fraction=recipe.data_fraction, lr_schedule=cfg.lr_schedule,
            )
        except StopRequested:
            raise
        except torch.OutOfMemoryError as e:
            return ChildResult(None, f"out of memory: {str(e).splitlines()[0]}")
        n_eval = math.ceil(ds.val_x.shape[0] / cfg.eval_batch_size) if res.failed_reason is None else 0
        flops = {
            "train_per_batch": fc.train_per_batch,
            "eval_per_batch": fc.eval_per_batch,
            "total": fc.cost(res.steps, n_eval),
        }
        state = None
        if res.failed_reason is None:
            state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
        return ChildResult(
            val_accuracy=None if res.failed_reason else res.val_accuracy,
            failed_reason=res.failed_reason,
            state_dict=state,
            inheritance=inheritance,
            flops=flops,
            params=params,
            steps=res.steps,
            examples=res.examples,
            train_seconds=res.train_seconds,
            eval_seconds=res.eval_seconds,
            extra={"device": str(self.device)},
        )


# --------------------------------------------------------------------------------------------
# stop conditions


class _Stopper:
    """Every stop condition of a worker.  ``should_stop`` is cheap (a flag, one stat, a clock)
    and is polled during training; ``between_individuals`` also counts births and FLOPs."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.signalled = threading.Event()
        self.signal_name: str | None = None
        # The experiment's creation time is experiment.json's mtime: the launcher keeps it when
        # it updates the stop fields on a resume.
        self.created_at = os.stat(store.paths.experiment).st_mtime
        self.max_hours: float | None = None
        # Set by the local launcher: if it dies (SIGKILL, lost terminal) its workers stop too
        # instead of running on unsupervised.
        ppid = os.environ.get(LAUNCHER_PID_ENV, "")
        self.launcher_pid = int(ppid) if ppid.isdigit() else None

    def handle_signal(self, signum: int, _frame: object) -> None:
        # Only a flag: never raise from a handler (it could interrupt a rename half-way
        # through the Python code around it).
        self.signal_name = signal.Signals(signum).name
        self.signalled.set()

    def reason(self) -> str | None:
        if self.signalled.is_set():
            return f"signal {self.signal_name}"
        if self.store.stop_requested():
            return "STOP file"
        if self.launcher_pid is not None and os.getppid() != self.launcher_pid:
            return "the launcher is gone"
        if self.max_hours is not None and time.time() - self.created_at >= self.max_hours * 3600:
            return f"max_hours={self.max_hours} reached"
        return None

    def should_stop(self) -> bool:
        return self.reason() is not None


def read_stop_fields(store: Store) -> ExperimentConfig:
    """experiment.json as it is now (a resume may have changed its stop fields)."""
    try:
        return ExperimentConfig.from_json(store.paths.experiment.read_text(), str(store.paths.experiment))
    except OSError:
        return store.config


# --------------------------------------------------------------------------------------------
# births and claims (listings only)


class BirthCache:
    """What :func:`count_births` already parsed, kept by one worker between its steps.

    A step used to parse every name in individuals/ and history/ again (1.6 s per call at 50k
    entries on a loaded 2-core machine; history/ grows by two files per kill, forever).  Parsing
    is a pure function of the name, so a name seen before is looked up instead: each step lists
    the folders as before (the listing decides what exists) and parses only names it has not
    seen.  Names that left a folder are dropped from the memo, so the result is exactly that of
    an uncached count.  Not thread-safe: one per worker loop.
    """

    def __init__(self) -> None:
        self.individuals: dict[str, str] = {}  # name -> id, valid non-symlink names only
        self.history: dict[str, str | None] = {}  # name -> id of a record, None: not a record
        self.history_ids: set[str] = set()  # the ids among self.history's values


def count_births(store: Store, cache: BirthCache | None = None) -> set[str]:
    """Ids of every individual ever published (alive, dead, being collected, collected).

    Listed in the order an individual moves (individuals/ -> gc/ -> history/, the history record
    written before the gc folder is removed), so one that moves during the listing is still seen.
    ``cache`` (a worker's :class:`BirthCache`) spares re-parsing names seen by earlier calls; the
    result is the same with or without it.
    """
    cache = cache if cache is not None else BirthCache()
    ids = _individual_ids(store, cache)
    for name in _names(store.paths.gc):
        head = name.split(".")[0]
        if is_id(head) and name.count(".") == 1:
            ids.add(head)
    ids |= _history_ids(store.paths.history, cache)
    return ids


def _individual_ids(store: Store, cache: BirthCache) -> set[str]:
    """Ids in individuals/, as ``{e.id for e in store.entries()}``: one scandir, strict parse of
    names not seen before, symlinks refused.  Anything foreign (or an error listing the folder)
    falls back to ``store.entries()`` itself, so its warnings and errors are unchanged."""
    seen = cache.individuals
    memo: dict[str, str] = {}
    try:
        with os.scandir(store.paths.individuals) as it:
            for de in it:
                name = de.name
                iid = seen.get(name)
                if iid is None:
                    parsed = IndividualName.parse(name)
                    if parsed is None:
                        break
                    iid = parsed.id
                if de.is_symlink():
                    break
                memo[name] = iid
            else:
                cache.individuals = memo
                return set(memo.values())
    except OSError:
        pass
    cache.individuals = {}
    return {e.id for e in store.entries()}


def _history_ids(folder: Path, cache: BirthCache) -> set[str]:
    """Ids of the records ``<id>.json`` in history/ (not ``<id>.death.json``); a copy."""
    current = set(_names(folder))
    known = cache.history
    gone = known.keys() - current
    if gone:
        for name in gone:
            del known[name]
        cache.history_ids = {i for i in known.values() if i is not None}
    for name in current - known.keys():
        iid = name[:-5] if name.endswith(".json") and not name.endswith(".death.json") and is_id(name[:-5]) else None
        known[name] = iid
        if iid is not None:
            cache.history_ids.add(iid)
    return set(cache.history_ids)


def list_claims(store: Store) -> list[str]:
    """Child ids claimed by every worker (children being trained now), sorted."""
    return sorted(_claims(store, with_times=False))


def claim_times(store: Store) -> dict[str, int]:
    """Every claim with its file's modification time (ns; set by the filesystem when the claim
    was created -- on NFS by the server's clock).  One stat per claim."""
    return _claims(store, with_times=True)


def _claims(store: Store, with_times: bool) -> dict[str, int]:
    out: dict[str, int] = {}
    for wname in _names(store.paths.workers):
        if not is_worker_id(wname):
            continue
        folder = store.paths.worker(wname)
        for name in _names(folder):
            if name.startswith("claim-") and is_id(name[6:]):
                try:
                    out[name[6:]] = os.lstat(folder / name).st_mtime_ns if with_times else 0
                except FileNotFoundError:
                    continue  # born (or withdrawn) since the listing: births will count it
    return out


def initial_rank(child_id: str, claims: list[str], times: dict[str, int]) -> int:
    """How many in-flight claims come before ours for an initial slot.

    Every worker must agree on the order, without talking.  Ids cannot give it: an id is drawn
    before its claim file exists, so a late file with an early id overtook claims that had
    already counted their rank (7 initial individuals for 6).  Creation times can: a claim a
    worker did not see was created after its listing, so no earlier than its own claim.
    Timestamps are coarse (4 ms ticks here), so a claim created in our tick counts as before
    ours: two claims that see each other in one tick both yield to the other and take the same
    slot (an initial index twice, and one initial individual too few if it was the last slot;
    the kill rule heals the count); one that did not see the other never overtakes it.
    """
    mine = times.get(child_id)
    if mine is None:  # no time for our own claim: yield to everyone
        return len(claims) - 1
    return sum(1 for c in claims if c != child_id and times.get(c, mine) <= mine)


def _names(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []


# --------------------------------------------------------------------------------------------
# the loop


@dataclass
class WorkerSummary:
    worker_id: str
    births: int = 0  # children this worker published (alive or dead)
    initial: int = 0
    failures: int = 0  # published dead with failed_reason
    kills: int = 0
    lost_races: int = 0
    variation_failures: int = 0  # children given up because their mutation/crossover failed
    stop_reason: str = ""


class _LogFile(logging.FileHandler):
    """A worker's log file (in the population).  When it cannot be written -- the full disk
    the worker is waiting out, a quota -- lines are dropped with ONE message on stderr, not the
    "--- Logging error ---" traceback that logging prints for every line."""

    _failing = False
    _ok = True

    def emit(self, record: logging.LogRecord) -> None:
        self._ok = True
        super().emit(record)
        if self._ok and self._failing:
            self._failing = False
            self.stream.write("(log lines were dropped while this file could not be written)\n")

    def handleError(self, record: logging.LogRecord) -> None:
        self._ok = False
        if not self._failing:
            import sys

            self._failing = True
            sys.stderr.write(f"warning: cannot write {self.baseFilename} ({sys.exc_info()[1]}); "
                             "dropping its lines until it can\n")


class _Stop(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


def run_worker(
    pop_dir: str | os.PathLike,
    options: WorkerOptions | None = None,
    trainer: Trainer | None = None,
    *,
    worker_id: str | None = None,
    handle_signals: bool = True,
    log_to_file: bool = True,
) -> WorkerSummary:
    """Run one worker on the population ``pop_dir`` until a stop condition; return its summary.

    ``trainer`` defaults to :class:`TorchTrainer`.  ``handle_signals`` installs SIGTERM/SIGINT
    handlers (main thread only) that stop the worker gracefully.
    """
    options = options or WorkerOptions()
    store = Store(pop_dir, stale_after=options.stale_after_seconds).open()
    config = store.config
    stopper = _Stopper(store)
    previous: dict[int, Any] = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, stopper.handle_signal)
    handle = store.register_worker(worker_id, auto_heartbeat=True, heartbeat_seconds=options.heartbeat_seconds)
    summary = WorkerSummary(handle.id)
    file_handler = None
    if log_to_file:
        file_handler = _LogFile(store.paths.log(handle.id))
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        # Only this thread's lines: workers run as threads (tests, `lse simulate`) share the
        # "lse" logger, and each log file must stay one worker's.
        me = threading.get_ident()
        file_handler.addFilter(lambda record: record.thread == me)
        logging.getLogger("lse").addHandler(file_handler)
        logging.getLogger("lse").setLevel(logging.INFO)
    try:
        log.info("worker %s on %s started (pid %d, %s)", handle.id, store.host, os.getpid(), options.model_dump())
        trainer = trainer or make_algorithm(config).make_trainer(options) or TorchTrainer(options)
        trainer.prepare(config)
        _Loop(store, config, options, trainer, stopper, summary).run()
    finally:
        log.info(
            "worker %s stops: %s (births %d, initial %d, failures %d, kills %d, lost races %d)",
            handle.id, summary.stop_reason or "error", summary.births, summary.initial, summary.failures,
            summary.kills, summary.lost_races,
        )
        store.close()  # heartbeat off, private folder (scratch, claims) removed
        if file_handler is not None:
            logging.getLogger("lse").removeHandler(file_handler)
            file_handler.close()
        for sig, h in previous.items():
            signal.signal(sig, h)
    return summary


class _Loop:
    def __init__(self, store, config, options, trainer, stopper, summary) -> None:
        self.store: Store = store
        self.config: ExperimentConfig = config
        self.options = options
        self.trainer: Trainer = trainer
        self.stopper: _Stopper = stopper
        self.summary: WorkerSummary = summary
        self.wid = summary.worker_id
        # Per-worker rng, reproducible from the experiment seed and the worker id.
        self.rng = random.Random(f"{config.seed}:{self.wid}")
        self.last_maintenance = -math.inf
        self.initial_done = False  # set once births >= population_size were seen (monotone)
        self.births_seen: set[str] = set()  # every birth this worker ever counted
        self.flops_seen: dict[str, float] = {}
        self.birth_cache = BirthCache()  # names count_births parsed already (history/ only grows)
        self.algorithm = make_algorithm(config)  # the seam: every decision of the paper's method
        # the data's (C, H, W), for genomes sized by their input (seed 000's autoencoders)
        self.algorithm.input_shape = getattr(trainer, "input_shape", None)
        self.views = ViewCache(store)  # records of the alive, parsed once per folder name
        # Changes made to the running experiment (section 5): bursts and resets, re-read every step
        self.event_log = EventLog(store)
        self.events: list[ev.Event] = []
        self.live = ev.Live(config.mutations_per_child, 0)
        self.generations = None
        if self.algorithm.generational:
            self.generations = Generations(store, slots=self.algorithm.slots(1),
                                           initial_slots=self.algorithm.slots(0), rng=self.rng)

    # -- stop checks --
    def _check_stop(self, limits: ExperimentConfig, births: set[str] | None) -> None:
        self.stopper.max_hours = limits.max_hours
        r = self.stopper.reason()
        if r:
            raise _Stop(r)
        if limits.max_individuals is not None and len(births) >= limits.max_individuals:
            raise _Stop(f"max_individuals={limits.max_individuals} reached")
        if limits.max_flops is not None:
            spent = self._flops_spent(births)
            if spent >= limits.max_flops:
                raise _Stop(f"max_flops={limits.max_flops:.3g} reached ({spent:.3g} spent)")

    def _flops_spent(self, births: set[str]) -> float:
        """FLOPs of every birth so far.  A record's FLOPs never change, so only births not seen
        before are read (Store.record: their own files), not all 20k records every step."""
        for iid in births - self.flops_seen.keys():
            rec = self.store.record(iid)
            if rec is not None:  # None: unreadable or moved during the look; asked again next step
                self.flops_seen[iid] = rec.flops.total if rec.flops else 0.0
        return sum(self.flops_seen.values())

    def _maintenance(self) -> None:
        now = time.monotonic()
        if now - self.last_maintenance < MAINTENANCE_SECONDS:
            return
        self.last_maintenance = now
        try:
            self.store.recover()
            self.store.gc()
        except (OSError, DiskFull) as e:  # maintenance is best effort; the next worker retries
            log.warning("maintenance failed: %s", e)

    # -- the loop --
    def run(self) -> None:
        try:
            while True:
                self._step()
        except _Stop as s:
            self.summary.stop_reason = s.reason
        except StopRequested:
            self.summary.stop_reason = self.stopper.reason() or "stop requested"

    def _count_births(self, limits: ExperimentConfig) -> set[str] | None:
        """Births so far, or None when no decision needs them any more.  Births only grow: once
        the initial population is complete and neither max_individuals nor max_flops is set,
        this worker never lists history/ again (it grows by two files per kill: 40k entries
        after 20k births)."""
        if limits.max_individuals is None and limits.max_flops is None and self.initial_done:
            return None
        # A listing can miss an entry renamed while it is read (readdir over a folder where a
        # kill renames alive -> dead); a birth is a birth forever, so what was seen before
        # stays counted.
        births = count_births(self.store, self.birth_cache) | self.births_seen
        self.births_seen = births
        if len(births) >= self.config.population_size:
            self.initial_done = True
        return births

    def _read_live(self, limits: ExperimentConfig) -> None:
        """Mutations per child and the weight epoch in force now (experiment.json + events/)."""
        self.events = self.event_log.read()
        live = ev.live(self.events, limits.mutations_per_child, time.time())
        if live != self.live:
            log.info("live settings now: %d mutation(s) per child, weight epoch %d", live.mutations_per_child, live.epoch)
        self.live = live
        self.algorithm.mutations_per_child = live.mutations_per_child

    def _step(self) -> None:
        limits = read_stop_fields(self.store)
        self._read_live(limits)
        births = self._count_births(limits)
        self._check_stop(limits, births)
        self._maintenance()
        if self.generations is not None:
            self._generational_step()
            return
        child_id = new_id()
        claim = self.store.paths.claim(self.wid, child_id)
        claim.parent.mkdir(exist_ok=True)
        claim.touch(exist_ok=False)
        try:
            # Write the claim, then list: of two workers racing, at least one sees the other's
            # claim, so every in-flight claim counts against max_individuals.  Claims first,
            # then births, then drop claims already born: a child born between the two
            # listings is counted once (its claim is removed only after its birth rename).
            # Creation times are needed only to rank initial children (one stat per claim).
            if self.initial_done:
                times, claims = {}, list_claims(self.store)
            else:
                times = claim_times(self.store)
                claims = sorted(times)
            births = self._count_births(limits)
            claims = [c for c in claims if c not in (births or ())]
            if child_id not in claims:  # our own file is there; only a vanished stat drops it
                claims.append(child_id)
            n_claims = len(claims)
            self._check_stop(limits, births)
            if limits.max_individuals is not None and len(births) + n_claims > limits.max_individuals:
                # The last slots are being trained by others: wait for their births (or for
                # their claims to vanish).  Jitter: two workers that both withdrew do not
                # collide again in lockstep.
                claim.unlink()
                time.sleep(SLOT_WAIT_SECONDS * self.rng.uniform(0.5, 1.5))
                return
            # The initial population (section 3.3): claims created before ours are initial
            # children in flight (initial_rank: why creation order, not ids).
            index = None if births is None else len(births) + initial_rank(child_id, claims, times)
            initial = index is not None and index < self.config.population_size
            self.algorithm.begin_child(None, index if initial else None)
            self._make_child(child_id, initial, in_flight=n_claims)
        finally:
            try:
                claim.unlink()
            except FileNotFoundError:
                pass

    # -- generational algorithms (the store's generation barrier) --
    def _generational_step(self) -> None:
        """One child of the open generation: close whatever can be closed, claim a free slot
        (none: wait), breed the child from the current population P_g (generation 0: an
        initial individual) and publish it into its slot.  Whoever fills the last slot closes
        the generation; any worker finishes a closing whose closer died (lse.store.generations)."""
        gens = self.generations
        assert gens is not None
        g = gens.advance(self.algorithm.replace)
        slot = gens.claim(g)
        if slot is None:  # every free slot is being trained by a live worker: wait for them
            time.sleep(SLOT_WAIT_SECONDS * self.rng.uniform(0.5, 1.5))
            return
        try:
            self.algorithm.begin_child(g, slot)
            parents = None if g == 0 else self._read_parents()
            bred = self._breed(new_id(), parents, barrier_generation=g)
            if bred is None:
                return
            record, state = bred
            try:
                self._publish_when_space(lambda: gens.publish(g, slot, record, state, alive=record.fitness is not None),
                                         record.id)
            except LostRace as e:
                log.info("child %s discarded: %s", record.id, e)
                return
            self._count_birth(record)
        finally:
            gens.release()
        gens.advance(self.algorithm.replace)

    def _read_parents(self) -> list[tuple[IndividualRecord, dict]] | None:
        """The algorithm's parents from P_g (no kills: replacement is the plan's); None when
        fewer than two are alive (then the child is an initial individual)."""
        while True:
            if self.stopper.should_stop():
                raise StopRequested(self.stopper.reason() or "stop")
            alive = self.store.list_alive()
            if len(alive) < 2:
                return None
            by_id = {e.id: e for e in alive}
            sel = self.algorithm.select(self.views.view(alive, self.algorithm.uses_records), self.rng, full=False)
            try:
                return [self.store.read_parent(by_id[p]) for p in sel.parents]
            except LostRace as e:
                self.summary.lost_races += 1
                log.info("lost the race for parent(s) %s (%s); retrying", ", ".join(sel.parents), e)

    def _select_parents(self, in_flight: int) -> list[tuple[IndividualRecord, dict]] | None:
        """The algorithm's selection until its parents were read; None: too few alive.

        Its kills are carried out only while the population is full: alive + children in
        training (``in_flight`` claims, ours included) > population_size.  Each kill makes room
        for the child being trained, so the population stays at its size; and when a child died
        in training, a stop discarded one, or a parent vanished after its rival was killed, the
        next rounds reproduce without killing until the population is whole again.  A kill or
        a parent read lost to another worker is a lost race: select again.
        """
        algo = self.algorithm
        while True:
            if self.stopper.should_stop():
                raise StopRequested(self.stopper.reason() or "stop")
            alive = self.store.list_alive()
            if len(alive) < 2:
                return None
            by_id = {e.id: e for e in alive}
            view = self.views.view(alive, algo.uses_records)
            if self.live.epoch:  # after a weight reset: older epochs' fitness no longer counts
                view = view.unrated({e.id for e in alive if ev.stale(e.id, self.events, self.live.epoch)})
            full = len(alive) + in_flight > self.config.population_size
            sel = algo.select(view, self.rng, full=full)
            if not full:
                log.info("population below its size (%d alive, %d in training): %s reproduces, no kill",
                         len(alive), in_flight, ", ".join(sel.parents))
            elif sel.kills or sel.kill_first_of:
                if sel.kills and not self._kill_all([by_id[k] for k in sel.kills], sel.parents, by_id):
                    continue
                if sel.kill_first_of and not self._kill_first_of([by_id[k] for k in sel.kill_first_of], sel.parents, by_id):
                    continue
                if len(alive) >= self.config.population_size + 2:
                    self._cull(view.without(set(sel.kills) | set(sel.kill_first_of) | set(sel.parents)), by_id)
            try:
                return [self.store.read_parent(by_id[p]) for p in sel.parents]
            except LostRace as e:
                self.summary.lost_races += 1
                log.info("lost the race for parent(s) %s (%s); retrying", ", ".join(sel.parents), e)

    def _kill_all(self, victims: list, parents: tuple[str, ...], by_id: dict) -> bool:
        """Kill each victim; False at the first lost race (the caller selects again)."""
        for victim in victims:
            if not self.store.kill(victim):
                self.summary.lost_races += 1
                log.info("lost the race to kill %s; retrying", victim.id)
                return False
            self.summary.kills += 1
            log.info("killed %s (%s), parent %s", victim.id, victim.fitness,
                     ", ".join(f"{p} ({by_id[p].fitness})" for p in parents))
        return True

    def _kill_first_of(self, victims: list, parents: tuple[str, ...], by_id: dict) -> bool:
        """Kill the first victim still alive, in the algorithm's order; False if all were gone."""
        for victim in victims:
            if self.store.kill(victim):
                self.summary.kills += 1
                log.info("killed %s (%s), parent %s", victim.id, victim.fitness,
                         ", ".join(f"{p} ({by_id[p].fitness})" for p in parents))
                return True
            self.summary.lost_races += 1
            log.info("%s was killed by another worker; trying the next", victim.id)
        return False

    def _cull(self, rest: PopulationView, by_id: dict) -> None:
        """One extra kill when the alive alone exceed the population by two.

        Listings taken a moment apart can disagree by a birth or two, so the kill rule errs
        either way now and then; short heals by skipping kills, and over heals here, so the size
        cannot drift up over a long run.  Judged on the alive alone, not alive + in training:
        workers deciding at once on one snapshot would all cull (the first tournaments after
        the initial population emptied it, 6 kills for 3 births).  The victim is the one the
        algorithm's own selection would kill among the others.  A lost race is fine: someone
        else killed."""
        victim_id = self.algorithm.cull(rest, self.rng)
        if victim_id is not None and self.store.kill(by_id[victim_id]):
            self.summary.kills += 1
            log.info("population over its size: also killed %s (%s)", victim_id, by_id[victim_id].fitness)

    def _vary(self, parents: list[tuple[IndividualRecord, dict]] | None,
              child_id: str | None = None) -> tuple[Child, dict] | None:
        """The child's DNA and the parents' weights it may inherit; None when the variation
        failed (a mutation or crossover that produced something invalid): the worker gives up
        on this child and tries again, as the paper's workers do -- it never dies of it."""
        algo, cfg = self.algorithm, self.config
        try:
            if parents is None:
                return algo.initial(self.rng, self.trainer.input_channels), {}
            child = algo.vary([rec for rec, _ in parents], self.rng)
        except Exception as e:  # noqa: BLE001  (whatever a variation raises, the worker lives)
            self.summary.variation_failures += 1
            log.warning("variation of %s failed (%s: %s); giving up on this child and trying again",
                        ", ".join(r.id for r, _ in parents or ()), type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            return None
        # the no-inheritance control (section 4): every child trains from scratch
        states = {rec.id: state for rec, state in parents} if cfg.inheritance and child.provenance is not None else {}
        # a weight reset (section 5) since a parent was born: the child starts from fresh weights
        if states and child_id is not None and not ev.inherits(states, child_id, self.events):
            log.info("weight reset since the birth of %s: %s starts from fresh weights", ", ".join(states), child_id)
            states = {}
        return child, states

    def _make_child(self, child_id: str, initial: bool, in_flight: int = 1) -> None:
        parents = None if initial else self._select_parents(in_flight)
        bred = self._breed(child_id, parents)
        if bred is None:
            return
        record, state = bred
        self._publish_when_space(lambda: self.store.publish(record, state, alive=record.fitness is not None), record.id)
        self._count_birth(record)

    def _count_birth(self, record: IndividualRecord) -> None:
        self.summary.births += 1
        self.summary.initial += not record.parents
        self.summary.failures += record.fitness is None
        if record.fitness is None:
            log.warning("published %s dead: %s", record.id, record.failed_reason)
        else:
            log.info("born %s: fitness %.4f, %d steps in %.1f s", record.id, record.fitness, record.steps,
                     record.train_seconds or 0.0)

    def _recipe(self) -> Recipe:
        """The algorithm's recipe; where it leaves the steps to the experiment, the experiment's
        step schedule picks them by the minute this child starts training."""
        recipe = self.algorithm.recipe()
        if self.config.steps_schedule and recipe.steps is None and recipe.epochs is None:
            minutes = (time.time() - self.stopper.created_at) / 60
            recipe = replace(recipe, steps=self.config.steps_at(minutes))
        return recipe

    def _breed(self, child_id: str, parents: list[tuple[IndividualRecord, dict]] | None,
               barrier_generation: int | None = None) -> tuple[IndividualRecord, dict | None] | None:
        """Vary the parents (None: an initial individual), train and evaluate the child; its
        record and weights (None for a failed child), or None when the variation failed."""
        algo = self.algorithm
        varied = self._vary(parents, child_id)
        if varied is None:
            return None
        child, states = varied
        by_id = {rec.id: rec for rec, _ in parents or ()}
        first = by_id.get(child.parents[0]) if child.parents else None
        seed = self.rng.randrange(2**31)
        what = "initial" if first is None else (
            f"child of {', '.join(child.parents)} by {child.mutation.name if child.mutation else 'crossover'}")
        log.info("training %s (%s), seed %d", child_id, what, seed)
        t0 = time.time()
        try:
            res = self.trainer.train_child(child, states, self._recipe(), seed=seed, should_stop=self.stopper.should_stop)
        except StopRequested:
            log.info("stop during training of %s: discarded, nothing published", child_id)
            raise
        except Exception as e:  # a child the phenotype code cannot handle dies; the worker lives
            log.exception("training %s failed", child_id)
            res = ChildResult(None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        metrics = dict(res.metrics)
        if res.val_accuracy is not None and math.isfinite(res.val_accuracy):
            metrics["val_accuracy"] = float(res.val_accuracy)
        failed = res.failed_reason is not None or not metrics
        objectives: dict[str, float] = {}
        fitness = None
        if not failed:
            try:
                objectives = algo.objectives(metrics, res.params)
                fitness = algo.fitness(objectives)
            except (KeyError, ValueError, ZeroDivisionError) as e:  # e.g. a metric the trainer did not give
                fitness, res.failed_reason = None, f"objectives: {type(e).__name__}: {e}"
            if fitness is None or not math.isfinite(fitness):
                failed = True
                res.failed_reason = res.failed_reason or f"non-finite fitness {fitness!r}"
        child = algo.settle(child, None if failed else fitness)
        record = IndividualRecord(
            id=child_id,
            parent_id=first.id if first is not None else None,
            parents=list(child.parents),
            generation=0 if first is None else first.generation + 1,
            algorithm=algo.name,
            dna=genome_kind(child.genome).dump(child.dna),
            mutation=None if child.mutation is None else child.mutation.model_dump(mode="json"),
            inheritance=res.inheritance if first is not None else None,
            val_accuracy=None if failed or res.val_accuracy is None else float(res.val_accuracy),
            objectives=objectives,
            fitness=None if failed else fitness,
            failed_reason=(res.failed_reason or "no validation accuracy") if failed else None,
            genome=child.genome,
            age=child.age,
            species=child.species,
            steps=res.steps,
            examples=res.examples,
            flops=res.flops,
            params=res.params,
            worker=self.wid,
            host=self.store.host,
            train_seconds=res.train_seconds,
            eval_seconds=res.eval_seconds,
            barrier_generation=barrier_generation,
            extra={**res.extra, **child.details, "seed": seed, "started_at": t0,
                   "inherited": first is not None and bool(states),
                   # section 5: the weight epoch it belongs to, and the mutations it was made with
                   "epoch": ev.epoch_of(child_id, self.events),
                   "mutations_per_child": 0 if first is None else self.algorithm.mutations_per_child},
        )
        return record, None if failed else res.state_dict

    def _publish_when_space(self, publish: Callable[[], object], child_id: str) -> None:
        """Publish; on a full disk keep the trained child in memory and retry with backoff
        (1, 2, 4 ... 60 s), one log line per attempt.  A child may have cost hours of training,
        and its parent's rival was already killed: dropping it would waste both.  A stop (signal,
        STOP file) while waiting drops it, nothing published."""
        delay = 1.0
        while True:
            try:
                publish()
                return
            except DiskFull as e:
                log.error("%s; keeping %s in memory, retrying in %.0f s", e, child_id, delay)
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline:
                if self.stopper.should_stop():
                    log.info("stop while the disk is full: %s discarded, nothing published", child_id)
                    raise StopRequested(self.stopper.reason() or "stop")
                self.stopper.signalled.wait(min(0.5, max(0.0, deadline - time.monotonic())))
            delay = min(2 * delay, 60.0)


# --------------------------------------------------------------------------------------------
# command line (worker.py at the repository root calls main)


def main(argv: list[str] | None = None) -> int:
    """``python worker.py --pop DIR [--device auto|cpu|cuda] [--gpu N] [--threads N]``."""
    import argparse
    import sys

    from lse.errors import LseError

    p = argparse.ArgumentParser(
        prog="worker.py",
        description="One evolution worker (paper section 3.1) on an existing population; "
        "create the population with `python -m lse.runners.launch` first.  Exits 0 on any stop "
        "condition (max-individuals/hours/FLOPs, STOP file, SIGTERM/SIGINT).",
    )
    p.add_argument("--pop", required=True, help="population folder (holds experiment.json)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: auto")
    p.add_argument("--gpu", type=int, default=None, help="CUDA device index (default: 0)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--worker-id", default=None, help="worker id (default: host-pid-random)")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    # The worker's own log file gets everything (run_worker); stderr only warnings and errors.
    stderr = logging.StreamHandler()
    stderr.setLevel(logging.WARNING)
    stderr.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(stderr)
    try:
        opts = WorkerOptions.parse({"device": args.device, "gpu_index": args.gpu, "threads": args.threads})
        summary = run_worker(args.pop, opts, worker_id=args.worker_id)
    except LseError as e:
        print(f"worker: error: {e}", file=sys.stderr)
        return 2
    print(f"worker {summary.worker_id}: {summary.stop_reason}; published {summary.births}", file=sys.stderr)
    return 0
