"""The model out, end to end: evolve a few births on a generated image folder and .npz with a
real worker, export best and ensemble to ONNX / TorchScript / .pt2, load each in a Python that
cannot import lse, and compare with the population's model as `lse report` evaluates it."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _reliability_helpers import PYTHON, run_worker_cli
from lse.cli import app
from test_owndata import CLASSES, make_folder, make_npz

#: the loader run in a fresh interpreter: isolated mode (no PYTHONPATH, no cwd, no user site),
#: and the editable install's finder removed, so `import lse` must fail there.
LOADER = textwrap.dedent("""
    import importlib.util, json, sys
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in (getattr(f, "__module__", "") + repr(f)).lower()]
    sys.path[:] = [p for p in sys.path if "editable" not in p.lower()]
    sys.path_importer_cache.clear()
    try:
        import lse
        raise SystemExit("lse is importable: " + lse.__file__)
    except ImportError:
        pass
    import numpy as np
    x = np.load(sys.argv[1])
    out = {}
    for path, fmt in json.loads(sys.argv[2]):
        if fmt == "onnx":
            import onnxruntime as ort
            s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            y = s.run(None, {s.get_inputs()[0].name: x})[0]
            classes = json.loads(s.get_modelmeta().custom_metadata_map["classes"])
        else:
            import torch
            extra = {"classes.json": ""}
            if fmt == "torchscript":
                m = torch.jit.load(path, _extra_files=extra)
                y = m(torch.from_numpy(x).to(torch.uint8)).detach().numpy()  # uint8 in, as documented
            else:
                m = torch.export.load(path, extra_files=extra).module()
                y = m(torch.from_numpy(x)).detach().numpy()
            classes = json.loads(extra["classes.json"])["classes"]
        np.save(path + ".out.npy", y)
        out[path] = classes
    print(json.dumps(out))
""")


def _evolve(tmp: Path, dataset: str, cache: Path) -> Path:
    pop = tmp / f"pop-{dataset.split(':')[0]}"
    res = CliRunner().invoke(app, ["launch", "--pop", str(pop), "--prepare-only", "--dataset", dataset,
                                   "--validation-size", "10", "--population-size", "3", "--steps", "5",
                                   "--max-individuals", "4"], env={"LSE_CACHE": str(cache)})
    assert res.exit_code == 0, res.output
    done = run_worker_cli(pop, env={"LSE_CACHE": str(cache)})
    assert done.returncode == 0, done.stderr[-2000:]
    return pop


@pytest.fixture(scope="module")
def pops(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    cache = tmp / "cache"
    folder = make_folder(tmp / "imgs", n=12)
    npz = make_npz(tmp / "d.npz", n=45, test=False)
    return {"folder": (_evolve(tmp, f"folder:{folder}", cache), folder), "npz": (_evolve(tmp, f"npz:{npz}", cache), npz),
            "tmp": tmp, "cache": cache}


def _reference(pop: Path, which: str, cache: Path, monkeypatch):
    """Test images and the probabilities `lse report`'s Evaluator gives them (mean of the
    members' softmax for the ensemble)."""
    monkeypatch.setenv("LSE_CACHE", str(cache))
    from lse.nn.data import load_dataset
    from lse.reports.models import pick
    from lse.reports.report import Evaluator
    from lse.store.population import Store

    store = Store(pop).open()
    cfg = store.config
    ds = load_dataset(cfg.dataset, cfg.data_dir, validation_size=cfg.validation_size, seed=cfg.seed,
                      image=cfg.image_options(), flip=cfg.flip)
    ev = Evaluator(ds, batch_size=100)
    probs = np.mean([ev.predictions(pop, r)[1] for r in pick(store, which)], axis=0)
    return ds.test_x.numpy().astype(np.float32), probs


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


