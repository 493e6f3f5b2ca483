"""``lse simulate``: the real store and the real worker loop at the paper's scale, with a stand-in
trainer, to measure the coordination layer before GPU-days are spent on it.

The paper ran a population of 1,000 with 250 workers (section 3.1).  Training is what makes that
expensive, so here training is replaced by :class:`StandInTrainer`; everything else is the code
a real run uses: :func:`lse.runners.worker.run_worker` (birth-slot claims, tournaments, kills, reads of the
parent, births, GC, recovery, heartbeats) against a real :class:`lse.store.population.Store` directory.  The
records are real :class:`~lse.core.records.IndividualRecord`\\ s with real (untrained) weights of the
right shapes, so ``lse status`` and ``lse report`` work on the result.

How the workers run.  Each worker is a thread running :func:`~lse.runners.worker.run_worker` with its own
worker id, heartbeat and private folder, inside a few *processes* (``--processes``, default one per
core).  Why not one process per worker: a Python process that imports torch costs ~300 MB of
memory and ~3 s of CPU to start, so 250 of them need ~75 GB and minutes of start-up on a 2-core,
24 GB machine; a worker spends nearly all its (simulated) training time asleep, so threads lose
nothing there, and several processes still spread the Python work over the cores (one GIL each).
The store does not care: to it a thread-worker is a worker (its own id, folder, claims and
heartbeat); liveness of same-host workers is judged by pid, which the threads of one process
share, exactly as they share the fate of their process.

The stand-in trainer.  Fitness is a deterministic function of the DNA (:func:`standin_accuracy`:
rises with depth and width up to a point, prefers a learning rate near 0.05, sometimes "diverges"
at high learning rates so children are also born dead) plus noise seeded by the child's seed.
"Training" sleeps for the time the model would take, proportional to its FLOPs
(:func:`lse.nn.flops.count_flops`, section 3.5), scaled down by ``--time-scale``.  Weights are the
built model's initial weights with the parent's inherited (:func:`lse.nn.inherit.inherit_weights`),
so weight files grow as models do and reading a parent costs what it really costs.

Measurement.  The store and the loop are timed through what :func:`~lse.runners.worker.run_worker`
takes for it, without changing them: ``store_class`` :class:`TimedStore` subclasses
:class:`~lse.store.population.Store` and times each public operation, and ``timed`` (:func:`timed`) is how
the loop calls its selection, view, listings of births and claims and the generation barrier.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import json
import math
import multiprocessing
import os
import random
import shutil
import signal
import statistics
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from lse.config import ExperimentConfig, WorkerOptions
from lse.errors import ConfigError, LostRace, StopRequested
from lse.core.records import IndividualName, new_id
from lse.store import Store

#: Simulated seconds an individual costs besides its FLOPs (data loading, evaluation, building).
FIXED_SECONDS = 10.0
#: Sustained FLOP/s of the simulated accelerator: simulated training seconds = FLOPs / this.
FLOPS_PER_SECOND = 1e12
#: How often a sleeping stand-in polls should_stop (real training polls between steps).
POLL_SECONDS = 0.05

#: (input shape, validation accuracy of the initial individual, best reachable) per data set.
#: The ceilings are the paper's test accuracies (94.6% CIFAR-10, 77.0% CIFAR-100).
DATASETS: dict[str, tuple[tuple[int, int, int], int, float, float]] = {
    "fashion-mnist": ((1, 28, 28), 10, 0.84, 0.945),
    "mnist": ((1, 28, 28), 10, 0.92, 0.995),
    "cifar10": ((3, 32, 32), 10, 0.40, 0.946),
    "cifar100": ((3, 32, 32), 100, 0.15, 0.770),
}

#: Store operations timed per round, in the order they are printed.
OPS = ("list_alive", "count_births", "list_claims", "read_config", "kill", "read_parent", "publish", "gc", "recover",
       "view", "select", "generations")
# view: the population view (record reads for whole-population selectors); select: the
# algorithm's selection math; generations: the generation barrier (advance, claim, publish).
LISTING_OPS = ("list_alive", "count_births", "list_claims")


# --------------------------------------------------------------------------------------------
# the stand-in trainer


def standin_accuracy(dna: Any, seed: int, dataset: str = "fashion-mnist") -> float | None:
    """Validation accuracy a trained ``dna`` "reaches": None when it "diverged".

    Deterministic in (dna, seed).  Like real training it rewards depth (convolutions on the
    longest path) and width (mean channels) with diminishing returns and penalises too much of
    either, prefers a learning rate near 0.05, and diverges more often above 0.4.
    """
    _, _, floor, ceiling = DATASETS[dataset]
    rng = random.Random(seed)
    lr = dna.learning_rate
    if lr > 0.4 and rng.random() < min(1.0, (lr - 0.4) / 1.2):
        return None
    convs = dna.conv_edges()
    depth = dna.depth()
    width = dna.total_channels() / len(convs) if convs else 0.0
    depth_term = (1 - math.exp(-depth / 4)) - 0.02 * max(0, depth - 15)
    width_term = (1 - math.exp(-width / 48)) - 0.15 * max(0.0, width - 256) / 256
    lr_term = math.exp(-(math.log10(lr / 0.05) ** 2) / 2)
    skip_bonus = 0.03 * min(len(dna.skips()), 3) / 3 if depth >= 4 else 0.0
    quality = max(0.0, depth_term) * (0.5 + 0.5 * max(0.0, width_term)) + skip_bonus
    acc = floor + (ceiling - floor) * min(1.0, quality) * lr_term - 0.05 * (1 - lr_term)
    return min(1.0, max(0.0, acc + rng.gauss(0.0, 0.004)))


@lru_cache(maxsize=4096)
def _flops(structure: str, input_shape: tuple[int, int, int], num_classes: int, batch: int, eval_batch: int):
    from lse.core.dna import DNA
    from lse.nn.flops import count_flops

    return count_flops(DNA.from_json(structure), input_shape, num_classes, batch, eval_batch)


class StandInTrainer:
    """A :class:`lse.runners.worker.Trainer` that does not train: fitness from :func:`standin_accuracy`,
    training time = FLOPs / :data:`FLOPS_PER_SECOND` (+ :data:`FIXED_SECONDS`) times
    ``time_scale``, slept with ``should_stop`` polled; real weights of the right shapes."""

    def __init__(self, time_scale: float = 1e-3) -> None:
        self.time_scale = time_scale
        self.config: ExperimentConfig | None = None
        self.input_channels = 1
        #: seconds of real CPU work per child (FLOP count, model build, inheritance)
        self.compute_seconds = 0.0
        self.sleep_seconds = 0.0

    def prepare(self, config: ExperimentConfig) -> None:
        if config.dataset not in DATASETS:
            raise ConfigError(f"no stand-in for data set {config.dataset!r}", f"use one of {', '.join(DATASETS)}")
        self.config = config
        self.input_channels = DATASETS[config.dataset][0][0]

    def train_child(self, child, parent_states, recipe, *, seed, should_stop):
        import torch

        from lse.nn.build import build_model
        from lse.nn.inherit import inherit
        from lse.runners.worker import ChildResult

        dna = child.dna
        cfg = self.config
        assert cfg is not None, "prepare() first"
        shape, classes, _, _ = DATASETS[cfg.dataset]
        t0 = time.perf_counter()
        # FLOPs do not depend on the learning rate: mutations that only change it reuse the count.
        structure = dna.model_copy(update={"learning_rate": 0.1}).to_json()
        fc = _flops(structure, shape, classes, cfg.batch_size, cfg.eval_batch_size)
        n_eval = math.ceil(cfg.validation_size / cfg.eval_batch_size)
        total = fc.cost(cfg.steps, n_eval)
        torch.manual_seed(seed)
        model = build_model(dna, shape, classes)
        if parent_states and child.provenance is not None:
            inheritance = inherit(model, parent_states, child.provenance).summary()
        else:
            inheritance = {"kept": 0, "reinitialised": len(model.state_dict())}
        acc = standin_accuracy(dna, seed, cfg.dataset)
        state = None if acc is None else {k: v.detach().clone() for k, v in model.state_dict().items()}
        compute = time.perf_counter() - t0
        self.compute_seconds += compute
        simulated = FIXED_SECONDS + total / FLOPS_PER_SECOND
        t1 = time.perf_counter()
        deadline = t1 + simulated * self.time_scale
        while True:
            if should_stop():
                self.sleep_seconds += time.perf_counter() - t1
                raise StopRequested("stop requested during stand-in training")
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            time.sleep(min(POLL_SECONDS, left))
        self.sleep_seconds += time.perf_counter() - t1
        return ChildResult(
            val_accuracy=acc,
            failed_reason=None if acc is not None else "diverged (stand-in: learning rate too high)",
            state_dict=state,
            inheritance=inheritance,
            flops=fc.record(cfg.steps, n_eval),
            params=fc.params,
            steps=cfg.steps if acc is not None else 0,
            examples=cfg.steps * cfg.batch_size if acc is not None else 0,
            train_seconds=simulated,
            eval_seconds=0.0,
            extra={"simulated": True, "time_scale": self.time_scale, "slept_seconds": simulated * self.time_scale},
        )


# --------------------------------------------------------------------------------------------
# timing the store from outside


@dataclass
class Timings:
    """Seconds and calls per store operation of one worker, and how its tournaments went."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(OPS, 0.0))
    calls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OPS, 0))
    # CPU seconds of the calling thread (time.thread_time): what the operation costs without
    # the wait for a core that 125 threads per core add to the wall time
    cpu: dict[str, float] = field(default_factory=lambda: dict.fromkeys(OPS, 0.0))
    kill_attempts: int = 0
    lost_kill: int = 0  # kill() found the individual already dead or gone
    lost_read: int = 0  # read_parent() raised LostRace (killed/collected while being read)

    def add(self, other: "Timings") -> None:
        for k in OPS:
            self.seconds[k] += other.seconds[k]
            self.calls[k] += other.calls[k]
            self.cpu[k] += other.cpu[k]
        self.kill_attempts += other.kill_attempts
        self.lost_kill += other.lost_kill
        self.lost_read += other.lost_read


