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
   (:mod:`lse.selection`): two random alive individuals, kill the worse (lost race: retry),
   read the better (lost race: retry), mutate a copy (:func:`lse.mutations.mutate`, with a
   per-worker seeded rng).  A mutation that raises gives this child up (a warning) and the
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from lse.config import ExperimentConfig, WorkerOptions
from lse.dna import DNA, initial_dna
from lse.errors import DiskFull, LostRace, StopRequested
from lse.mutations import MutationRecord, mutate
from lse.records import IndividualName, IndividualRecord, is_id, is_worker_id, new_id
from lse.selection import decide
from lse.store import Store

log = logging.getLogger("lse.worker")

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
    inheritance: dict | None = None  # {"kept": int, "reinitialised": int}; None: initial child
    flops: dict | None = None  # {"train_per_batch", "eval_per_batch", "total"} (section 3.5)
    params: int | None = None
    steps: int = 0
    examples: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    extra: dict = field(default_factory=dict)


class Trainer(Protocol):
    """Turns a DNA (and its parent's weights) into a trained, evaluated child.

    ``prepare`` is called once per worker process (load the data set there); ``input_channels``
    is valid after it.  ``train_child`` must poll ``should_stop`` and let
    :class:`~lse.errors.StopRequested` propagate; any other failure of the child is reported in
    ``ChildResult.failed_reason`` rather than raised.
    """

    input_channels: int

    def prepare(self, config: ExperimentConfig) -> None: ...

    def train_child(
        self,
        dna: DNA,
        parent_state: dict | None,
        mutation: MutationRecord | None,
        *,
        seed: int,
        should_stop: ShouldStop,
    ) -> ChildResult: ...


