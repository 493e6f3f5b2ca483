"""`lse report` on small REAL experiments: the worker loop of lse.runners.worker trains real models on a
generated data set (CIFAR-10 format, so that even the initial GAP+FC individual sees colour and
evolution visibly improves), then the report is checked against the records and against test
accuracies and ensemble votes recomputed here from the stored weights."""

from __future__ import annotations

import base64
import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from lse.reports import curves as cv
from lse.nn.build import build_model
from lse.config import ExperimentConfig, WorkerOptions
from lse.nn.data import load_dataset
from lse.core.dna import DNA
from lse.reports.report import make_report
from lse.store.population import PopulationPaths, Store
from lse.nn.synthetic import write_synthetic
from lse.nn.train import evaluate, predict
from lse.runners.worker import run_worker

BIRTHS = 12
PROBS = {  # favour growth so that a dozen births already show progress
    "insert_convolution": 3, "alter_channels": 2, "alter_learning_rate": 1, "identity": 1, "add_skip": 0.5,
    "filter_size": 1, "reset_weights": 0.2, "remove_convolution": 0.5, "alter_stride": 0.5,
    "insert_one_to_one": 0.5, "remove_skip": 0.5,
}


def _experiment(pop: Path, data: Path, seed: int) -> Path:
    cfg = ExperimentConfig(dataset="cifar10", data_dir=str(data), validation_size=200, population_size=4, steps=40,
                           eval_batch_size=500, seed=seed, max_individuals=BIRTHS, mutation_probabilities=PROBS)
    Store(pop).create(cfg)
    # a fixed worker id makes the worker's rng (seeded by experiment seed and worker id) and so
    # the whole run reproducible
    s = run_worker(pop, WorkerOptions(threads=1, device="cpu"), worker_id=f"w{seed}", handle_signals=False,
                   log_to_file=False)
    assert s.births == BIRTHS
    return pop


