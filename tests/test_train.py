"""The trainer: learns (synthetic and real Fashion-MNIST), divergence and stop requests end it
cleanly, evaluation/prediction never leave the model in eval mode.  No timings asserted."""

from __future__ import annotations

import os
import time

import pytest
import torch
from torch import nn

from lse.nn.data import SYSTEM_FASHION_MNIST, load_dataset
from lse.errors import StopRequested
from lse.nn.synthetic import write_synthetic
from lse.nn.train import TrainResult, cosine_lr, evaluate, predict, train


def small_cnn(in_ch: int, classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_ch, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(8 * 16, classes),
    )


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    write_synthetic(d, "idx", n_train=700, n_test=100, seed=0)
    return load_dataset("fashion-mnist", d, validation_size=200, seed=0)


@pytest.fixture(scope="module")
def synth_cifar(tmp_path_factory):
    d = tmp_path_factory.mktemp("synthc")
    write_synthetic(d, "cifar10", n_train=500, n_test=50, seed=0)
    return load_dataset("cifar10", d, validation_size=100, seed=0)


def test_trains_above_chance_on_synthetic_data(synth):
    torch.manual_seed(0)
    r = train(small_cnn(1), synth, learning_rate=0.05, steps=150, seed=0)
    assert isinstance(r, TrainResult) and r.failed_reason is None
    assert r.steps == 150 and r.examples == 150 * 50
    assert r.val_accuracy > 0.5  # chance is 0.1
    assert r.train_seconds > 0 and r.eval_seconds >= 0


def test_cifar_with_flip_augmentation_trains(synth_cifar):
    torch.manual_seed(0)
    r = train(small_cnn(3), synth_cifar, learning_rate=0.05, steps=100, seed=0)
    assert r.failed_reason is None and r.val_accuracy > 0.3


def test_same_seed_same_result(synth):
    accs = []
    for _ in range(2):
        torch.manual_seed(1)
        m = small_cnn(1)
        train(m, synth, learning_rate=0.05, steps=20, seed=4)
        accs.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    assert torch.equal(accs[0], accs[1])


def test_divergence_is_a_failed_result_not_a_crash(synth):
    torch.manual_seed(0)
    r = train(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), synth, learning_rate=1e6, steps=300, seed=0)
    assert r.failed_reason is not None and "diverged" in r.failed_reason
    assert r.val_accuracy == 0.0 and r.steps < 300


def test_should_stop_raises_stop_requested(synth):
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(StopRequested):
        train(small_cnn(1), synth, learning_rate=0.05, steps=10_000, seed=0, should_stop=stop)
    assert len(calls) == 3


def test_model_without_parameters_is_evaluated(synth):
    class Zero(nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 10)

    r = train(Zero(), synth, learning_rate=0.1, steps=5, seed=0)
    assert r.failed_reason is None and 0.0 <= r.val_accuracy <= 1.0


def test_evaluate_and_predict_restore_training_mode(synth):
    m = small_cnn(1)
    m.train()
    p = predict(m, synth.val_x, 64)
    assert p.shape == (synth.val_x.shape[0],) and p.dtype == torch.int64
    acc = evaluate(m, synth.val_x, synth.val_y, 64)
    assert acc == pytest.approx(float((p == synth.val_y).float().mean()))
    assert m.training


@pytest.mark.skipif(not SYSTEM_FASHION_MNIST.is_dir(), reason="Debian package dataset-fashion-mnist not installed "
                    "(apt-get install dataset-fashion-mnist); real-data training test skipped")
def test_learns_real_fashion_mnist_slice():
    ds = load_dataset("fashion-mnist", SYSTEM_FASHION_MNIST, validation_size=5000, seed=0)
    torch.manual_seed(0)
    m = small_cnn(1)
    r = train(m, ds, learning_rate=0.05, steps=250, seed=0)
    assert r.failed_reason is None
    assert r.val_accuracy > 0.5  # chance 0.1; ~0.65-0.7 after 250 steps
    assert evaluate(m, ds.test_x[:1000], ds.test_y[:1000]) > 0.5