class TorchTrainer:
    """The real trainer: lse.build, lse.inherit, lse.flops and lse.train on one device."""

    def __init__(self, options: WorkerOptions) -> None:
        self.options = options
        self.config: ExperimentConfig | None = None
        self.dataset: Any = None
        self.device: Any = None
        self.input_channels = 1

    def prepare(self, config: ExperimentConfig) -> None:
        import torch

        from lse.data import load_dataset
        from lse.train import resolve_device, set_threads

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
            flip=config.flip,
        )
        self.input_channels = self.dataset.input_shape[0]

    def train_child(self, dna, parent_state, mutation, *, seed, should_stop) -> ChildResult:
        import torch

        from lse.build import build_model
        from lse.flops import count_flops
        from lse.inherit import inherit_weights
        from lse.train import train

        cfg, ds = self.config, self.dataset
        assert cfg is not None and ds is not None, "prepare() first"
        try:
            fc = count_flops(dna, ds.input_shape, ds.num_classes, cfg.batch_size, cfg.eval_batch_size)
            torch.manual_seed(seed)  # model initialisation; train() seeds batches and augmentation
            model = build_model(dna, ds.input_shape, ds.num_classes)
            if parent_state is not None:
                rep = inherit_weights(model, parent_state, mutation)
                inheritance = {"kept": rep.kept, "reinitialised": rep.reinitialised}
            else:
                inheritance = {"kept": 0, "reinitialised": len(model.state_dict())}
            params = sum(p.numel() for p in model.parameters())
            res = train(
                model, ds, learning_rate=dna.learning_rate, steps=cfg.steps, batch_size=cfg.batch_size,
                momentum=cfg.momentum, weight_decay=cfg.weight_decay, seed=seed, augment=cfg.augment,
                should_stop=should_stop, device=self.device, eval_batch_size=cfg.eval_batch_size,
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
    ours: two claims that see each other in one tick both yield (one initial individual too
    few, which the kill rule heals); one that did not see the other never overtakes it.
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
    variation_failures: int = 0  # children given up because mutating their parent raised
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
        trainer = trainer or TorchTrainer(options)
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

    def _step(self) -> None:
        limits = read_stop_fields(self.store)
        births = self._count_births(limits)
        self._check_stop(limits, births)
        self._maintenance()
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
            initial = (
                births is not None
                and len(births) + initial_rank(child_id, claims, times) < self.config.population_size
            )
            self._make_child(child_id, initial, in_flight=n_claims)
        finally:
            try:
                claim.unlink()
            except FileNotFoundError:
                pass

    def _select_parent(self, in_flight: int) -> tuple[IndividualRecord, dict] | None:
        """Tournament (or the random control) until a parent was read; None: too few alive.

        The loser is killed only while the population is full: alive + children in training
        (``in_flight`` claims, ours included) > population_size.  Each kill makes room for the
        child being trained, so the population stays at its size; and when a child died in
        training, a stop discarded one, or a parent vanished after its rival was killed, the
        next rounds reproduce without killing until the population is whole again.
        """
        while True:
            if self.stopper.should_stop():
                raise StopRequested(self.stopper.reason() or "stop")
            alive = self.store.list_alive()
            if len(alive) < 2:
                return None
            by_id = {e.id: e for e in alive}
            d = decide(self.config.selection, [(e.id, e.fitness) for e in alive], self.rng)
            if len(alive) + in_flight <= self.config.population_size:
                log.info("population below its size (%d alive, %d in training): %s reproduces, no kill",
                         len(alive), in_flight, d.parent)
            elif not self.store.kill(by_id[d.kill]):
                self.summary.lost_races += 1
                log.info("lost the race to kill %s; retrying", d.kill)
                continue
            else:
                self.summary.kills += 1
                log.info("killed %s (%s), parent %s (%s)", d.kill, by_id[d.kill].fitness, d.parent,
                         by_id[d.parent].fitness)
                if len(alive) >= self.config.population_size + 2:
                    self._cull(alive, keep={d.kill, d.parent})
            try:
                return self.store.read_parent(by_id[d.parent])
            except LostRace as e:
                self.summary.lost_races += 1
                log.info("lost the race for parent %s (%s); retrying", d.parent, e)

    def _cull(self, alive: list, keep: set[str]) -> None:
        """One extra tournament kill when the alive alone exceed the population by two.

        Listings taken a moment apart can disagree by a birth or two, so the kill rule errs
        either way now and then; short heals by skipping kills, and over heals here, so the size
        cannot drift up over a long run.  Judged on the alive alone, not alive + in training:
        workers deciding at once on one snapshot would all cull (the first tournaments after
        the initial population emptied it, 6 kills for 3 births).  A lost race is fine: someone
        else killed."""
        rest = [(e.id, e.fitness) for e in alive if e.id not in keep]
        if len(rest) < 2:
            return
        d = decide(self.config.selection, rest, self.rng)
        victim = next(e for e in alive if e.id == d.kill)
        if self.store.kill(victim):
            self.summary.kills += 1
            log.info("population over its size: also killed %s (%s)", victim.id, victim.fitness)

    def _make_child(self, child_id: str, initial: bool, in_flight: int = 1) -> None:
        cfg = self.config
        parent = None if initial else self._select_parent(in_flight)
        if parent is None:
            dna = initial_dna(cfg.initial_learning_rate, input_channels=self.trainer.input_channels)
            mrec, parent_rec, parent_state = None, None, None
        else:
            parent_rec, parent_state = parent
            try:
                dna, mrec = mutate(DNA.model_validate(parent_rec.dna), self.rng, cfg.mutation_probabilities,
                                   insert_channels=cfg.insert_channels)
            except Exception as e:  # noqa: BLE001 - no variation may ever end a worker (issue 20)
                # "A worker that cannot mutate gives up and tries again" (section 3.1).  An
                # LseError here used to exit 2, which the launcher reads as a configuration
                # error, stopping every worker.  The loser this tournament killed leaves a gap
                # that the next tournaments refill without killing (_select_parent).
                self.summary.variation_failures += 1
                log.warning("mutation failed on parent %s (%s: %s); child %s given up, trying again",
                            parent_rec.id, type(e).__name__, e, child_id)
                return
            if not cfg.inheritance:
                parent_state = None  # the no-inheritance control (section 4): train from scratch
        seed = self.rng.randrange(2**31)
        what = "initial" if parent_rec is None else f"child of {parent_rec.id} by {mrec.name}"
        log.info("training %s (%s), lr %.4g, seed %d", child_id, what, dna.learning_rate, seed)
        t0 = time.time()
        try:
            res = self.trainer.train_child(
                dna, parent_state, mrec if parent_state is not None else None, seed=seed,
                should_stop=self.stopper.should_stop,
            )
        except StopRequested:
            log.info("stop during training of %s: discarded, nothing published", child_id)
            raise
        except Exception as e:  # a child the phenotype code cannot handle dies; the worker lives
            log.exception("training %s failed", child_id)
            res = ChildResult(None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        failed = res.failed_reason is not None or res.val_accuracy is None or not math.isfinite(res.val_accuracy)
        record = IndividualRecord(
            id=child_id,
            parent_id=None if parent_rec is None else parent_rec.id,
            generation=0 if parent_rec is None else parent_rec.generation + 1,
            dna=dna.model_dump(mode="json"),
            mutation=None if mrec is None else mrec.model_dump(mode="json"),
            inheritance=res.inheritance if parent_rec is not None else None,
            val_accuracy=None if failed else float(res.val_accuracy),
            failed_reason=(res.failed_reason or "no validation accuracy") if failed else None,
            steps=res.steps,
            examples=res.examples,
            flops=res.flops,
            params=res.params,
            worker=self.wid,
            host=self.store.host,
            train_seconds=res.train_seconds,
            eval_seconds=res.eval_seconds,
            extra={**res.extra, "seed": seed, "started_at": t0,
                   "inherited": parent_rec is not None and parent_state is not None},
        )
        self._publish_when_space(record, None if failed else res.state_dict, alive=not failed)
        self.summary.births += 1
        self.summary.initial += parent_rec is None
        self.summary.failures += failed
        if failed:
            log.warning("published %s dead: %s", child_id, record.failed_reason)
        else:
            log.info("born %s: val accuracy %.4f, %d steps in %.1f s", child_id, record.val_accuracy, res.steps,
                     res.train_seconds)

    def _publish_when_space(self, record: IndividualRecord, state: dict | None, alive: bool) -> None:
        """Publish; on a full disk keep the trained child in memory and retry with backoff
        (1, 2, 4 ... 60 s), one log line per attempt.  A child may have cost hours of training,
        and its parent's rival was already killed: dropping it would waste both.  A stop (signal,
        STOP file) while waiting drops it, nothing published."""
        delay = 1.0
        while True:
            try:
                self.store.publish(record, state, alive=alive)
                return
            except DiskFull as e:
                log.error("%s; keeping %s in memory, retrying in %.0f s", e, record.id, delay)
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline:
                if self.stopper.should_stop():
                    log.info("stop while the disk is full: %s discarded, nothing published", record.id)
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
        "create the population with `python -m lse.launch` first.  Exits 0 on any stop "
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