@pytest.fixture(scope="module")
def experiments(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    data = write_synthetic(root / "data", "cifar10", n_train=700, n_test=300, seed=1)
    pops = [_experiment(root / f"pop {k}", data, seed=k) for k in range(2)]
    # Collect the dead, as workers do every 30 s.  GC keeps the weights of record holders (the
    # best-so-far chain) and of the top-2; delete the kept weights of the first record holder
    # by hand (as an older lse, or a user freeing space, would have) so that the report has a
    # best-so-far individual without weights, whose test accuracy it must show as missing.
    with Store(pops[0]) as st:
        st.open().gc()
    first = cv.best_chain_ids([cv.from_record(r) for r in Store(pops[0]).records()])[0]
    kept = PopulationPaths(pops[0]).history_weights(first)
    assert kept.is_file(), "GC should have kept the weights of a record holder"
    kept.unlink()
    return root, data, pops


@pytest.fixture(scope="module")
def report(experiments):
    from typer.testing import CliRunner

    from lse.cli import app

    root, _data, pops = experiments
    out = root / "out"
    args = ["report", "--out", str(out)]
    for p in pops:
        args += ["--pop", str(p), "--label", "evolution"]
    res = CliRunner().invoke(app, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "test accuracy" in res.output and "report.html" in res.output  # progress bar + summary
    return out, json.loads((out / "summary.json").read_text())


def _dataset(data: Path, seed: int):
    return load_dataset("cifar10", data, validation_size=200, seed=seed)


def _model(pop: Path, rec, ds):
    state = Store(pop).load_weights(rec.id)
    if state is None:
        return None
    model = build_model(DNA.model_validate(rec.dna), ds.input_shape, ds.num_classes)
    model.load_state_dict(state)
    return model.eval()


def test_report_writes_every_file(report):
    out, summary = report
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "progress.png" in pngs
    assert sum(n.startswith("individuals-") for n in pngs) == 2
    for p in out.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    images = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(images) == len(pngs)  # every figure embedded ...
    assert all(s.startswith("data:image/png;base64,") for s in images)  # ... and self-contained
    assert base64.b64decode(images[0].split(",", 1)[1])[:4] == b"\x89PNG"
    assert "majority vote" in page and "<table>" in page
    rows = list(csv.DictReader(open(out / "individuals.csv")))
    assert len(rows) == 2 * BIRTHS
    assert len(json.loads((out / "individuals.json").read_text())) == 2 * BIRTHS
    assert len(summary["experiments"]) == 2


def test_curve_matches_records_and_recomputed_test_accuracy(experiments, report):
    _root, data, pops = experiments
    out, summary = report
    rows = json.loads((out / "individuals.json").read_text())
    for k, pop in enumerate(pops):
        recs = Store(pop).records()
        inds = [cv.from_record(r) for r in recs]
        exp = summary["experiments"][k]
        curve = cv.progress_curve(inds, {}, label="x")
        # validation accuracy of the best-so-far never decreases ...
        assert np.all(np.diff(curve.val[~np.isnan(curve.val)]) >= 0)
        # ... and is, at each birth, the best validation accuracy among those born so far
        for j, ind in enumerate(cv.birth_order(inds)):
            born = [i.val_accuracy for i in inds if i.born_at <= ind.born_at and i.has_fitness]
            assert curve.val[j] == (max(born) if born else curve.val[j])
        assert curve.flops[-1] == pytest.approx(sum(r.flops.total for r in recs))
        assert exp["experiment_flops"] == pytest.approx(curve.flops[-1])
        # the report's per-individual test accuracies: recomputed here from the stored weights
        ds = _dataset(data, seed=k)
        mine = {r["id"]: r for r in rows if r["pop"] == str(pop)}
        chain = cv.best_chain_ids(inds)
        assert {i for i, r in mine.items() if r["best_so_far"]} == set(chain)
        missing = 0
        for rec in recs:
            if rec.id not in chain:
                continue
            model = _model(pop, rec, ds)
            if model is None:
                missing += 1
                assert mine[rec.id]["test_accuracy"] is None
                continue
            assert mine[rec.id]["test_accuracy"] == pytest.approx(evaluate(model, ds.test_x, ds.test_y))
            cached = json.loads(PopulationPaths(pop).eval_record(rec.id).read_text())
            assert cached["test_accuracy"] == mine[rec.id]["test_accuracy"]
        best = max((i for i in inds if i.has_fitness), key=lambda i: i.val_accuracy)
        assert exp["best"]["id"] == best.id and exp["best"]["val_accuracy"] == best.val_accuracy
        assert exp["test_missing"] == sorted(i for i in chain if mine[i]["test_accuracy"] is None)
        if k == 0:
            assert missing == len(exp["test_missing"])


def test_missing_test_accuracy_is_carried_and_said(experiments, report):
    """In the collected population the killed best-so-far individuals have no weights."""
    out, summary = report
    exp = summary["experiments"][0]
    assert exp["test_missing"], "the fixed seeds should kill and collect an early record holder"
    page = (out / "report.html").read_text()
    assert "garbage-collected" in page and "missing" in page
    rows = [r for r in json.loads((out / "individuals.json").read_text()) if r["id"] in exp["test_missing"]]
    assert all(r["test_accuracy"] is None for r in rows)


def test_ensemble_accuracy_is_the_vote_of_real_predictions(experiments, report):
    _root, data, pops = experiments
    _out, summary = report
    for k, pop in enumerate(pops):
        ens = summary["experiments"][k]["ensemble"]
        recs = {r.id: r for r in Store(pop).records()}
        ranked = sorted((r for r in recs.values() if r.val_accuracy is not None and r.failed_reason is None),
                        key=lambda r: (-r.val_accuracy, r.born_at, r.id))
        ds = _dataset(data, seed=k)
        members, labels, probs = [], [], []
        for r in ranked:
            model = _model(pop, r, ds)
            if model is None:
                continue
            members.append(r.id)
            labels.append(predict(model, ds.test_x).numpy())
            with torch.no_grad():
                scale, shift = ds.normalization()
                probs.append(torch.softmax(model(ds.test_x.float() * scale + shift), 1).numpy())
            if len(members) == 2:
                break
        assert ens["members"] == members
        a, b = labels
        p = probs[0] + probs[1]
        n = np.arange(len(a))
        vote = np.where(a == b, a, np.where(p[n, a] >= p[n, b], a, b))  # tie: higher summed softmax
        y = ds.test_y.numpy()
        assert ens["test_accuracy"] == pytest.approx(float(np.mean(vote == y)))
        assert ens["member_test_accuracy"][members[0]] == pytest.approx(float(np.mean(a == y)))
        assert ens["disagreements"] == int(np.sum(a != b))


def test_second_report_reads_the_cache_and_agrees(experiments, report, tmp_path, monkeypatch):
    _root, _data, pops = experiments
    _out, first = report
    import lse.nn.train

    def boom(*a, **k):
        raise AssertionError("test accuracy recomputed despite the cache")

    monkeypatch.setattr(lse.nn.train, "evaluate", boom)
    second = make_report([pops[1]], tmp_path / "again")
    b1 = first["experiments"][1]["best"]
    b2 = second["experiments"][0]["best"]
    assert b2["id"] == b1["id"] and b2["test_accuracy"] == b1["test_accuracy"]
    assert (tmp_path / "again" / "progress.png").is_file()


def test_a_population_that_cannot_be_written_still_gets_its_report(experiments, report, tmp_path, monkeypatch,
                                                                    caplog):
    """The test-accuracy cache is a convenience: where it cannot be written (a read-only
    population, a full disk) the report computes, warns once and goes on."""
    import lse.reports.report as rp

    _root, _data, pops = experiments
    blocker = tmp_path / "a file, not a folder"
    blocker.write_text("")
    monkeypatch.setattr(rp, "_eval_path", lambda pop, i: blocker / f"{i}.json")
    s = make_report([pops[1]], tmp_path / "uncached")
    assert s["experiments"][0]["best"]["test_accuracy"] == report[1]["experiments"][1]["best"]["test_accuracy"]
    assert caplog.text.count("not cached") == 1
    assert (tmp_path / "uncached" / "progress.png").is_file()


def test_json_side_files_are_written_whole_or_not_at_all(tmp_path):
    from lse.errors import StoreError
    from lse.store.atomic import write_json_atomic

    write_json_atomic(tmp_path / "new" / "a.json", {"x": 1}, fix="-")
    assert json.loads((tmp_path / "new" / "a.json").read_text()) == {"x": 1}
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot write .*: free space"):
        write_json_atomic(blocker / "b.json", {"x": 1}, fix="free space")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "new"]
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["a.json"]


def test_bad_arguments_are_typed_errors(tmp_path):
    from lse.errors import ConfigError, StoreError

    with pytest.raises(ConfigError, match="one --label per --pop"):
        make_report([tmp_path, tmp_path], tmp_path / "o", labels=["a"])
    with pytest.raises(StoreError):
        make_report([tmp_path / "nope"], tmp_path / "o")


def test_until_flops_reads_each_experiment_as_if_it_had_stopped_at_that_compute(experiments, tmp_path):
    from lse.reports.report import load_experiment, within_flops

    _root, _data, pops = experiments
    full = load_experiment(pops[1])
    spent = np.cumsum([i.flops for i in full.inds])
    budget = float(spent[len(spent) // 2])  # exactly the compute after the middle individual
    cut = load_experiment(pops[1], until_flops=budget)
    assert len(cut.inds) == len(full.inds) // 2 + 1 and cut.cut == len(full.inds) - len(cut.inds)
    assert [i.id for i in cut.inds] == [i.id for i in full.inds[: len(cut.inds)]]  # the first born
    assert sum(i.flops for i in cut.inds) <= budget
    assert within_flops(full.inds, None) == len(full.inds) and within_flops(full.inds, 1.0) == 0
    summary = make_report([pops[1]], tmp_path / "out", until_flops=budget)["experiments"][0]
    assert summary["individuals"] == len(cut.inds) and summary["individuals_cut"] == cut.cut
    assert summary["until_flops"] == budget and summary["experiment_flops"] <= budget
    # the best is the best of those born within the budget
    assert summary["best"]["id"] in {i.id for i in cut.inds}


def test_until_flops_must_be_a_positive_number(experiments, tmp_path):
    from lse.errors import ConfigError

    with pytest.raises(ConfigError, match="until-flops"):
        make_report([experiments[2][0]], tmp_path / "out", until_flops=-1.0)
