"""Smoke test of `lse bench`: it runs offline end to end and prints its table.  No timing is
asserted (STYLE.md 12: benchmarks are programs, not tests)."""

from __future__ import annotations

from lse.runners.bench import canonical_dnas, format_table, run_bench


def test_canonical_dnas_have_the_advertised_depths():
    d = canonical_dnas(1)
    assert [len(d[k].conv_edges()) for k in ("initial", "3-conv", "10-conv+skips")] == [0, 3, 10]
    assert len(d["10-conv+skips"].skips()) == 3


def test_bench_runs_and_prints_a_table():
    rows = run_bench(steps=3, repeats=1, only=["initial", "3-conv"], synthetic_size=1200, validation_size=200)
    assert [r.name for r in rows] == ["initial", "3-conv"]
    for r in rows:
        assert r.minimal_steps_s > 0 and r.trainer_steps_s > 0 and r.overhead_ms["total"] > 0
    table = format_table(rows)
    assert "3-conv" in table and "ratio" in table
