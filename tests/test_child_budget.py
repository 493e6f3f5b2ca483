"""A compute budget per child (issue 30, lse.core.budget): a network ten times as expensive
trains ten times fewer steps, one the budget cannot train even min_child_steps is refused
untrained, and the worker goes on; without a budget every child trains its steps."""

from __future__ import annotations

import subprocess
import sys


from lse.core.budget import steps_within
from lse.nn.genomes import flops

from _reliability_helpers import REPO, check_history, make_pop, run_worker_cli, write_data


def test_steps_follow_the_budget():
    assert steps_within(500, 1e9, None, 50) == 500  # no budget: the paper
    assert steps_within(500, 1e9, 1e12, 50) == 500  # affordable
    assert steps_within(500, 1e10, 1e12, 50) == 100  # 10x the cost: 10x fewer steps
    assert steps_within(500, 1e11, 1e12, 50) is None  # 10 steps < 50: refused
    assert steps_within(30, 1e11, 1e12, 50) is None  # 10 affordable < the 30 asked, under the minimum
    assert steps_within(8, 1e11, 1e12, 50) == 8  # asked for fewer than the minimum, and affordable
    assert steps_within(0, 1e12, 1.0, 50) == 0  # evaluated only: never refused


def test_a_worker_trains_each_child_within_its_budget_and_refuses_the_unaffordable(tmp_path):
    from lse.core.dna import initial_dna

    data = write_data(tmp_path / "data")
    pop = tmp_path / "pop"
    trivial = flops("dna", initial_dna(0.1, input_channels=1), (1, 12, 12), 10, 20).train_per_batch
    # the trivial model affords its 40 steps; a 3x3 convolution at 12x12 costs 34x (stride 2) or
    # 131x (stride 1) as much per step: 11 steps, or refused (under 5)
    budget = 400 * trivial
    make_pop(pop, data, population_size=3, max_individuals=12, steps=40, min_child_steps=5, child_flops=budget,
             mutation_probabilities={"insert_convolution": 1.0})
    r = run_worker_cli(pop, "--worker-id", "budget-w", timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    for rec in check_history(pop):
        per_step = flops("dna", rec.dna, (1, 12, 12), 10, 20).train_per_batch
        if rec.failed_reason:
            assert "over the per-child compute budget" in rec.failed_reason and 5 * per_step > budget
            # the record says what the refused network would have cost per step, and that it spent nothing
            assert rec.flops.train_per_batch == per_step and rec.flops.total == 0 and rec.steps == 0
        else:
            assert rec.steps * per_step <= budget
            assert rec.steps == min(40, int(budget // per_step))
    children = [r for r in check_history(pop) if r.parents]
    assert children and all(r.failed_reason or 0 < r.steps < 40 for r in children)  # each costs more than the trivial


def test_a_non_positive_budget_is_refused_with_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "lse.launch", "--pop", str(tmp_path / "p"), "--child-flops", "0",
                        "--prepare-only"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode != 0 and "child_flops" in (r.stderr + r.stdout)
    assert "Traceback" not in r.stderr


def test_an_initial_network_over_the_budget_stops_the_worker_with_one_line(tmp_path):
    """Every initial individual would be refused: the worker says what to change and ends,
    rather than publish dead records until --max-hours or a full disk."""
    from lse.core.dna import initial_dna

    data = write_data(tmp_path / "data")
    pop = tmp_path / "pop"
    trivial = flops("dna", initial_dna(0.1, input_channels=1), (1, 12, 12), 10, 20).train_per_batch
    make_pop(pop, data, population_size=3, steps=40, min_child_steps=5, child_flops=2 * trivial)
    r = run_worker_cli(pop, "--worker-id", "w", timeout=120)
    assert r.returncode != 0
    assert "the initial network is over the per-child compute budget" in r.stderr and "--child-flops" in r.stderr
    assert "Traceback" not in r.stderr
    assert check_history(pop) == []  # nothing published