@pytest.mark.parametrize("kind,jobs", [
    ("folder", [("best", "onnx"), ("best", "torchscript"), ("ensemble", "onnx"), ("ensemble", "torchscript")]),
    ("npz", [("best", "pt2"), ("ensemble", "onnx")]),
])
def test_exports_load_without_lse_and_match_the_population(pops, kind, jobs, monkeypatch):
    pytest.importorskip("onnxruntime")
    pop, _src = pops[kind]
    out = pops["tmp"] / f"out-{kind}"
    files = []
    for which, fmt in jobs:
        path = out / f"{which}.{fmt}"
        res = CliRunner().invoke(app, ["export", which, "--pop", str(pop), "--format", fmt, "--out", str(path)],
                                 env={"LSE_CACHE": str(pops["cache"])})
        assert res.exit_code == 0, res.output
        side = json.loads(Path(str(path) + ".json").read_text())
        assert side["classes"] == list(CLASSES) and side["checked"]["max_abs_logit_difference"] <= side["tolerance"]
        assert len(side["ids"]) == (2 if which == "ensemble" else 1)
        files.append((str(path), fmt, which))
    x, _ = _reference(pop, "best", pops["cache"], monkeypatch)
    np.save(out / "x.npy", x)
    run = subprocess.run([PYTHON, "-I", "-c", LOADER, str(out / "x.npy"), json.dumps([f[:2] for f in files])],
                         capture_output=True, text=True, cwd=pops["tmp"], timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    classes = json.loads(run.stdout.strip().splitlines()[-1])
    for path, fmt, which in files:
        assert classes[path] == list(CLASSES)
        _, expected = _reference(pop, which, pops["cache"], monkeypatch)
        got = _softmax(np.load(path + ".out.npy"))
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=f"{which} {fmt}")


def test_predict_prints_class_names(pops, monkeypatch):
    pop, folder = pops["folder"]
    imgs = [str(folder / "train" / c / "1.png") for c in CLASSES]
    monkeypatch.setenv("LSE_CACHE", str(pops["cache"]))
    res = CliRunner().invoke(app, ["predict", str(pop), *imgs])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 3 and all(any(f": {c} (" in ln for c in CLASSES) for ln in lines)
    res = CliRunner().invoke(app, ["predict", str(pop), *imgs, "--json", "--which", "ensemble"])
    rows = json.loads(res.output)
    assert [r["image"] for r in rows] == imgs and all(set(r["probabilities"]) == set(CLASSES) for r in rows)
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-5 and r["class"] in CLASSES for r in rows)
    # an exported file predicts the same classes
    path = pops["tmp"] / "p.pt"
    assert CliRunner().invoke(app, ["export", "best", "--pop", str(pop), "--format", "torchscript",
                                    "--out", str(path)]).exit_code == 0
    res2 = CliRunner().invoke(app, ["predict", str(path), *imgs, "--json"])
    best = json.loads(CliRunner().invoke(app, ["predict", str(pop), *imgs, "--json"]).output)
    assert [r["class"] for r in json.loads(res2.output)] == [r["class"] for r in best]


def test_lse_load_returns_eval_model_and_preprocessing(pops, monkeypatch):
    import torch

    import lse

    monkeypatch.setenv("LSE_CACHE", str(pops["cache"]))
    pop, _ = pops["npz"]
    model, prep = lse.load(pop, "best")
    assert isinstance(model, torch.nn.Module) and not model.training
    x, expected = _reference(pop, "best", pops["cache"], monkeypatch)
    with torch.no_grad():
        got = torch.softmax(model(prep(torch.from_numpy(x))), dim=1).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_export_bad_requests_write_nothing(pops, tmp_path):
    pop, _ = pops["folder"]
    for args, what in ((["nosuchid"], "match 'nosuchid'"), (["best", "--format", "keras"], "--format 'keras'")):
        res = CliRunner().invoke(app, ["export", *args, "--pop", str(pop), "--out", str(tmp_path / "m.x")])
        assert res.exit_code == 1 and what in res.output, res.output
    assert not list(tmp_path.iterdir())


