"""The hand-designed anchor (`lse reference`): trained for real on a generated data set through the
experiment's split and trainer, its curve written whole after every point, read back by the report
(and hostile files in reference/ skipped), drawn and summarised beside the evolution's curve."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lse.cli import app
from lse.config import ExperimentConfig
from lse.core.reference import ReferenceCurve
from lse.errors import ConfigError
from lse.nn.flops import measure_flops
from lse.nn.reference import ReferenceCNN
from lse.nn.synthetic import write_synthetic
from lse.reports import curves as cv
from lse.runners.reference import run_reference
from lse.store.population import PopulationPaths, Store
from lse.store.references import read_references, write_reference


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("refdata"), "idx", n_train=600, n_test=200, seed=3)


def _pop(path, data, **kw):
    cfg = ExperimentConfig(dataset="fashion-mnist", data_dir=str(data), validation_size=100, eval_batch_size=40,
                           batch_size=16, population_size=3, steps=5, **kw)
    Store(path).create(cfg)
    return path


def test_the_reference_cnn_is_the_textbook_net():
    m = ReferenceCNN((1, 28, 28), 10)
    assert sum(p.numel() for p in m.parameters()) == 857_738  # the count in lse/nn/reference.py's docstring
    assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert ReferenceCNN((3, 32, 32), 100)(torch.zeros(1, 3, 32, 32)).shape == (1, 100)
    with pytest.raises(ValueError, match="at least 4x4"):
        ReferenceCNN((1, 3, 3), 10)


def test_a_reference_run_records_its_curve(tmp_path, data):
    pop = _pop(tmp_path / "pop", data)
    lines: list[str] = []
    curve = run_reference(pop, minutes=0.04, threads=1, points=4, echo=lines.append)
    on_disk = read_references(pop)
    assert on_disk == [curve] and curve.done and curve.name == "textbook-cnn"
    pts = curve.points
    # at least two points, unless one chunk of training outlasted the whole budget (a stalled machine)
    assert (len(pts) >= 2 or pts[0].seconds >= 0.04 * 60) and len(lines) == 1 + len(pts)
    assert pts[-1].seconds >= 0.04 * 60  # trained for its whole budget
    for a, b in zip(pts, pts[1:]):
        assert b.seconds > a.seconds and b.steps > a.steps and b.flops > a.flops
    # FLOPs counted as the experiment counts its own: F_t per step plus F_v per validation batch
    with torch.device("meta"):
        ghost = ReferenceCNN((1, 28, 28), 10)
    f_t, f_v = measure_flops(ghost, (1, 28, 28), 10, 16, 40, device="meta")
    val_batches = -(-100 // 40)
    assert pts[-1].flops == pytest.approx(pts[-1].steps * f_t + len(pts) * val_batches * f_v)
    assert all(0 <= p.val_accuracy <= 1 and 0 <= p.test_accuracy <= 1 for p in pts)
    assert curve.params == 857_738 and curve.batch_size == 16 and curve.threads == 1


def test_the_report_draws_and_summarises_the_anchor(tmp_path, data):
    from lse.reports.report import make_report

    pop = _pop(tmp_path / "pop", data)
    ref = run_reference(pop, minutes=0.02, threads=1, points=2, name="cnn-a", echo=lambda s: None)
    summary = make_report([pop], tmp_path / "out")
    (got,) = summary["experiments"][0]["references"]
    assert got["name"] == "cnn-a" and got["test_accuracy"] == ref.final().test_accuracy and got["done"]
    # no births: the experiment's wall time is 0, before the anchor's first point
    assert got["test_at_experiment_wall_time"] is None and not got["ended_before"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "hand-designed anchor" in html and "cnn-a" in html


def test_anchor_curve_is_a_step_function_of_its_points():
    ref = {"name": "r", "points": [
        {"seconds": 360, "steps": 10, "flops": 1e9, "val_accuracy": 0.5, "test_accuracy": 0.4},
        {"seconds": 720, "steps": 20, "flops": 2e9, "val_accuracy": 0.7, "test_accuracy": 0.6}]}
    a = cv.anchor_curve(ref)
    np.testing.assert_allclose(a.hours, [0.1, 0.2])
    assert np.isnan(a.test_at(0.05)) and a.test_at(0.1) == 0.4 and a.test_at(0.15) == 0.4 and a.test_at(5) == 0.6


def test_bad_options_are_one_line_errors_and_write_nothing(tmp_path, data):
    pop = _pop(tmp_path / "pop", data)
    for kw, match in [({"minutes": 0}, "--minutes must be positive"), ({"minutes": 1, "name": "../x"}, "not a file name"),
                      ({"minutes": 1, "points": 1}, "--points"), ({"minutes": 1, "learning_rate": -1}, "learning-rate"),
                      ({}, "no births yet")]:
        with pytest.raises(ConfigError, match=match):
            run_reference(pop, threads=1, echo=lambda s: None, **kw)
    assert not PopulationPaths(pop).reference.exists()
    res = CliRunner().invoke(app, ["reference", "--pop", str(tmp_path / "nowhere"), "--minutes", "1"])
    assert res.exit_code == 1 and res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1


def test_hostile_files_in_reference_are_skipped(tmp_path, data):
    pop = _pop(tmp_path / "pop", data)
    paths = PopulationPaths(pop)
    good = ReferenceCurve(name="good", architecture="a", params=1, learning_rate=0.1, batch_size=1, seed=0, threads=1,
                          device="cpu", host="h", budget_seconds=1, started_at=0, done=True)
    write_reference(paths.reference_curve("good"), good)
    d = paths.reference
    (d / "garbage.json").write_bytes(b"\x00{not json")
    (d / "renamed.json").write_text(json.dumps(good.model_dump(mode="json")))  # name is not its file's
    (d / "extra.json").write_text(json.dumps({**good.model_dump(mode="json"), "name": "extra", "evil": 1}))
    (d / "big.json").write_bytes(b" " * (5 << 20))
    os.mkfifo(d / "fifo.json")  # would block a plain open() forever
    os.symlink("/dev/zero", d / "zero.json")
    (d / "dir.json").mkdir()
    assert read_references(pop) == [good]
    assert read_references(tmp_path / "no-such-pop") == []


def test_a_reference_folder_does_not_disturb_the_workers(tmp_path, data):
    """Workers never read reference/: an experiment with an anchor (even a hostile one) runs on."""
    from lse.config import WorkerOptions
    from lse.runners.worker import run_worker

    pop = _pop(tmp_path / "pop", data, max_individuals=4)
    paths = PopulationPaths(pop)
    paths.reference.mkdir()
    (paths.reference / "x.json").write_text("{")
    s = run_worker(pop, WorkerOptions(threads=1, device="cpu"), worker_id="w0", handle_signals=False,
                   log_to_file=False)
    assert s.births == 4 and (paths.reference / "x.json").read_text() == "{"


def test_the_default_budget_is_the_reports_wall_time(tmp_path, data):
    """Without --minutes the anchor trains for the wall time `lse report` shows for the experiment."""
    from lse.config import WorkerOptions
    from lse.reports.report import load_experiment, summarize
    from lse.runners.reference import default_budget_seconds
    from lse.runners.worker import run_worker

    pop = _pop(tmp_path / "pop", data, max_individuals=3)
    run_worker(pop, WorkerOptions(threads=1, device="cpu"), worker_id="w0", handle_signals=False, log_to_file=False)
    wall_hours = summarize(load_experiment(pop), 10, None)["wall_hours"]
    assert wall_hours > 0
    assert default_budget_seconds(Store(pop).open()) == pytest.approx(wall_hours * 3600)
