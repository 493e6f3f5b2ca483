"""A generational algorithm on the real worker loop: the pareto-testbed (NSGA-II selection over
objective vectors, two-parent recombination, the generation barrier) with several worker
threads and the stand-in trainer of `lse simulate` (real weights, real inheritance)."""

from __future__ import annotations

from _generation_helpers import check_barrier
from _store_helpers import run_workers_in_threads

from lse.algorithms import make_algorithm
from lse.config import ExperimentConfig, WorkerOptions
from lse.runners.simulate import StandInTrainer
from lse.runners.worker import run_worker
from lse.store import Store
from lse.store.generations import Generations


def test_generations_close_with_two_parent_children(tmp_path):
    pop = tmp_path / "pop"
    cfg = ExperimentConfig(population_size=6, steps=10, max_individuals=36, algorithm={"name": "pareto-testbed"},
                           mutation_probabilities={"insert_convolution": 1, "alter_channels": 1, "identity": 1})
    Store(pop).create(cfg)
    run_workers_in_threads(pop, 3, prefix="gw", trainer_factory=lambda: StandInTrainer(time_scale=1e-4), timeout=240)

    store = Store(pop).open()
    store.register_worker("checker", auto_heartbeat=False)
    algo = make_algorithm(store.config)
    gens = Generations(store, slots=algo.slots(1), initial_slots=algo.slots(0))
    figures = check_barrier(store, gens, gens.advance(algo.replace))
    assert figures["generations"] >= 4, figures
    recs = store.records()
    by_gen: dict[int, int] = {}
    for r in recs:
        assert r.barrier_generation is not None and r.algorithm == "pareto-testbed"
        by_gen[r.barrier_generation] = by_gen.get(r.barrier_generation, 0) + 1
        assert (r.barrier_generation == 0) == (not r.parents)
        assert set(r.objectives) == {"val_accuracy", "neg_params"} or r.fitness is None
    assert all(n == 6 for g, n in by_gen.items() if g < figures["generations"]), by_gen
    # two-parent children inherit from both parents, and say how much from each
    both = [r for r in recs if len(r.parents) == 2 and r.inheritance and len(r.inheritance.by_parent) == 2]
    assert both, "no child inherited tensors from two parents"
    for r in both:
        assert set(r.inheritance.by_parent) == set(r.parents)
        assert sum(r.inheritance.by_parent.values()) >= r.inheritance.kept
    store.close()


def test_status_shows_the_open_generation(tmp_path):
    from lse.reports.status import snapshot

    pop = tmp_path / "pop"
    Store(pop).create(ExperimentConfig(population_size=4, steps=10, max_individuals=10,
                                       algorithm={"name": "pareto-testbed"}))
    run_worker(pop, WorkerOptions(threads=1), StandInTrainer(time_scale=0), worker_id="s0",
               handle_signals=False, log_to_file=False)
    st = snapshot(Store(pop).open())
    assert st.algorithm == "pareto-testbed"
    assert st.generation is not None and st.generation.startswith("generation ") and "closed before it" in st.generation


def test_after_a_weight_reset_a_generational_selection_sees_older_epochs_unrated(tmp_path, monkeypatch):
    """Both loops read parents through one reader: after a weight reset (section 5) the fitness
    of an older epoch no longer counts, in generations as in the steady state (the generational
    path used to skip this and selected by stale fitness)."""
    import lse.runners.worker as w
    from lse.store.events import EventLog

    pop = tmp_path / "pop"
    Store(pop).create(ExperimentConfig(population_size=4, steps=10, max_individuals=4,
                                       algorithm={"name": "pareto-testbed"}))
    opts = WorkerOptions(threads=1)
    run_worker(pop, opts, StandInTrainer(time_scale=0), worker_id="g0", handle_signals=False, log_to_file=False)
    store = Store(pop).open()
    before = {e.id for e in store.list_alive()}
    assert len(before) == 4 and all(e.fitness is not None for e in store.list_alive())
    EventLog(store).reset(note="test")

    seen: list[dict] = []

    def spying(config):
        algo = make_algorithm(config)
        select = algo.select

        def spy(view, rng, *, full, ctx=None):
            seen.append({m.id: m.fitness for m in view.members})
            return select(view, rng, full=full, ctx=ctx)

        algo.select = spy
        return algo

    monkeypatch.setattr(w, "make_algorithm", spying)
    cfg = store.config.model_copy(update={"max_individuals": 6})
    store.paths.experiment.write_text(cfg.to_json())
    run_worker(pop, opts, StandInTrainer(time_scale=0), worker_id="g1", handle_signals=False, log_to_file=False)
    assert seen, "the generational worker selected no parents"
    for view in seen:
        stale = {i: f for i, f in view.items() if i in before}
        assert stale and all(f is None for f in stale.values()), stale
