"""Unit tests of the report's arithmetic (lse.reports.curves) on hand-made individuals: no torch, no files."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lse.reports.curves import (
    Individual,
    best_chain_ids,
    best_so_far,
    carry_forward,
    experiment_start,
    from_record,
    lineage,
    majority_vote,
    mutation_stats,
    pick_ancestors,
    progress_curve,
    repeat_band,
    step_interpolate,
    top_by_validation,
)

T0 = 1_700_000_000.0


def ind(id, born_h, val, flops=10.0, parent=None, mutation=None, failed=None, alive=False):
    return Individual(
        id=id,
        parent_id=parent,
        born_at=T0 + born_h * 3600,
        val_accuracy=val,
        flops=flops,
        alive=alive,
        mutation=mutation,
        failed_reason=failed,
    )


POP = [
    ind("c", 2.0, 0.30, flops=30, parent="a", mutation="insert_convolution"),
    ind("a", 0.5, 0.20, flops=10),
    ind("b", 1.0, 0.10, flops=20),
    ind("d", 3.0, None, flops=40, parent="c", mutation="alter_stride", failed="nan loss"),
    ind("e", 4.0, 0.30, flops=50, parent="c", mutation="identity"),  # ties c: c stays best
    ind("f", 5.0, 0.50, flops=60, parent="e", mutation="insert_convolution", alive=True),
]


def test_curve_follows_best_validation_and_reports_its_test_accuracy():
    test = {"a": 0.25, "c": 0.28, "f": 0.45}
    c = progress_curve(POP, test, start=T0)
    assert list(c.hours) == [0.5, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert list(c.flops) == [10, 30, 60, 100, 150, 210]  # cumulative, in birth order
    assert c.best_id == ["a", "a", "c", "c", "c", "f"]
    assert list(c.val) == [0.2, 0.2, 0.3, 0.3, 0.3, 0.5]
    assert list(c.test) == [0.25, 0.25, 0.28, 0.28, 0.28, 0.45]
    assert np.all(np.diff(c.val) >= 0)
    assert c.changes() == [0, 2, 5]
    assert best_chain_ids(POP) == ["a", "c", "f"]


def test_missing_test_accuracy_is_nan_and_the_shown_curve_carries_the_last_known_value():
    c = progress_curve(POP, {"a": 0.25, "c": None}, start=T0)
    assert math.isnan(c.test[2]) and math.isnan(c.test[5])
    assert list(c.test_shown) == [0.25] * 6
    assert list(c.carried) == [False, False, True, True, True, True]


def test_carry_forward_leaves_leading_nans():
    filled, carried = carry_forward(np.array([np.nan, 1.0, np.nan, 2.0]))
    assert math.isnan(filled[0]) and list(filled[1:]) == [1.0, 1.0, 2.0]
    assert list(carried) == [False, False, True, False]


def test_no_fitness_yet_gives_no_best():
    c = progress_curve([ind("x", 1, None, failed="oom")], {}, start=T0)
    assert c.best_id == [None] and math.isnan(c.val[0])
    assert best_so_far([]) == []


def test_experiment_start_ignores_a_creation_time_after_the_first_birth():
    assert experiment_start(POP) == T0 + 0.5 * 3600
    assert experiment_start(POP, created_at=T0) == T0
    assert experiment_start(POP, created_at=T0 + 10 * 3600) == T0 + 0.5 * 3600


def test_step_interpolation_is_previous_value_and_nan_before_the_first_point():
    y = step_interpolate(np.array([0.0, 1.0, 1.5, 2.0, 9.0]), np.array([1.0, 2.0]), np.array([10.0, 20.0]))
    assert math.isnan(y[0]) and list(y[1:]) == [10.0, 10.0, 20.0, 20.0]
    assert np.all(np.isnan(step_interpolate(np.array([1.0]), np.array([]), np.array([]))))


def test_band_is_mean_and_sample_std_of_repeats_on_a_common_grid():
    r1 = progress_curve([ind("a", 1, 0.2), ind("b", 2, 0.4)], {"a": 0.2, "b": 0.4}, start=T0, label="evo")
    r2 = progress_curve([ind("a", 1, 0.3), ind("b", 3, 0.5)], {"a": 0.3, "b": 0.5}, start=T0, label="evo")
    band = repeat_band([r1, r2], axis="hours", points=7)
    assert band.x[-1] == 2.0  # grid ends with the shorter repeat
    assert list(band.x) == pytest.approx(np.linspace(0, 2, 7))
    # x < 1: nobody born yet in either repeat
    assert math.isnan(band.mean[0]) and band.count[0] == 0
    k = int(np.searchsorted(band.x, 1.5))  # both repeats at their first individual
    assert band.mean[k] == pytest.approx(0.25)
    assert band.std[k] == pytest.approx(np.std([0.2, 0.3], ddof=1))
    assert band.upper[k] - band.lower[k] == pytest.approx(4 * band.std[k])
    assert band.mean[-1] == pytest.approx(0.35)  # at 2 h r1 has its 0.4, r2 is still at 0.3


def test_band_of_one_repeat_has_no_sigma_and_flops_grid_is_log_spaced():
    r = progress_curve(POP, {"a": 0.25, "c": 0.28, "f": 0.45}, start=T0)
    band = repeat_band([r], axis="flops", points=5)
    assert band.x[0] == 10 and band.x[-1] == 210
    assert np.allclose(np.diff(np.log(band.x)), np.log(21) / 4)
    assert np.all(np.isnan(band.std)) and np.all(band.count == 1)
    assert np.allclose(band.mean, step_interpolate(band.x, r.flops, r.test_shown))


def test_lineage_runs_from_the_oldest_ancestor_and_survives_cycles_and_gaps():
    assert [i.id for i in lineage(POP, "f")] == ["a", "c", "e", "f"]
    loop = [ind("p", 1, 0.1, parent="q"), ind("q", 2, 0.2, parent="p")]
    assert [i.id for i in lineage(loop, "q")] == ["p", "q"]
    assert [i.id for i in lineage([ind("z", 1, 0.1, parent="gone")], "z")] == ["z"]
    assert lineage(POP, "nobody") == []


def test_pick_ancestors_spreads_along_the_chain_and_ends_with_the_leaf():
    chain = [ind(str(k), k, 0.1) for k in range(10)]
    assert [i.id for i in pick_ancestors(chain, 4)] == ["0", "3", "6", "9"]
    assert [i.id for i in pick_ancestors(chain[:2], 4)] == ["0", "1"]


def test_top_by_validation_skips_failed_and_breaks_ties_by_birth():
    assert [i.id for i in top_by_validation(POP, 3)] == ["f", "c", "e"]


def test_mutation_stats_count_children_better_than_their_parents():
    stats = {s.name: s for s in mutation_stats(POP)}
    assert (stats["insert_convolution"].children, stats["insert_convolution"].improved) == (2, 2)
    assert stats["insert_convolution"].rate == 1.0
    assert (stats["alter_stride"].children, stats["alter_stride"].improved, stats["alter_stride"].failed) == (1, 0, 1)
    assert (stats["identity"].children, stats["identity"].improved) == (1, 0)  # equal is not better


@pytest.mark.parametrize(
    "votes, probs, expected",
    [
        # two voters agree: their label, whatever the probabilities
        ([[1], [1]], [[[0.1, 0.9]], [[0.6, 0.4]]], [1]),
        # two voters disagree: the class with the higher summed softmax wins
        ([[0], [1]], [[[0.55, 0.45]], [[0.2, 0.8]]], [1]),
        ([[0], [1]], [[[0.95, 0.05]], [[0.4, 0.6]]], [0]),
        # three voters: a strict majority wins even against a confident dissenter
        ([[2], [2], [0]], [[[0.3, 0, 0.7]], [[0.4, 0, 0.6]], [[1.0, 0, 0]]], [2]),
    ],
)
def test_majority_vote_with_softmax_tie_break(votes, probs, expected):
    assert list(majority_vote(np.array(votes), np.array(probs))) == expected


def test_majority_vote_tie_break_only_among_tied_classes():
    # three classes, voters say 0 and 1; class 2 has the most summed probability but no vote
    probs = np.array([[[0.4, 0.0, 0.6]], [[0.0, 0.45, 0.55]]])
    assert list(majority_vote(np.array([[0], [1]]), probs)) == [1]


def test_from_record_reads_nested_flops_and_mutation_name():
    rec = {
        "id": "x", "parent_id": "p", "born_at": T0, "val_accuracy": 0.5,
        "flops": {"train_per_batch": 1, "eval_per_batch": 2, "total": 123.0},
        "mutation": {"name": "add_skip", "details": {}}, "failed_reason": None, "killed_at": None,
        "worker": "w1", "params": 7, "generation": 3,
    }
    i = from_record(rec)
    assert (i.flops, i.mutation, i.alive, i.params, i.worker) == (123.0, "add_skip", True, 7, "w1")
    assert from_record({**rec, "killed_at": T0 + 1}).alive is False
    assert from_record(rec, alive=False).alive is False
