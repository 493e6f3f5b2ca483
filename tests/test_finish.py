"""--finish: the last minutes of --max-hours retrain the best by validation as the final model,
inside the hours (issue 30).  Evolution stops that much earlier; the local launcher (or the
Slurm finishing job, or `lse finish`) retrains; what evolution published is never touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lse.config import ExperimentConfig
from lse.errors import ConfigError
from lse.nn.synthetic import write_synthetic
from lse.runners.launch import LaunchOptions, finish, finished_line, prepare_experiment
from lse.runners.slurm import SlurmOptions, render_finish
from lse.runners.stops import Stopper
from lse.store import Store

quiet = lambda s: None  # noqa: E731


def _age(pop: Path, seconds: float) -> Store:
    """The population as if created ``seconds`` ago (the experiment clock is experiment.json's mtime)."""
    store = Store(pop).open()
    t = time.time() - seconds
    os.utime(store.paths.experiment, (t, t))
    return store


def test_finish_needs_hours_and_leaves_time_to_evolve():
    cfg = ExperimentConfig.parse({"max_hours": 1.0, "finish_minutes": 12})
    assert cfg.evolve_hours == pytest.approx(0.8)
    assert ExperimentConfig.parse({"max_hours": 1.0}).evolve_hours == 1.0
    with pytest.raises(ConfigError, match="needs max_hours"):
        ExperimentConfig.parse({"finish_minutes": 5})
    with pytest.raises(ConfigError, match="leaves no time to evolve"):
        ExperimentConfig.parse({"max_hours": 0.1, "finish_minutes": 6})


def test_workers_stop_evolving_when_the_finish_begins(tmp_path):
    pop = tmp_path / "pop"
    prepare_experiment(pop, {"max_hours": 0.05, "finish_minutes": 1.0}, echo=quiet, check_data=False)  # 3 min
    store = _age(pop, 100)  # evolution ends at 120 s
    stopper = Stopper(store)
    stopper.check(store.config, set(), lambda b: 0.0)  # 100 s: evolving
    store = _age(pop, 130)
    stopper = Stopper(store)
    with pytest.raises(Exception, match="evolution's time is up"):
        stopper.check(store.config, set(), lambda b: 0.0)
    line = finished_line(store)
    assert line and "its evolution ended" in line and "lse retrain" in line, line
    from lse.reports.status import snapshot

    stops = {c.name: c for c in snapshot(store).stops}
    assert stops["evolution (--finish)"].reached and not stops["hours"].reached
    assert stops["evolution (--finish)"].limit == pytest.approx(0.05 - 1 / 60)
    from rich.console import Console

    from lse.reports.status import render

    console = Console(width=120, record=True)
    console.print(render(snapshot(store)))
    row = next(line for line in console.export_text().splitlines() if "evolution (--finish)" in line)
    assert "2.0 min" in row and "reached" in row, row  # in minutes like the hours row, not 0.0333


def test_finish_runs_only_when_evolution_ran_out_of_time(tmp_path):
    opts = LaunchOptions.parse({"workers": 1, "device": "cpu", "threads": 1})
    plain = tmp_path / "plain"
    prepare_experiment(plain, {"max_hours": 0.05}, echo=quiet, check_data=False)
    assert finish(plain, opts, echo=quiet) is None  # no --finish
    pop = tmp_path / "pop"
    prepare_experiment(pop, {"max_hours": 0.05, "finish_minutes": 1.0}, echo=quiet, check_data=False)
    _age(pop, 10)
    assert finish(pop, opts, echo=quiet) is None  # evolution is not over
    _age(pop, 200)
    assert finish(pop, opts, echo=quiet) is None  # the hours are spent: too late
    _age(pop, 150)
    msgs: list[str] = []
    assert finish(pop, opts, echo=msgs.append) is None and any("nothing to retrain" in m for m in msgs)  # empty
    Store(pop).open().request_stop("test")
    assert finish(pop, opts, echo=quiet) is None  # stopped by hand: no finish


def test_the_slurm_finishing_job_waits_for_the_array(tmp_path):
    s = render_finish(options=SlurmOptions(workers=4, time="1:00:00", cpus_per_task=2), pop_dir="/shared/my pop",
                      log_dir="/shared/my pop/logs", python="/venv/bin/python", array_job="1234", device="cpu")
    lines = s.splitlines()
    assert "#SBATCH --dependency=afterany:1234" in lines and "#SBATCH --cpus-per-task=2" in lines
    assert "#SBATCH --time=1:00:00" in lines and "#SBATCH --array" not in s
    assert lines[-1] == "exec /venv/bin/python -m lse.cli finish --pop '/shared/my pop' --device cpu"
    r = subprocess.run([sys.executable, "-m", "lse.launch", "--pop", str(tmp_path / "p"), "--slurm", "--workers", "2",
                        "--max-hours", "1", "--finish", "10", "--dry-run"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "#SBATCH --array=0-1" in r.stdout and "--dependency=afterany:ARRAY_JOB_ID" in r.stdout
    bad = subprocess.run([sys.executable, "-m", "lse.launch", "--pop", str(tmp_path / "q"), "--finish", "10"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "needs max_hours" in bad.stderr and not (tmp_path / "q").exists()


def test_a_launch_with_finish_ends_with_a_final_model_inside_its_hours(tmp_path):
    data = write_synthetic(tmp_path / "data", fmt="cifar10", n_train=1000, n_test=200)
    pop = tmp_path / "pop"
    hours, fin = 0.011, 0.3  # 39.6 s: evolve for 21.6 s, then finish for 18 s
    cmd = [sys.executable, "-m", "lse.launch", "--pop", str(pop), "--data-dir", str(data), "--dataset", "cifar10",
           "--validation-size", "200", "--threads", "1", "--no-progress", "--workers", "1", "--population-size", "2",
           "--steps", "20", "--max-hours", str(hours), "--finish", str(fin)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "finish: retraining the best" in r.stdout and "final model:" in r.stdout, r.stdout
    store = Store(pop).open()
    [folder] = (pop / "retrained").iterdir()
    result = json.loads((folder / "result.json").read_text())
    best = max((rec for rec in store.records() if rec.val_accuracy is not None), key=lambda rec: rec.val_accuracy)
    assert result["id"] == best.id and result["steps"] >= 1 and result["test_accuracy"] is not None
    created = store.paths.experiment.stat().st_mtime
    # evolution published nothing after its time was up (a child in training then is discarded)
    last_birth = max(rec.born_at for rec in store.records())
    assert last_birth <= created + (hours * 60 - fin) * 60 + 5
    # the final model is ready within the hours (a few seconds for loading data and the test pass)
    assert result["finished_at"] <= created + hours * 3600 + 10, result["finished_at"] - created
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)  # a relaunch: finished, no new finish
    assert again.returncode == 0 and "nothing to do" in again.stdout and "finish: retraining" not in again.stdout
    assert len(list((pop / "retrained").iterdir())) == 1
