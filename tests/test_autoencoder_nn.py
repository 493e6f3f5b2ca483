"""Seed 000's torch side: the mirrored decoder rebuilds the input's exact shape for any valid
genome, inheritance covers encoder and decoder by layer id, the worker loop runs the
'autoencoder' algorithm on the real store, the encoded data set keeps its split and is read by
the unchanged loader, hostile encoded folders give one-line errors, and the composed model on
raw test images agrees with the classifier on the stored codes."""

from __future__ import annotations

import json
import random
import shutil

import pytest
import torch

from lse.core.autoencoder import AutoencoderGenome, code_shape, initial_autoencoder, mutate
from lse.core.provenance import Provenance
from lse.errors import DataError
from lse.nn.autoencoder import Autoencoder, autoencoder_flops, measure
from lse.nn.inherit import inherit


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 12, 12)])
def test_mirrored_decoder_restores_the_exact_input_shape(shape):
    rng = random.Random(sum(shape))
    g = initial_autoencoder(shape)
    for _ in range(40):
        g, _ = mutate(g, rng)
        m = Autoencoder(g).eval()
        x = torch.randn(2, *shape)
        with torch.no_grad():
            z = m.encode(x)
            assert tuple(z.shape[1:]) == code_shape(g)
            assert m(x).shape == x.shape
    train, ev, params = autoencoder_flops(g, 4, 4)
    assert train > ev > 0 and params > 0


def test_inheritance_covers_encoder_and_decoder_except_the_changed_layer():
    g = initial_autoencoder((1, 28, 28))
    parent = Autoencoder(g)
    child_g, rec = mutate(g, random.Random(0), {"insert_convolution": 1.0})
    child = Autoencoder(child_g)
    blocked = tuple(p for lid in rec.changed_edges for p in (f"encoder.{lid}.", f"decoder.{lid}."))
    report = inherit(child, {"p": parent.state_dict()}, Provenance(default="p", blocked=blocked))
    kept = set(report.kept_names)
    assert report.kept > 0 and any(n.startswith("decoder.") for n in kept) and any(n.startswith("encoder.") for n in kept)
    for name, t in child.state_dict().items():
        if name.startswith(("encoder.L0.", "decoder.L0.")) and name in parent.state_dict() \
                and parent.state_dict()[name].shape == t.shape:
            assert torch.equal(t, parent.state_dict()[name]), name
    assert not any(n.startswith(blocked) for n in kept)


def _synthetic(tmp_path):
    from lse.nn.synthetic import write_synthetic

    return write_synthetic(tmp_path / "data", fmt="idx", n_train=300, n_test=60, image_shape=(12, 12), seed=3)


def _run_stage1(tmp_path, data):
    from lse.config import ExperimentConfig, WorkerOptions
    from lse.runners.worker import run_worker
    from lse.store import Store

    pop = tmp_path / "ae"
    Store(pop).create(ExperimentConfig(dataset="fashion-mnist", data_dir=str(data), validation_size=50,
                                       population_size=3, steps=5, max_individuals=6,
                                       algorithm={"name": "autoencoder"}))
    summary = run_worker(pop, WorkerOptions(threads=1), handle_signals=False)
    assert summary.births == 6
    return pop


def test_stage1_on_the_real_store_then_encode_then_stage2_data(tmp_path):
    from safetensors.torch import load_file

    from lse.nn.data import load_dataset
    from lse.reports.twostep import choose, encode, rank
    from lse.store import Store

    data = _synthetic(tmp_path)
    pop = _run_stage1(tmp_path, data)
    store = Store(pop).open()
    recs = [r for r in store.records() if r.fitness is not None]
    assert recs and all(r.genome == "autoencoder" and r.val_accuracy is None for r in recs)
    assert any(r.parents for r in recs), "no child was bred by mutation"
    raw = load_dataset("fashion-mnist", data, validation_size=50, seed=0)
    for e in store.list_alive():  # the stored weights reproduce the stored objective
        rec = store.record(e.id)
        m = Autoencoder(AutoencoderGenome.model_validate(rec.dna))
        m.load_state_dict(load_file(str(store.paths.weights_file(e.path))), strict=True)
        assert measure(m, raw.val_x, raw)[1] == pytest.approx(rec.objectives["reconstruction"], abs=1e-5)
    front = [c for c in rank(pop) if c.front == 0]
    assert choose(pop).id == max(front, key=lambda c: c.topsis).id

    meta = encode(pop, tmp_path / "codes")
    ds = load_dataset("encoded", tmp_path / "codes", validation_size=50)
    assert ds.input_shape == tuple(meta["input_shape"]) and ds.train_x.dtype == torch.uint8
    # the original split: same sizes, labels in the same order, and the same held-out indices
    assert torch.equal(ds.val_y, raw.val_y) and torch.equal(ds.test_y, raw.test_y) and torch.equal(ds.train_y, raw.train_y)
    assert ds.split.val_indices_sha256 == raw.split.val_indices_sha256
    with pytest.raises(DataError, match="--validation-size 50"):
        load_dataset("encoded", tmp_path / "codes", validation_size=5000)
    with pytest.raises(DataError, match="exists"):
        encode(pop, tmp_path / "codes")