_tls = threading.local()


class TimedStore(Store):
    """A :class:`Store` that times its public operations (outermost call only: ``records`` calls
    ``entries``, which must not count twice).  Picks up the Timings of the thread creating it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timings: Timings = getattr(_tls, "timings", None) or Timings()
        self._depth = 0
        _tls.store = self  # the worker's store of this thread: timed() counts listings on it

    def _timed(self, op: str, fn, *args: Any):
        if self._depth:
            return fn(*args)
        self._depth += 1
        t, c = time.perf_counter(), time.thread_time()
        try:
            return fn(*args)
        finally:
            self.timings.seconds[op] += time.perf_counter() - t
            self.timings.cpu[op] += time.thread_time() - c
            self.timings.calls[op] += 1
            self._depth -= 1

    def list_alive(self):
        return self._timed("list_alive", super().list_alive)

    def kill(self, entry):
        won = self._timed("kill", super().kill, entry)
        self.timings.kill_attempts += 1
        self.timings.lost_kill += not won
        return won

    def read_parent(self, entry):
        try:
            return self._timed("read_parent", super().read_parent, entry)
        except LostRace:
            self.timings.lost_read += 1
            raise

    def publish(self, record, state_dict, alive=True):
        return self._timed("publish", super().publish, record, state_dict, alive)

    def gc(self):
        return self._timed("gc", super().gc)

    def recover(self):
        return self._timed("recover", super().recover)


#: the loop's listings of the store, timed as store operations (counted once with what they call)
_STORE_OPS = frozenset({"count_births", "list_claims", "read_config"})


def timed(op: str, fn, *args: Any, **kwargs: Any):
    """The worker loop's ``timed`` (lse.runners.worker.untimed): what it calls, timed into the
    Timings of this thread (listings of the store through its TimedStore, so that the store
    operations they make are not counted twice)."""
    call = functools.partial(fn, *args, **kwargs)
    store = getattr(_tls, "store", None)
    if op in _STORE_OPS and isinstance(store, TimedStore):
        return store._timed(op, call)
    t = getattr(_tls, "timings", None)
    if t is None:
        return call()
    t0, c0 = time.perf_counter(), time.thread_time()
    try:
        return call()
    finally:
        t.seconds[op] += time.perf_counter() - t0
        t.cpu[op] += time.thread_time() - c0
        t.calls[op] += 1


# --------------------------------------------------------------------------------------------
# one worker process: many worker threads


def _process_main(pop: str, n_threads: int, time_scale: float, index: int) -> dict:
    """Run ``n_threads`` workers as threads of this process; return their summaries and timings."""
    os.environ.pop("LSE_LAUNCHER_PID", None)  # not a launcher's child: never stop on its absence
    import logging

    import torch

    from lse.runners.worker import run_worker

    torch.set_num_threads(1)
    store = Store(pop).open()
    # One log file per process, warnings only: run_worker's per-worker file handlers hang off the
    # shared "lse" logger, so with threads every worker would write every other worker's lines.
    handler = logging.FileHandler(store.paths.log(f"simulate-p{index}-{os.getpid()}"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"))
    handler.setLevel(logging.WARNING)
    logging.getLogger("lse").addHandler(handler)

    def on_signal(_signum, _frame):  # Ctrl-C: every worker stops after its current step
        try:
            store.request_stop("lse simulate interrupted")
        except Exception:  # noqa: BLE001 - the parent writes it too
            pass

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    results: list[dict] = []
    lock = threading.Lock()

    def one(j: int) -> None:
        timings = Timings()
        _tls.timings = timings
        trainer = StandInTrainer(time_scale)
        t0 = time.monotonic()
        error = None
        summary = None
        try:
            summary = run_worker(pop, WorkerOptions(device="cpu"), trainer, handle_signals=False, log_to_file=False,
                                 timed=timed, store_class=TimedStore)
        except Exception as e:  # noqa: BLE001 - reported by the parent, never silently
            error = f"{type(e).__name__}: {e}"
            logging.getLogger("lse.runners.simulate").exception("worker thread %d failed", j)
        out = {
            "summary": asdict(summary) if summary else None,
            "error": error,
            "seconds": time.monotonic() - t0,
            "timings": asdict(timings),
            "compute_seconds": trainer.compute_seconds,
            "sleep_seconds": trainer.sleep_seconds,
        }
        with lock:
            results.append(out)

    threads = [threading.Thread(target=one, args=(j,), name=f"sim-p{index}-t{j}") for j in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    logging.getLogger("lse").removeHandler(handler)
    handler.close()
    return {"pid": os.getpid(), "workers": results}


# --------------------------------------------------------------------------------------------
# the simulation


@dataclass
class SimulationReport:
    workers: int
    processes: int
    population_size: int
    individuals: int | None
    seconds_limit: float | None
    time_scale: float
    wall_seconds: float
    births: int
    initial: int
    failures: int
    kills: int
    births_per_second: float
    kill_attempts: int
    lost_rounds: int
    lost_kills: int  # the chosen loser was already dead: nothing changed, the worker retries
    lost_reads: int  # we killed, then the parent vanished: the retry kills again (population -1)
    lost_share: float  # rounds given up (kill lost, or parent gone while read) / tournament rounds
    worker_seconds: float  # summed over workers
    op_seconds: dict[str, float]
    op_calls: dict[str, int]
    op_share: dict[str, float]  # of the workers' summed time
    op_ms_per_birth: dict[str, float]
    store_share: float
    standin_sleep_share: float
    standin_compute_share: float
    algorithm: str
    store_share_real: float  # the store's share of a step if training took its simulated (real) time
    op_cpu_ms_per_birth: dict[str, float]  # CPU (thread) time per operation, per birth
    store_share_real_cpu: float  # as store_share_real, with the store's CPU time instead of wall time
    directory: dict[str, int]
    listing: list[dict]
    errors: list[str]
    stop_reasons: dict[str, int]

    def to_dict(self) -> dict:
        return asdict(self)


def directory_size(pop: str | os.PathLike) -> dict[str, int]:
    """Entries of the population folder by kind (listings only) and its bytes."""
    paths = Store(pop).paths
    out = {"alive": 0, "dead": 0, "foreign": 0, "history_records": 0, "history_deaths": 0,
           "gc": 0, "workers": 0, "quarantine": 0, "bytes": 0}
    for name in _names(paths.individuals):
        parsed = IndividualName.parse(name)
        out["foreign" if parsed is None else parsed.state] += 1
    for name in _names(paths.history):
        out["history_deaths" if name.endswith(".death.json") else "history_records"] += 1
    out["gc"] = len(_names(paths.gc))
    out["workers"] = len(_names(paths.workers))
    out["quarantine"] = len(_names(paths.quarantine))
    for dirpath, _dirs, files in os.walk(paths.root):
        for f in files:
            try:
                out["bytes"] += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return out


def _names(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


def listing_cost(sizes: list[int], where: str | os.PathLike | None = None, repeats: int = 5) -> list[dict]:
    """How listing grows with the number of entries, on synthetic populations in a temporary
    folder under ``where`` (same filesystem as the population, to measure the same disk).

    For each size N: ``list_alive`` on an ``individuals/`` of N entries (1 in 20 alive: the state
    when GC falls behind, or an unsharded directory of a huge population), and the worker's
    per-step birth count (``count_births``) with N records in ``history/`` (a long experiment:
    history grows by one record and one death file per kill, forever): a first call (nothing
    cached) and a worker's later call (its :class:`~lse.store.scan.PopulationScan` parsed the names before).
    Median of ``repeats``.
    """
    from lse.runners.worker import count_births
    from lse.store.scan import PopulationScan

    out = []
    base = Path(tempfile.mkdtemp(prefix=".lse-listing-", dir=where))
    try:
        for n in sizes:
            root = base / f"n{n}"
            store = Store(root)
            store.create(ExperimentConfig())
            t0 = time.time()
            for i in range(n):
                iid = new_id(t0 + i * 1e-3)
                alive = i % 20 == 0
                name = IndividualName(iid, "alive" if alive else "dead", 0.5, None if alive else "w")
                os.mkdir(store.paths.individual(name))
                (store.paths.history / f"{iid}.json").touch()
            alive_t, births_t, cached_t = [], [], []
            cache = PopulationScan(store.paths)
            count_births(store, cache)  # a worker's cache after its first step
            for _ in range(repeats):
                t = time.perf_counter()
                store.list_alive()
                alive_t.append(time.perf_counter() - t)
                t = time.perf_counter()
                count_births(store)
                births_t.append(time.perf_counter() - t)
                t = time.perf_counter()
                count_births(store, cache)
                cached_t.append(time.perf_counter() - t)
            out.append({"entries": n, "list_alive_ms": 1e3 * statistics.median(alive_t),
                        "count_births_ms": 1e3 * statistics.median(births_t),
                        "count_births_cached_ms": 1e3 * statistics.median(cached_t)})
            shutil.rmtree(root, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return out


def simulate(
    pop: str | os.PathLike,
    *,
    workers: int = 250,
    population_size: int = 1000,
    individuals: int | None = 20_000,
    seconds: float | None = None,
    time_scale: float = 1e-3,
    seed: int = 0,
    processes: int | None = None,
    dataset: str = "fashion-mnist",
    listing_sizes: tuple[int, ...] = (1_000, 10_000, 50_000),
    progress=None,
    algorithm: dict | None = None,
) -> SimulationReport:
    """Run ``workers`` real workers with the stand-in trainer on a NEW population ``pop`` until
    ``individuals`` births or ``seconds`` of wall time (whichever first); measure; report."""
    if workers < 1:
        raise ConfigError(f"--workers {workers}", "give at least 1")
    if individuals is None and seconds is None:
        raise ConfigError("no stop condition", "give --individuals N and/or --seconds S")
    if time_scale < 0:
        raise ConfigError(f"--time-scale {time_scale}", "give a scale >= 0 (0: no sleep at all)")
    if dataset not in DATASETS:
        raise ConfigError(f"unknown data set {dataset!r}", f"use one of {', '.join(DATASETS)}")
    pop = Path(pop)
    if pop.exists() and any(pop.iterdir()):
        raise ConfigError(f"{pop} is not empty", "lse simulate writes a new population: give a new folder")
    n_proc = max(1, min(workers, processes or os.cpu_count() or 1))
    per = [workers // n_proc + (k < workers % n_proc) for k in range(n_proc)]
    config = ExperimentConfig.parse(dict(
        dataset=dataset, population_size=population_size, max_individuals=individuals, seed=seed,
        **({"algorithm": algorithm} if algorithm else {}),
    ), "lse simulate")
    from lse.algorithms import algorithm_class

    algo = algorithm_class(config.algorithm.name)
    if algo.genome != "dna":  # e.g. seed 000's autoencoders
        raise ConfigError(f"algorithm {algo.name!r} trains a genome of its own, the stand-in trainer only the "
                          "paper's classifiers", f"run it for real with `lse launch --algorithm {algo.name}`")
    store = Store(pop)
    store.create(config)
    say = progress or (lambda _msg: None)
    say(f"{workers} workers as threads of {n_proc} process(es) ({', '.join(map(str, per))} each); "
        f"population {population_size}, stop at {individuals or '-'} births / {seconds or '-'} s")

    from lse.runners.worker import count_births

    ctx = multiprocessing.get_context("spawn")  # no fork of a threaded parent; fresh interpreters
    stopped_by_us = False
    results: list[dict] = []
    t_start = time.monotonic()
    with cf.ProcessPoolExecutor(max_workers=n_proc, mp_context=ctx) as ex:
        futs = [ex.submit(_process_main, str(pop), per[k], time_scale, k) for k in range(n_proc)]
        try:
            last = time.monotonic()
            while True:
                done, _ = cf.wait(futs, timeout=1.0)
                if len(done) == len(futs):
                    break
                now = time.monotonic()
                if seconds is not None and now - t_start >= seconds and not stopped_by_us:
                    store.request_stop("lse simulate: time limit")
                    stopped_by_us = True
                    say(f"time limit {seconds:g} s reached: STOP file written, workers finish their step")
                if now - last >= 10:
                    last = now
                    n = len(count_births(store))
                    say(f"{now - t_start:6.0f} s  births {n}  ({n / (now - t_start):.1f}/s)")
        except KeyboardInterrupt:
            store.request_stop("lse simulate interrupted")
            stopped_by_us = True
            say("interrupted: STOP file written, waiting for the workers to stop")
            cf.wait(futs)
        for f in futs:
            results.append(f.result())
    wall = time.monotonic() - t_start
    if stopped_by_us:
        store.clear_stop()
    say("measuring directory size and listing cost")
    directory = directory_size(pop)
    listing = listing_cost(list(listing_sizes), where=pop.parent) if listing_sizes else []
    return _report(results, workers, n_proc, config, seconds, time_scale, wall, directory, listing)


def _report(results, workers, n_proc, config, seconds, time_scale, wall, directory, listing) -> SimulationReport:
    total = Timings()
    births = initial = failures = kills = 0
    worker_seconds = compute = sleep = 0.0
    errors: list[str] = []
    reasons: dict[str, int] = {}
    for proc in results:
        for w in proc["workers"]:
            t = Timings(**w["timings"])
            total.add(t)
            worker_seconds += w["seconds"]
            compute += w["compute_seconds"]
            sleep += w["sleep_seconds"]
            if w["error"]:
                errors.append(w["error"])
            s = w["summary"]
            if s:
                births += s["births"]
                initial += s["initial"]
                failures += s["failures"]
                kills += s["kills"]
                reasons[s["stop_reason"]] = reasons.get(s["stop_reason"], 0) + 1
    lost = total.lost_kill + total.lost_read
    ws = worker_seconds or 1.0
    store_seconds = sum(total.seconds.values())
    return SimulationReport(
        workers=workers, processes=n_proc, population_size=config.population_size,
        individuals=config.max_individuals, seconds_limit=seconds, time_scale=time_scale,
        wall_seconds=wall, births=births, initial=initial, failures=failures, kills=kills,
        births_per_second=births / wall if wall > 0 else 0.0,
        kill_attempts=total.kill_attempts, lost_rounds=lost, lost_kills=total.lost_kill, lost_reads=total.lost_read,
        lost_share=lost / total.kill_attempts if total.kill_attempts else 0.0,
        worker_seconds=worker_seconds,
        op_seconds=dict(total.seconds), op_calls=dict(total.calls),
        op_share={k: v / ws for k, v in total.seconds.items()},
        op_ms_per_birth={k: 1e3 * v / max(births, 1) for k, v in total.seconds.items()},
        store_share=store_seconds / ws, standin_sleep_share=sleep / ws, standin_compute_share=compute / ws,
        directory=directory, listing=listing, errors=errors, stop_reasons=reasons,
        algorithm=config.algorithm.name,
        store_share_real=_real_share(store_seconds, sleep, time_scale),
        op_cpu_ms_per_birth={k: 1e3 * v / max(births, 1) for k, v in total.cpu.items()},
        store_share_real_cpu=_real_share(sum(total.cpu.values()), sleep, time_scale),
    )


def _real_share(store_seconds: float, sleep_seconds: float, time_scale: float) -> float:
    """The store's share of the workers' time had training taken its simulated time (the
    stand-in sleeps ``time_scale`` of it): store / (store + simulated training).  The store's
    own seconds are kept as measured (on 2 shared cores, an upper bound)."""
    if time_scale <= 0 or sleep_seconds <= 0:
        return 0.0
    real_training = sleep_seconds / time_scale
    return store_seconds / (store_seconds + real_training)


def format_report(r: SimulationReport) -> str:
    """The figures, as printed at the end of ``lse simulate``."""
    d = r.directory
    lines = [
        f"workers                 {r.workers} (threads in {r.processes} process(es)); population {r.population_size}; "
        f"algorithm {r.algorithm}",
        f"wall time               {r.wall_seconds:.1f} s",
        f"births                  {r.births} ({r.initial} initial, {r.failures} born dead); kills {r.kills}",
        f"births per second       {r.births_per_second:.2f}",
        f"rounds lost to races    {r.lost_share:.1%} ({r.lost_rounds} of {r.kill_attempts} tournament rounds given up and retried: "
        f"{r.lost_kills} kills lost, {r.lost_reads} parents gone after our kill)",
        f"store operations        {r.store_share:.1%} of the workers' time "
        f"({sum(r.op_ms_per_birth.values()):.1f} ms per birth); stand-in: sleep {r.standin_sleep_share:.1%}, "
        f"compute {r.standin_compute_share:.1%}",
        f"  at real training time {r.store_share_real:.3%} of the workers' time with the store's wall time, "
        f"{r.store_share_real_cpu:.3%} with its CPU time (training as simulated: {FIXED_SECONDS:g} s + FLOPs / "
        f"{FLOPS_PER_SECOND:.0e} FLOP/s)",
        f"  {'operation':<21} {'share':>6}  {'wall ms/birth':>13}  {'CPU ms/birth':>12}  {'calls':>8}",
    ]
    for op in OPS:
        lines.append(f"  {op:<21} {r.op_share[op]:6.1%}  {r.op_ms_per_birth[op]:13.2f}  "
                     f"{r.op_cpu_ms_per_birth[op]:12.2f}  {r.op_calls[op]:>8}")
    lines += [
        f"directory at the end    individuals/: {d['alive']} alive + {d['dead']} dead (not yet collected); "
        f"history/: {d['history_records']} records + {d['history_deaths']} death files; gc/: {d['gc']}; "
        f"workers/: {d['workers']}; quarantine/: {d['quarantine']}; {d['bytes'] / 1e6:.1f} MB",
    ]
    if r.listing:
        lines.append("listing cost            entries   list_alive   count_births   (a worker's next step, cached)")
        for row in r.listing:
            lines.append(f"                        {row['entries']:>7}   {row['list_alive_ms']:7.2f} ms   "
                         f"{row['count_births_ms']:7.2f} ms   {row['count_births_cached_ms']:7.2f} ms")
    if r.stop_reasons:
        lines.append("stop reasons            " + "; ".join(f"{k} ({v})" for k, v in sorted(r.stop_reasons.items())))
    for e in r.errors:
        lines.append(f"WORKER ERROR            {e}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# CLI


def register_cli(app) -> None:
    import typer

    @app.command("simulate")
    def simulate_cmd(
        pop: Path = typer.Option(..., "--pop", help="NEW folder for the simulated population"),
        workers: int = typer.Option(250, "--workers", help="workers (paper: 250)"),
        population_size: int = typer.Option(1000, "--population-size", help="alive individuals kept (paper: 1000)"),
        individuals: int = typer.Option(20_000, "--individuals", help="stop after this many births (0: no limit)"),
        seconds: float = typer.Option(None, "--seconds", help="also stop after this many seconds of wall time"),
        time_scale: float = typer.Option(
            1e-3, "--time-scale",
            help=f"real seconds slept per simulated training second (simulated: {FIXED_SECONDS:g} s + FLOPs / "
            f"{FLOPS_PER_SECOND:.0e} FLOP/s)",
        ),
        seed: int = typer.Option(0, "--seed", help="experiment seed"),
        processes: int = typer.Option(None, "--processes", help="processes the worker threads run in (default: cores)"),
        dataset: str = typer.Option("fashion-mnist", "--dataset", help=f"shapes and accuracy range ({', '.join(DATASETS)})"),
        listing_sizes: str = typer.Option("1000,10000,50000", "--listing-sizes", help="entries for the listing-cost "
                                          "measurement, comma-separated ('' to skip)"),
        json_out: Path = typer.Option(None, "--json", help="also write the figures to this JSON file"),
        algorithm: str = typer.Option(None, "--algorithm", help="the workers' algorithm (lse algorithms; default real2017)"),
        algorithm_option: list[str] = typer.Option(None, "--algorithm-option", "-o", help="KEY=VALUE, repeatable"),
    ) -> None:
        """Real store + real worker loop at scale with a stand-in trainer; prints the store's costs."""
        from lse.errors import LseError
        from lse.runners.launch import parse_algorithm

        try:
            sizes = tuple(int(s) for s in listing_sizes.split(",") if s.strip())
        except ValueError:
            typer.echo(f"error: --listing-sizes {listing_sizes!r}: give integers separated by commas", err=True)
            raise typer.Exit(2) from None
        try:
            rep = simulate(
                pop, workers=workers, population_size=population_size, individuals=individuals or None,
                seconds=seconds, time_scale=time_scale, seed=seed, processes=processes, dataset=dataset,
                listing_sizes=sizes, progress=lambda m: typer.echo(m, err=True),
                algorithm=parse_algorithm(algorithm, algorithm_option),
            )
        except LseError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from None
        typer.echo(format_report(rep))
        if json_out is not None:
            json_out.write_text(json.dumps(rep.to_dict(), indent=2) + "\n")
        if rep.errors:
            raise typer.Exit(1)
