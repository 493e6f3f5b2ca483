"""docs/search-robust (issue 30) is generated from its committed runs: the page's tables are what
experiments/search_robust.py makes of runs/*.json, so a hand-edited number cannot survive, and
every run is the configuration the page names for the hour it names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from _experiment_script import load_script

DOC = Path(__file__).resolve().parent.parent / "docs" / "search-robust"


def test_the_pages_tables_are_regenerated_from_the_committed_runs():
    mod = load_script("search_robust")
    runs = mod.study.load_runs(DOC)
    assert runs
    assert f"{mod.BEGIN}\n{mod.tables(runs)}{mod.END}" in (DOC / "README.md").read_text()


def _prepared(tmp_path, name: str, *options: str) -> dict:
    """The configuration `lse.launch --prepare-only OPTIONS --max-hours 1` saves today, in the
    fields a run's JSON records (its data set aside: a small generated one stands in)."""
    from lse.nn.synthetic import write_synthetic
    from lse.store import Store

    data, pop = tmp_path / f"{name}-data", tmp_path / name
    write_synthetic(data, "idx", n_train=100, n_test=20)
    r = subprocess.run([sys.executable, "-m", "lse.launch", "--pop", str(pop), "--data-dir", str(data),
                        "--validation-size", "10", "--prepare-only", "--max-hours", "1", *options],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return Store(pop).open().config.model_dump(mode="json")


def test_every_run_is_the_named_configuration_for_the_full_hour(tmp_path):
    """Each run recorded the configuration its name stands for: what the configuration's options
    give today (a preset that changes under it would show here), for the full hour."""
    mod = load_script("search_robust")
    today = {name: _prepared(tmp_path, name, *options(60)) for name, options in mod.CONFIGS.items()}
    for name, run in mod.study.load_runs(DOC).items():
        assert name == mod.key(run["task"])
        if run["task"]["kind"] == "evolution":
            assert run["minutes"] == 60 and run["config"]["max_hours"] == 1
            assert run["config"]["seed"] == run["task"]["seed"]
            expected = today[run["task"]["config"]]
            assert {k: v for k, v in run["config"].items() if k != "seed"} == {k: expected[k] for k in run["config"] if k != "seed"}, name
            # the configuration's own bound: no child trained past what its budget allows here
            if run["config"]["child_flops"]:
                assert run["longest_child_seconds"] < 300
            costs = run.get("costs")  # absent where the population was gone before costs were read
            if costs:
                # every refused child is over the floor's cap; under the floor, no trained child is
                assert costs["over_floor_cap"] >= run["refused_by_budget"]
                if run["config"]["min_child_steps"] == mod.FLOOR_STEPS:
                    assert costs["max_flops_per_batch"] <= costs["floor_cap_flops_per_batch"]
                    assert costs["over_floor_cap"] == run["refused_by_budget"]


def test_every_configuration_is_options_lse_launch_accepts(tmp_path):
    """A configuration is run hours after it is written: a misspelt option or an invalid value
    must fail here, not at the start of a study (a Slurm dry run validates and writes nothing)."""
    mod = load_script("search_robust")
    for name, options in mod.CONFIGS.items():
        r = subprocess.run([sys.executable, "-m", "lse.launch", "--pop", str(tmp_path / name), "--slurm", "--workers",
                            "2", "--dry-run", "--max-hours", "1", "--seed", "0", *options(60)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{name}: {r.stderr}"
        assert not (tmp_path / name).exists()


def test_the_readmes_one_hour_command_is_the_configuration_that_passed(tmp_path):
    """`--preset hour --finish 10` (README, "What to expect") is `floor`, the configuration the
    page's five seeds measured, in every field a run records and in the search's own."""
    mod = load_script("search_robust")
    shipped = _prepared(tmp_path, "shipped", "--preset", "hour", "--finish", "10")
    floor = _prepared(tmp_path, "floor", *mod.CONFIGS["floor"](60))
    assert {k: v for k, v in shipped.items() if k != "data_dir"} == {k: v for k, v in floor.items() if k != "data_dir"}
    assert "--preset hour --finish 10" in (DOC.parent.parent / "README.md").read_text()