@pytest.mark.parametrize("damage", ["no-meta", "bad-json", "newer", "pickle-codes", "bad-labels", "symlink"])
def test_hostile_encoded_folders_are_refused_with_one_line(tmp_path, damage):
    from safetensors.torch import load_file, save_file

    from lse.nn.data import load_dataset

    data = _synthetic(tmp_path)
    pop = _run_stage1(tmp_path, data)
    from lse.reports.twostep import encode

    folder = tmp_path / "codes"
    encode(pop, folder)
    meta = folder / "encoded.json"
    codes = folder / "codes.safetensors"
    if damage == "no-meta":
        meta.unlink()
    elif damage == "bad-json":
        meta.write_text("{not json")
    elif damage == "newer":
        m = json.loads(meta.read_text())
        m["version"] = 99
        meta.write_text(json.dumps(m))
    elif damage == "pickle-codes":
        codes.write_bytes(b"\x80\x04\x95" + b"cos\nsystem\n" * 10)
    elif damage == "bad-labels":
        t = load_file(str(codes))
        t["test_y"] = t["test_y"] + 100
        save_file(t, str(codes))
    elif damage == "symlink":
        real = tmp_path / "elsewhere.safetensors"
        shutil.move(codes, real)
        codes.symlink_to(real)
    with pytest.raises(DataError) as e:
        load_dataset("encoded", folder, validation_size=50)
    assert "\n" not in str(e.value)


def test_composed_model_equals_the_classifier_on_stored_codes(tmp_path):
    from lse.config import ExperimentConfig, WorkerOptions
    from lse.reports.twostep import encode, final_model
    from lse.runners.worker import run_worker
    from lse.store import Store

    data = _synthetic(tmp_path)
    pop = _run_stage1(tmp_path, data)
    encode(pop, tmp_path / "codes")
    s2 = tmp_path / "s2"
    Store(s2).create(ExperimentConfig(dataset="encoded", data_dir=str(tmp_path / "codes"), validation_size=50,
                                      population_size=2, steps=5, max_individuals=4, augment=False))
    run_worker(s2, WorkerOptions(threads=1), handle_signals=False)
    res = final_model(tmp_path / "codes", s2)
    assert res["test_accuracy"] == pytest.approx(res["test_accuracy_on_stored_codes"], abs=1 / 60 + 1e-9)
    f = res["flops_per_example"]
    assert f["total"] == f["encoder"] + f["classifier"] and f["encoder"] > 0


@pytest.mark.slow
def test_the_pipeline_runs_both_steps_with_the_stage2_preset_and_reports_the_composed_model(tmp_path):
    """`lse ae pipeline` end to end through the real launcher: stage 1, the TOPSIS pick, its codes,
    stage 2 on the codes and on the raw images with the hour preset (the paper's defaults stall),
    and the report's composed model on the test split."""
    from lse.runners.twostep import PipelineBudget, run_pipeline
    from lse.store import Store

    data = _synthetic(tmp_path)
    out = tmp_path / "run"
    res = run_pipeline(out, PipelineBudget(data_dir=str(data), validation_size=50, ae_minutes=0.25, ae_steps=5,
                                           ae_population=3, s2_minutes=0.25, s2_steps=5), echo=lambda *_: None)
    for name in ("stage2-encoded", "stage2-raw"):
        cfg = Store(out / name, read_only=True).open().config
        assert (cfg.morph, cfg.lr_schedule, cfg.population_size) == (True, "cosine", 10)  # the hour preset's
        assert (cfg.steps, cfg.augment) == (5, False)  # given values win over the preset's
    assert res["stage2_encoded"]["networks"] > 0 and res["stage2_raw"]["networks"] > 0
    fin = res["final"]
    assert 0.0 <= fin["test_accuracy"] <= 1.0
    assert fin["test_accuracy"] == pytest.approx(fin["test_accuracy_on_stored_codes"], abs=1 / 60 + 1e-9)
    assert (out / "report" / "twostep.json").is_file()


def test_the_pipeline_refuses_an_unknown_stage2_preset_in_one_line(tmp_path):
    from lse.errors import ConfigError
    from lse.runners.twostep import PipelineBudget, run_pipeline

    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        run_pipeline(tmp_path / "run", PipelineBudget(data_dir=str(tmp_path / "none"), s2_preset="nope",
                                                      ae_minutes=0.01), echo=lambda *_: None)
