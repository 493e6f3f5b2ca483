"""Figure 4's trap is forked at a plateau (issue 31): when its best by validation has not
improved for --plateau-minutes, not at a fixed minute while it still climbs."""

from __future__ import annotations

from _experiment_script import load_script

fig4 = load_script("section5_figure4")


def test_a_trap_is_at_its_plateau_once_its_best_is_old_enough():
    curve = [(1.0, 0.5), (4.0, 0.8), (9.0, 0.7), (12.0, 0.8)]  # a tie later does not renew the best
    assert not fig4.plateaued(curve, now_minute=13.9, minutes=10)
    assert fig4.plateaued(curve, now_minute=14.0, minutes=10)


def test_a_trap_that_still_climbs_or_has_no_scores_is_not_at_a_plateau():
    climbing = [(m, m / 100) for m in range(30)]
    assert not fig4.plateaued(climbing, now_minute=35, minutes=10)
    assert not fig4.plateaued([], now_minute=60, minutes=10)


def test_plateau_minutes_zero_runs_the_whole_trap():
    assert not fig4.plateaued([(1.0, 0.9)], now_minute=500, minutes=0)
