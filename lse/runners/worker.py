"""One evolution worker: the loop of section 3.1 against the shared population store.

Every worker runs the same loop, alone, talking to the others only through the store:

1. **Stop?**  Signal (SIGTERM/SIGINT), the STOP file, ``max_hours`` since the experiment was
   created, ``max_individuals`` births, ``max_flops`` spent (re-read from experiment.json
   every iteration, so a resume that raises a bound reaches running workers).
2. **Claim a birth slot** (:mod:`lse.runners.slots`): births stay exactly ``max_individuals``
   and the initial population exactly ``population_size`` even with many workers.
3. **Initial or evolved.**  While fewer than ``population_size`` births exist (section 3.3),
   or fewer than two individuals are alive (nothing to compare), the child is an initial
   individual: no convolution, learning rate ``initial_learning_rate``.  Otherwise a tournament
   (:mod:`lse.core.selection`): two random alive individuals, kill the worse (lost race: retry),
   read the better (lost race: retry), mutate a copy (:func:`lse.core.mutations.mutate`, with a
   per-worker seeded rng).  A variation that raises gives this child up (a warning) and the
   loop tries again: nothing a mutation produces can end a worker.
4. **Train** through the injectable :class:`Trainer` (build, inherit weights unless the
   experiment disabled inheritance, train, evaluate on the validation split, count FLOPs as
   ``F_t*N_t + F_v*N_v``, section 3.5).  Training polls :meth:`Stopper.should_stop`.
5. **Publish** (one rename).  A failed training (divergence, out of memory) is published
   *dead* with its reason, so it is counted and visible, never selected.
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
from dataclasses import dataclass, replace
from typing import Any, Callable

from lse.algorithms import algorithm_class, make_algorithm
from lse.algorithms.base import Algorithm, Child, Context, PopulationView, Recipe
from lse.config import ExperimentConfig, WorkerOptions
from lse.core import events as ev
from lse.core.budget import refused
from lse.core.records import IndividualRecord, new_id
from lse.errors import ConfigError, DataError, DiskFull, LseError, LostRace, StopRequested
from lse.runners.birth import birth_record, judge
from lse.runners.logfile import attach_log_file, detach_log_file
from lse.runners.slots import (  # noqa: F401 (count_births, list_claims: re-exported)
    BirthLedger, claim_times, count_births, initial_rank, list_claims, tied, untimed)
from lse.runners.stops import (  # noqa: F401 (LAUNCHER_PID_ENV: re-exported)
    LAUNCHER_PID_ENV, StopCondition, Stopper, publish_when_space, read_stop_fields)
from lse.runners.trainer import ChildResult, ShouldStop, Trainer, TorchTrainer, make_trainer  # noqa: F401 (re-exported)
from lse.store import Store
from lse.store.events import EventLog
from lse.store.generations import Generations
from lse.store.view import ViewCache

log = logging.getLogger("lse.runners.worker")

#: seconds between two garbage collections / recoveries of a worker
MAINTENANCE_SECONDS = 30.0
#: a worker whose claim does not fit under a limit waits this long before looking again
SLOT_WAIT_SECONDS = 1.0
#: steps in a row that may fail on the population's content before the worker gives up (then
#: the fault is its own, not one hostile file's: that is quarantined or skipped by the first)
MAX_STEP_FAILURES = 20




# --------------------------------------------------------------------------------------------
# the loop (the trainer: lse.runners.trainer, one per genome kind; `lse simulate` passes a stand-in)


@dataclass(frozen=True)
class Chosen:
    """Parents as read (record, weights), and what their selection decided for ``vary``."""

    parents: list[tuple[IndividualRecord, dict]]
    plan: Any = None


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


def run_worker(
    pop_dir: str | os.PathLike,
    options: WorkerOptions | None = None,
    trainer: Trainer | None = None,
    *,
    worker_id: str | None = None,
    handle_signals: bool = True,
    log_to_file: bool = True,
    timed: Callable[..., Any] = untimed,
    store_class: type[Store] = Store,
) -> WorkerSummary:
    """Run one worker on the population ``pop_dir`` until a stop condition; return its summary.

    ``trainer`` defaults to the one of the algorithm's genome kind (lse.runners.trainer).
    ``handle_signals`` installs SIGTERM/SIGINT handlers (main thread only) that stop it gracefully.
    ``timed``, ``store_class``: how ``lse simulate`` measures the loop (:func:`untimed`).
    """
    options = options or WorkerOptions()
    store = store_class(pop_dir, stale_after=options.stale_after_seconds).open()
    config = store.config
    stopper = Stopper(store)
    previous: dict[int, Any] = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, stopper.handle_signal)
    handle = store.register_worker(worker_id, auto_heartbeat=True, heartbeat_seconds=options.heartbeat_seconds)
    summary = WorkerSummary(handle.id)
    file_handler = attach_log_file(store.paths.log(handle.id)) if log_to_file else None
    try:
        log.info("worker %s on %s started (pid %d, %s)", handle.id, store.host, os.getpid(), options.model_dump())
        trainer = trainer or make_trainer(algorithm_class(config.algorithm.name).genome, options)
        trainer.prepare(config)
        _Loop(store, config, options, trainer, stopper, summary, timed).run()
    finally:
        log.info(
            "worker %s stops: %s (births %d, initial %d, failures %d, kills %d, lost races %d)",
            handle.id, summary.stop_reason or "error", summary.births, summary.initial, summary.failures,
            summary.kills, summary.lost_races,
        )
        store.close()  # heartbeat off, private folder (scratch, claims) removed
        if file_handler is not None:
            detach_log_file(file_handler)
        for sig, h in previous.items():
            signal.signal(sig, h)
    return summary


class _Loop:
    def __init__(self, store, config, options, trainer, stopper, summary, timed=untimed) -> None:
        self.store: Store = store
        self.timed = timed
        self.config: ExperimentConfig = config
        self.options = options
        self.trainer: Trainer = trainer
        self.stopper: Stopper = stopper
        self.summary: WorkerSummary = summary
        self.wid = summary.worker_id
        # Per-worker rng, reproducible from the experiment seed and the worker id.
        self.rng = random.Random(f"{config.seed}:{self.wid}")
        self.last_maintenance = -math.inf
        self.ledger = BirthLedger(store, config.population_size, timed)  # births and their FLOPs
        self.algorithm = make_algorithm(config)  # the seam: every decision of the paper's method
        # the data's (C, H, W), for genomes sized by their input (seed 000's autoencoders)
        self.input_shape = getattr(trainer, "input_shape", None)
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
        self.stopper.check(limits, births, self.ledger.flops_spent)

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
        except Exception as e:  # noqa: BLE001 - whatever the population holds, evolution goes on
            log.exception("maintenance failed on the population's content (%s); retried in %.0f s",
                          str(e).splitlines()[0][:200] if str(e) else type(e).__name__, MAINTENANCE_SECONDS)

    # -- the loop --
    def run(self) -> None:
        failures = 0
        try:
            while True:
                try:
                    self._step()
                    failures = 0
                except (StopCondition, StopRequested, ConfigError, DataError):
                    raise  # a stop, or a misconfiguration only its user can fix
                except Exception as e:  # noqa: BLE001 - a file no check foresaw must not end the worker;
                    # the store quarantines or skips what it can name.  A fault repeated
                    # MAX_STEP_FAILURES steps in a row is the worker's own: it ends it.
                    failures += 1
                    if failures >= MAX_STEP_FAILURES:
                        raise
                    log.exception("step failed (%d in a row): %s; going on", failures,
                                  (str(e).splitlines() or [type(e).__name__])[0][:300])
                    self.stopper.signalled.wait(SLOT_WAIT_SECONDS * self.rng.uniform(0.5, 1.5))
        except StopCondition as s:
            self.summary.stop_reason = s.reason
        except StopRequested:
            self.summary.stop_reason = self.stopper.reason() or "stop requested"

    def _read_live(self, limits: ExperimentConfig) -> None:
        """Mutations per child and the weight epoch in force now (experiment.json + events/)."""
        self.events = self.event_log.read()
        live = ev.live(self.events, limits.mutations_per_child, time.time())
        if live != self.live:
            log.info("live settings now: %d mutation(s) per child, weight epoch %d", live.mutations_per_child, live.epoch)
        self.live = live

    def _context(self, generation: int | None, slot: int | None) -> Context:
        """What the algorithm's hooks get to know of the child being made (lse.algorithms.base)."""
        return Context(generation=generation, slot=slot, mutations_per_child=self.live.mutations_per_child,
                       input_shape=self.input_shape, weight_epoch=self.live.epoch)

    def _step(self) -> None:
        limits = self.timed("read_config", read_stop_fields, self.store)
        self._read_live(limits)
        births = self.ledger.births(limits)
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
            if self.ledger.initial_done:
                times, claims = {}, self.timed("list_claims", list_claims, self.store)
            else:
                times = self.timed("list_claims", claim_times, self.store)
                claims = sorted(times)
            births = self.ledger.births(limits)
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
            if births is not None and len(births) < self.config.population_size and tied(child_id, claims, times):
                # Two claims in one tick rank after each other (initial_rank): one slot twice, or
                # (last slot) none.  Withdraw and claim again after a jittered wait, as the
                # max_individuals path does; the other claim (or ours, next time) ranks alone.
                claim.unlink()
                time.sleep(SLOT_WAIT_SECONDS * self.rng.uniform(0.1, 0.5))
                return
            self._make_child(child_id, initial, self._context(None, index if initial else None), in_flight=n_claims)
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
        g = self.timed("generations", gens.advance, self.algorithm.replace)
        slot = self.timed("generations", gens.claim, g)
        if slot is None:  # every free slot is being trained by a live worker: wait for them
            time.sleep(SLOT_WAIT_SECONDS * self.rng.uniform(0.5, 1.5))
            return
        try:
            ctx = self._context(g, slot)
            # the parents come from P_g; replacement is the plan's, so this selection kills nothing
            chosen = None if g == 0 else self._select_parents(0, ctx, may_kill=False)
            bred = self._breed(new_id(), chosen, ctx, barrier_generation=g)
            if bred is None:
                return
            record, state = bred
            try:
                publish_when_space(self.stopper, lambda: self.timed("generations", gens.publish, g, slot, record, state,
                                                                     alive=record.fitness is not None),
                                         record.id)
            except LostRace as e:
                log.info("child %s discarded: %s", record.id, e)
                return
            self._count_birth(record)
        finally:
            gens.release()
        self.timed("generations", gens.advance, self.algorithm.replace)

    def _select_parents(self, in_flight: int, ctx: Context, may_kill: bool = True) -> Chosen | None:
        """The algorithm's selection until its parents were read; None: too few alive.  The one
        parent reader of both loops: the generational one passes ``may_kill=False``.  The
        parents come back with the selection's plan, which the worker hands to ``vary``.

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
            view = self.timed("view", self.views.view, alive, algo.uses_records)
            if self.live.epoch:  # after a weight reset: older epochs' fitness no longer counts
                view = view.unrated({e.id for e in alive if ev.stale(e.id, self.events, self.live.epoch)})
            full = may_kill and len(alive) + in_flight > self.config.population_size
            sel = self.timed("select", algo.select, view, self.rng, full=full, ctx=ctx)
            if not may_kill:
                pass
            elif not full:
                log.info("population below its size (%d alive, %d in training): %s reproduces, no kill",
                         len(alive), in_flight, ", ".join(sel.parents))
            elif sel.kills or sel.kill_first_of:
                if sel.kills and not self._kill([by_id[k] for k in sel.kills], sel.parents, by_id):
                    continue
                if sel.kill_first_of and not self._kill([by_id[k] for k in sel.kill_first_of], sel.parents, by_id,
                                                        first_only=True):
                    continue
                if len(alive) >= self.config.population_size + 2:
                    self._cull(view.without(set(sel.kills) | set(sel.kill_first_of) | set(sel.parents)), by_id)
            try:
                return Chosen([self.store.read_parent(by_id[p]) for p in sel.parents], sel.plan)
            except LostRace as e:
                self.summary.lost_races += 1
                log.info("lost the race for parent(s) %s (%s); retrying", ", ".join(sel.parents), e)

    def _kill(self, victims: list, parents: tuple[str, ...], by_id: dict, first_only: bool = False) -> bool:
        """Kill each victim, or with ``first_only`` the first still alive in the algorithm's
        order.  False: a kill lost to another worker (each: select again), or none was alive."""
        for victim in victims:
            if self.store.kill(victim):
                self.summary.kills += 1
                log.info("killed %s (%s), parent %s", victim.id, victim.fitness,
                         ", ".join(f"{p} ({by_id[p].fitness})" for p in parents))
                if first_only:
                    return True
                continue
            self.summary.lost_races += 1
            if not first_only:
                log.info("lost the race to kill %s; retrying", victim.id)
                return False
            log.info("%s was killed by another worker; trying the next", victim.id)
        return not first_only

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

    def _vary(self, chosen: Chosen | None, ctx: Context, child_id: str | None = None) -> tuple[Child, dict] | None:
        """The child's DNA and the parents' weights it may inherit; None when the variation
        failed (a mutation or crossover that produced something invalid): the worker gives up
        on this child and tries again, as the paper's workers do -- it never dies of it."""
        algo, cfg = self.algorithm, self.config
        parents = None if chosen is None else chosen.parents
        try:
            if chosen is None:
                return algo.initial(self._initial_rng(ctx), self.trainer.input_channels, ctx), {}
            child = algo.vary([rec for rec, _ in chosen.parents], self.rng, chosen.plan, ctx)
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

    def _initial_rng(self, ctx: Context) -> random.Random:
        """Initial individual k (genome and initial weights) is a function of the experiment's
        seed and k, whichever worker makes it: two experiments with one seed start from one
        population, so their comparison is paired.  Without a known k: the worker's own rng."""
        return random.Random(f"{self.config.seed}:initial:{ctx.slot}") if ctx.slot is not None else self.rng

    def _make_child(self, child_id: str, initial: bool, ctx: Context, in_flight: int = 1) -> None:
        chosen = None if initial else self._select_parents(in_flight, ctx)
        bred = self._breed(child_id, chosen, ctx)
        if bred is None:
            return
        record, state = bred
        try:
            publish_when_space(self.stopper, lambda: self.store.publish(record, state, alive=record.fitness is not None),
                                     record.id)
        except LostRace as e:  # our scratch folder was reclaimed meanwhile: as on the generational path
            log.info("child %s discarded: %s", record.id, e)
            return
        self._count_birth(record)

    def _count_birth(self, record: IndividualRecord) -> None:
        self.summary.births += 1
        self.store.worker.births = self.summary.births  # the heartbeat thread publishes it
        if self.summary.births == 1:  # the launcher asks only "any birth yet?": say it at once
            try:
                self.store.worker.heartbeat()
            except (LseError, OSError) as e:  # a full disk...: the heartbeat thread says it again soon
                log.warning("heartbeat after the first birth failed: %s", e)
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

    def _breed(self, child_id: str, chosen: Chosen | None, ctx: Context,
               barrier_generation: int | None = None) -> tuple[IndividualRecord, dict | None] | None:
        """Vary the chosen parents (None: an initial individual), train and evaluate the child;
        its record and weights (None for a failed child), or None when the variation failed."""
        algo = self.algorithm
        varied = self._vary(chosen, ctx, child_id)
        if varied is None:
            return None
        child, states = varied
        by_id = {rec.id: rec for rec, _ in (chosen.parents if chosen is not None else ())}
        first = by_id.get(child.parents[0]) if child.parents else None
        seed = (self.rng if first is not None else self._initial_rng(ctx)).randrange(2**31)
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
        if first is None and refused(res.failed_reason) and type(algo).initial is Algorithm.initial:
            # the experiment's one initial network is over the budget: every initial individual
            # would be refused, and the worker would publish dead records until the disk is full
            raise ConfigError(f"the initial network is {res.failed_reason}; raise --child-flops or lower "
                              "--min-child-steps (or start from a cheaper --initial-dna)")
        verdict = judge(algo, res, child)
        child = algo.settle(child, verdict.fitness)
        record = birth_record(
            child_id, child, first, res, verdict, algorithm=algo.name, worker=self.wid, host=self.store.host,
            barrier_generation=barrier_generation,
            extra={"seed": seed, "started_at": t0, "inherited": first is not None and bool(states),
                   # section 5: the weight epoch it belongs to, and the mutations it was made with
                   "epoch": ev.epoch_of(child_id, self.events),
                   "mutations_per_child": 0 if first is None else ctx.mutations_per_child})
        return record, None if verdict.failed_reason else res.state_dict
