"""The GPU path (issue 27): the device-side batch plan and learning rate that make a training step
capturable as a CUDA graph, the packing benchmark and MPS; each with a CPU twin.  The tests that
need CUDA are skipped without it; experiments/gpu_suite.py runs them on a GPU machine."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

from lse.errors import ConfigError
from lse.nn.batches import BatchPlan
from lse.nn.data import load_dataset
from lse.nn.synthetic import write_synthetic
from lse.nn.train import LearningRate, cosine_lr, train

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run experiments/gpu_suite.py on a GPU)")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("syn"), "idx", n_train=330, n_test=40, image_shape=(12, 12), seed=3)


def _ds(data_dir, device="cpu"):
    return load_dataset("fashion-mnist", str(data_dir), validation_size=30, seed=0, device=device)


def small_cnn(c: int = 1) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


# ---------------------------------------------------------------------------------------------
# CPU twins: what the graph replays, run eagerly


def test_the_device_learning_rate_follows_the_cosine_step_by_step():
    lr = LearningRate(0.08, 6, "cosine", torch.device("cpu"))
    seen = []
    for _ in range(6):
        lr.update()
        seen.append(float(lr.value))
    assert seen == pytest.approx([cosine_lr(0.08, 6, i) for i in range(6)])
    const = LearningRate(0.08, 6, "constant", torch.device("cpu"))
    const.update()
    assert float(const.value) == 0.08


def test_a_batch_plan_visits_each_image_at_most_once_per_epoch_and_replans(data_dir):
    ds = _ds(data_dir)
    plan = BatchPlan(ds, 50, seed=1, augment=False, dev=torch.device("cpu"))
    n = ds.train_x.shape[0]  # 300 training images: 6 steps per epoch
    assert plan.steps_per_epoch == n // 50
    by_image = {}
    for i in range(n):
        by_image[ds.train_x[i].numpy().tobytes() + bytes([int(ds.train_y[i])])] = i
    epochs = []
    for _ in range(2):
        seen = []
        for _ in range(plan.steps_per_epoch):
            x, y = plan.next()
            assert x.shape == (50, 1, 12, 12) and x.dtype == torch.float32
            scale, shift = ds.normalization("cpu")
            raw = torch.round((x - shift) / scale).to(torch.uint8)
            seen += [by_image[raw[j].numpy().tobytes() + bytes([int(y[j])])] for j in range(50)]
        assert len(set(seen)) == len(seen) == n  # a permutation of the whole split
        epochs.append(seen)
    assert epochs[0] != epochs[1]  # a fresh permutation every epoch


def test_a_batch_plan_repeats_with_its_seed_augmentation_included(data_dir):
    ds = _ds(data_dir)
    a = BatchPlan(ds, 50, seed=7, augment=True, dev=torch.device("cpu"))
    b = BatchPlan(ds, 50, seed=7, augment=True, dev=torch.device("cpu"))
    c = BatchPlan(ds, 50, seed=8, augment=True, dev=torch.device("cpu"))
    for _ in range(8):  # across an epoch boundary
        (xa, ya), (xb, yb), (xc, _) = a.next(), b.next(), c.next()
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(xa, xc)


def test_a_data_set_smaller_than_a_batch_still_fills_it(data_dir):
    import dataclasses

    ds = _ds(data_dir)
    tiny = dataclasses.replace(ds, train_x=ds.train_x[:7], train_y=ds.train_y[:7], _norm_cache={}, _copies={})
    plan = BatchPlan(tiny, 50, seed=0, augment=True, dev=torch.device("cpu"))
    for _ in range(3):
        x, y = plan.next()
        assert x.shape[0] == 50 and y.shape[0] == 50


def test_graphs_are_not_used_on_the_cpu_and_the_result_says_so(data_dir):
    r = train(small_cnn(), _ds(data_dir), learning_rate=0.05, steps=5, seed=0, cuda_graph=True)
    assert r.failed_reason is None and r.graphed is False and r.steps == 5


def test_an_unknown_precision_is_refused(data_dir):
    with pytest.raises(ValueError, match="precision"):
        train(small_cnn(), _ds(data_dir), learning_rate=0.05, steps=2, seed=0, precision="fp8")


def test_mps_without_its_control_program_is_one_clear_error():
    from lse.runners.mps import start_mps

    with pytest.raises(ConfigError) as e:
        start_mps(which=lambda name: None)
    assert "nvidia-cuda-mps-control" in str(e.value) and "\n" not in str(e.value)


def test_mps_clients_are_pointed_at_the_daemons_folders(tmp_path):
    from lse.runners.mps import MpsDaemon

    d = MpsDaemon("/bin/true", tmp_path / "pipe", tmp_path / "log")
    assert d.env() == {"CUDA_MPS_PIPE_DIRECTORY": str(tmp_path / "pipe"), "CUDA_MPS_LOG_DIRECTORY": str(tmp_path / "log")}


def test_the_pack_benchmark_counts_children_of_k_processes(data_dir):
    from lse.runners.pack import format_pack, run_pack

    rows = run_pack([1, 2], steps=3, seconds=0.2, device="cpu", data_dir=str(data_dir), validation_size=30,
                    individuals=("initial",), echo=lambda *_: None)
    assert [(r.k, r.steps) for r in rows] == [(1, 3), (2, 3)]
    assert all(r.children >= r.k and r.children_per_hour > 0 and r.steps_per_second > 0 for r in rows)
    assert format_pack(rows).count("\n") == 3


def test_the_launcher_passes_the_gpu_options_to_its_workers(tmp_path):
    from lse.runners.launch import LaunchOptions

    opts = LaunchOptions.parse(dict(workers=2, device="cpu", precision="bf16", cuda_graph=False, mps=True))
    assert (opts.precision, opts.cuda_graph, opts.mps) == ("bf16", False, True)
    with pytest.raises(ConfigError, match="precision"):
        LaunchOptions.parse(dict(workers=1, precision="fp8"))


# ---------------------------------------------------------------------------------------------
# CUDA only


def _three_conv(c: int = 1) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(c, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


@cuda
@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_graphed_and_eager_training_end_at_the_same_parameters(data_dir, schedule):
    ds = _ds(data_dir, "cuda")
    torch.backends.cudnn.deterministic = True
    try:
        models = []
        for graph in (False, True):
            torch.manual_seed(0)
            m = _three_conv()
            r = train(m, ds, learning_rate=0.05, steps=60, seed=3, cuda_graph=graph, precision="fp32",
                      lr_schedule=schedule, cudnn_benchmark=False)
            assert r.failed_reason is None and r.steps == 60 and r.graphed is graph
            models.append(m)
    finally:
        torch.backends.cudnn.deterministic = False
    for (name, a), (_, b) in zip(models[0].state_dict().items(), models[1].state_dict().items()):
        if a.is_floating_point():
            assert torch.allclose(a, b, rtol=1e-3, atol=1e-4), name
        else:
            assert torch.equal(a, b), name


@cuda
def test_graphs_are_the_default_on_cuda_and_bf16_trains(data_dir):
    ds = _ds(data_dir, "cuda")
    for precision in ("auto", "bf16"):
        r = train(_three_conv(), ds, learning_rate=0.05, steps=30, seed=0, precision=precision, lr_schedule="cosine")
        assert r.failed_reason is None and r.graphed is True and 0 <= r.val_accuracy <= 1


@cuda
def test_a_failed_capture_falls_back_to_eager_training(data_dir, monkeypatch):
    import lse.nn.train as tr

    def broken(*a, **k):
        raise RuntimeError("capture not supported here")

    monkeypatch.setattr(torch.cuda, "graph", broken)
    monkeypatch.setattr(tr, "_CAPTURE_WARNED", False)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        r = train(_three_conv(), _ds(data_dir, "cuda"), learning_rate=0.05, steps=20, seed=0)
    assert r.failed_reason is None and r.steps == 20 and r.graphed is False
    assert any("training eagerly" in str(x.message) for x in w)


@cuda
def test_a_diverging_graphed_training_fails_cleanly(data_dir):
    r = train(_three_conv(), _ds(data_dir, "cuda"), learning_rate=1e9, steps=400, seed=0)
    assert r.failed_reason is not None and "diverged" in r.failed_reason


@cuda
@pytest.mark.skipif(shutil.which("nvidia-cuda-mps-control") is None, reason="no MPS control program")
def test_mps_clients_really_connect():
    from lse.runners.mps import start_mps

    d = start_mps()
    try:
        code = "import torch; x = torch.ones(1000, device='cuda'); print(float((x * 2).sum()))"
        r = subprocess.run([sys.executable, "-c", code], env={**__import__('os').environ, **d.env()},
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert d.server_pids(), "no MPS server: the client did not connect"
    finally:
        d.stop()


def test_the_gpu_docs_tables_are_the_ones_its_committed_data_gives():
    """docs/GPU.md's tables are generated from docs/gpu/gpu.json: a hand-edited figure fails."""
    import json
    from pathlib import Path

    from _experiment_script import load_script

    root = Path(__file__).resolve().parent.parent
    suite = load_script("gpu_suite")
    doc = (root / "docs" / "GPU.md").read_text()
    res = json.loads((root / "docs" / "gpu" / "gpu.json").read_text())
    assert suite.with_tables(doc, suite.tables(res)) == doc