def test_out_of_memory_is_a_failed_result(synth):
    class Hungry(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(784, 10)

        def forward(self, x):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    r = train(Hungry(), synth, learning_rate=0.1, steps=10, seed=0)
    assert r.failed_reason is not None and "out of memory" in r.failed_reason and r.val_accuracy == 0.0


def test_training_never_touches_the_test_split(synth):
    import dataclasses

    blind = dataclasses.replace(synth, test_x=None, test_y=None, _copies={})  # any access would fail
    r = train(small_cnn(1), blind, learning_rate=0.05, steps=5, seed=0)
    assert r.failed_reason is None


def test_augmentation_pads_with_the_mean_zero_after_normalising(synth):
    # issue 20: padding raw zeros before normalising made the border -mean/std (-0.81 on
    # Fashion-MNIST), an edge no test image has.  Padded pixels must be 0 after normalising.
    import dataclasses

    from lse.nn.batches import BatchPlan

    white = dataclasses.replace(synth, train_x=torch.full_like(synth.train_x, 255), _norm_cache={}, _copies={})
    scale, shift = white.normalization("cpu")
    inside = float(255 * scale.flatten()[0] + shift.flatten()[0])
    x, _ = BatchPlan(white, 200, seed=1, augment=True, dev=torch.device("cpu")).next()
    values = set(torch.unique(x).tolist())
    assert 0.0 in values  # some crops reach into the padding
    assert all(v == 0.0 or v == pytest.approx(inside) for v in values), values
    assert float(shift.flatten()[0]) < -0.1  # the old border value was far from 0


def test_the_trainer_mirrors_as_the_experiment_says(tmp_path):
    from lse.config import ExperimentConfig, WorkerOptions
    from lse.runners.worker import TorchTrainer

    write_synthetic(tmp_path, "idx", n_train=120, n_test=20, seed=0)
    for flip in (True, False):
        t = TorchTrainer(WorkerOptions())
        t.prepare(ExperimentConfig(data_dir=str(tmp_path), validation_size=20, flip=flip))
        assert t.dataset.flip is flip


@pytest.fixture
def step_lrs(monkeypatch):
    """The learning rate of every SGD step taken while the test runs, in order."""
    seen: list[float] = []
    step = torch.optim.SGD.step

    def spy(self, *args, **kwargs):
        seen.append(float(self.param_groups[0]["lr"]))  # a tensor the fused SGD reads
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    return seen


def test_the_cosine_schedule_anneals_each_run_from_its_rate_towards_zero(synth, step_lrs):
    torch.manual_seed(0)
    r = train(small_cnn(1), synth, learning_rate=0.08, steps=8, seed=0, lr_schedule="cosine")
    assert r.failed_reason is None
    assert step_lrs == pytest.approx([cosine_lr(0.08, 8, i) for i in range(8)])
    assert step_lrs[0] == pytest.approx(0.08) and step_lrs[4] == pytest.approx(0.04)
    assert all(a > b > 0 for a, b in zip(step_lrs, step_lrs[1:]))
    step_lrs.clear()
    train(small_cnn(1), synth, learning_rate=0.08, steps=8, seed=0)  # the paper's: constant
    assert step_lrs == [0.08] * 8


def test_a_deadline_cuts_the_steps_to_fit_and_the_cosine_still_reaches_zero(synth, step_lrs):
    """lse retrain --minutes: a training slower than its calibration ends by its deadline, not
    after it, and is annealed all the same (the rest of the cosine spread over the steps left)."""
    torch.manual_seed(0)
    start = time.monotonic()
    r = train(small_cnn(1), synth, learning_rate=0.08, steps=10**6, seed=0, lr_schedule="cosine",
              deadline=start + 2.0)
    assert r.failed_reason is None and 0 < r.steps < 10**6 and len(step_lrs) == r.steps
    assert start + r.train_seconds < start + 2.0 + 0.5  # a poll's worth of steps past it at most
    assert step_lrs[0] == pytest.approx(0.08)
    assert all(a >= b for a, b in zip(step_lrs, step_lrs[1:]))  # continuous: never back up
    assert step_lrs[-1] < 0.01 * 0.08  # annealed: the last step is near 0, not mid-schedule
    step_lrs.clear()
    r = train(small_cnn(1), synth, learning_rate=0.08, steps=8, seed=0, lr_schedule="cosine",
              deadline=time.monotonic() + 60)  # fits: the schedule as asked
    assert r.steps == 8 and step_lrs == pytest.approx([cosine_lr(0.08, 8, i) for i in range(8)])


def test_an_unknown_schedule_is_refused(synth):
    with pytest.raises(ValueError, match="lr_schedule"):
        train(small_cnn(1), synth, learning_rate=0.08, steps=2, seed=0, lr_schedule="step")


def _run_real_worker(tmp_path, age_minutes: float = 0.0, **config) -> list:
    """One real TorchTrainer worker, to its stop, on a small synthetic data set, in an experiment
    created ``age_minutes`` ago with ``config``; the records it published, in id order."""
    from lse.config import ExperimentConfig, WorkerOptions
    from lse.runners.worker import TorchTrainer, run_worker
    from lse.store import Store

    data = write_synthetic(tmp_path / "data", "idx", n_train=200, n_test=40, image_shape=(12, 12), seed=3)
    store = Store(tmp_path / "pop")
    store.create(ExperimentConfig(data_dir=str(data), validation_size=40, population_size=2, eval_batch_size=40,
                                  **config))
    created = time.time() - 60 * age_minutes  # the experiment's age is experiment.json's
    os.utime(store.paths.experiment, (created, created))
    opts = WorkerOptions(threads=1, device="cpu")
    run_worker(store.root, opts, TorchTrainer(opts), worker_id="w", handle_signals=False, log_to_file=False)
    return sorted(Store(store.root).open().records(), key=lambda r: r.id)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_a_real_worker_trains_with_the_experiments_schedule(tmp_path, step_lrs, schedule):
    records = _run_real_worker(tmp_path, steps=4, max_individuals=4, lr_schedule=schedule,
                               mutation_probabilities={"alter_learning_rate": 1})
    runs = [step_lrs[i:i + 4] for i in range(0, len(step_lrs), 4)]
    assert len(runs) == len(records) == 4
    for run in runs:  # each child starts at its own (mutated) rate
        want = [cosine_lr(run[0], 4, i) for i in range(4)] if schedule == "cosine" else [run[0]] * 4
        assert run == pytest.approx(want)
    assert {round(run[0], 12) for run in runs} == {round(r.dna["learning_rate"], 12) for r in records}


def test_a_real_worker_follows_the_step_schedule_by_the_experiments_age(tmp_path, step_lrs):
    records = _run_real_worker(tmp_path, age_minutes=20, steps=3, max_individuals=3, steps_schedule=[(10, 5), (60, 7)])
    assert [r.steps for r in records] == [5, 5, 5]  # minute 20: not --steps (3), not minute 60's (7)
    assert len(step_lrs) == 15  # the steps taken, not only the ones recorded