def test_retrain_keeps_a_final_model_beside_the_population_and_report_shows_it(pops, monkeypatch, tmp_path):
    from lse.reports.report import make_report
    from lse.store.population import Store

    monkeypatch.setenv("LSE_CACHE", str(pops["cache"]))
    pop, _ = pops["npz"]
    before = {r.id for r in Store(pop).open().records()}
    res = CliRunner().invoke(app, ["retrain", "best", "--pop", str(pop), "--steps", "15"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["retrain", "best", "--pop", str(pop), "--steps", "10", "--from-scratch"])
    assert res.exit_code == 0, res.output
    done = sorted((pop / "retrained").iterdir())
    assert [d.name.rsplit("-", 1)[1] for d in done] == ["1", "2"]
    r1, r2 = (json.loads((d / "result.json").read_text()) for d in done)
    assert (r1["from"], r1["steps"], r1["schedule"]) == ("weights", 15, "cosine") and r2["from"] == "scratch"
    assert 0 <= r1["test_accuracy"] <= 1 and 0 <= r1["val_accuracy"] <= 1 and r1["flops"] > 0
    assert {r.id for r in Store(pop).open().records()} == before  # evolution never sees it
    # the retrained weights are what lse.load gives back for retrained:<name>
    import lse

    model, prep = lse.load(pop, f"retrained:{done[0].name}")
    assert not model.training
    summary = make_report([pop], tmp_path / "rep")
    rows = summary["experiments"][0]["retrained"]
    assert [r["name"] for r in rows] == [d.name for d in done] and rows[0]["test_accuracy"] == r1["test_accuracy"]


def test_retrain_needs_one_budget(pops):
    pop, _ = pops["npz"]
    res = CliRunner().invoke(app, ["retrain", "best", "--pop", str(pop)])
    assert res.exit_code == 1 and "--steps N or --minutes M" in res.output
    assert not (pop / "retrained").exists() or all(d.name[0] != "." for d in (pop / "retrained").iterdir())


def test_a_diverged_retraining_starts_again_at_a_lower_learning_rate(pops, monkeypatch, tmp_path):
    """An evolved rate that held for short trainings can diverge over a long one: the retraining
    starts again from the same weights at a quarter of the rate (a real divergence here: 3e5 and
    7.5e4 give a non-finite loss on this population, 1.9e4 does not), and says so in its result."""
    import shutil

    import lse.runners.retrain as retrain_mod

    monkeypatch.setenv("LSE_CACHE", str(pops["cache"]))
    pop = tmp_path / "pop"
    shutil.copytree(pops["npz"][0], pop, ignore=shutil.ignore_patterns("retrained"))
    monkeypatch.setattr(retrain_mod, "_lr", lambda dna, default: 3e5)
    res = CliRunner().invoke(app, ["retrain", "best", "--pop", str(pop), "--steps", "200"])
    assert res.exit_code == 0, res.output
    assert "at learning rate 3e+05; again from the same weights at 7.5e+04" in res.output
    [done] = (pop / "retrained").iterdir()
    r = json.loads((done / "result.json").read_text())
    rates = [d["learning_rate"] for d in r["diverged"]]
    assert rates[0] == 3e5 and r["learning_rate"] == rates[-1] / retrain_mod.LR_CUT and r["steps"] == 200
    assert all(d["reason"].startswith("diverged") for d in r["diverged"])
    # with --minutes (what --finish uses), the steps after a cut are those that fit in the time left
    res = CliRunner().invoke(app, ["retrain", "best", "--pop", str(pop), "--minutes", "0.1"])
    assert res.exit_code == 0, res.output
    [timed] = [d for d in (pop / "retrained").iterdir() if d != done]
    t = json.loads((timed / "result.json").read_text())
    assert [d["learning_rate"] for d in t["diverged"]] == rates and t["learning_rate"] == r["learning_rate"]
    assert t["minutes_asked"] == 0.1 and 1 <= t["steps"] <= t["steps_planned"]
    # a rate that diverges at every cut: a clear error, nothing published
    monkeypatch.setattr(retrain_mod, "_lr", lambda dna, default: 1e9)
    res = CliRunner().invoke(app, ["retrain", "best", "--pop", str(pop), "--steps", "200"])
    assert res.exit_code == 1 and "failed at learning rates 1e+09, 2.5e+08, 6.25e+07, 1.56e+07: diverged" in res.output
    assert sorted(d.name for d in (pop / "retrained").iterdir()) == sorted([done.name, timed.name])
