"""The trainer of section 3.4: SGD with momentum 0.9, batch 50, weight decay 1e-4, cross-entropy,
T steps, then one evaluation on the validation set, whose accuracy is the fitness.

Training is where all the compute goes, so the hot loop does only what a minimal hand-written
PyTorch loop does (``lse bench`` measures the two side by side):

* the data set is already on the device as uint8; each step gathers a batch, augments it on
  the device (:func:`lse.nn.data.augment_batch`) and converts it to float with one fused op;
* gradients are set to None rather than zeroed; ``channels_last`` for convolutions;
* a NaN/inf loss ends training early with ``failed_reason`` (the child dies; no crash);
  out-of-memory likewise;
* ``should_stop`` is polled every few steps and raises :class:`lse.errors.StopRequested`.

On CUDA additionally: bf16 autocast (batch norm keeps fp32 parameters and statistics), fused SGD,
and, optionally, the whole training step captured once as a CUDA graph and replayed: at batch 50
a small net is bound by kernel launches, and ``torch.compile`` costs seconds per new
architecture (NOTES.md).  The CPU path stays fp32 eager: bf16 was 5-10x slower on these CPUs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lse.nn.data import Dataset, augment_batch, dataset_of, normalize
from lse.errors import StopRequested

#: steps between two polls of ``should_stop`` (a poll may touch the filesystem)
STOP_POLL_STEPS = 10
#: on CUDA, steps between two finiteness checks of the loss (each check is a host sync)
CUDA_FINITE_CHECK_STEPS = 100
#: Learning-rate schedules within one training run (``train(lr_schedule=...)``).
LR_SCHEDULES = ("constant", "cosine")


@dataclass
class TrainResult:
    """Outcome of one training.  A failed training has ``failed_reason`` set and accuracy 0."""

    val_accuracy: float
    steps: int  # SGD steps actually taken
    examples: int  # training examples seen (steps * batch size)
    train_seconds: float
    eval_seconds: float
    failed_reason: str | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def set_threads(n: int) -> None:
    """Intra-op threads of this process: size to its share of the cores (oversubscription
    made training 6x slower here, NOTES.md).  Inter-op threads can only be set before the first
    parallel work, hence the guard."""
    torch.set_num_threads(max(1, int(n)))
    try:
        torch.set_num_interop_threads(max(1, int(n)))
    except RuntimeError:
        pass


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def train(
    model: nn.Module,
    dataset: Dataset,
    *,
    learning_rate: float,
    steps: int,
    batch_size: int = 50,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    seed: int,
    augment: bool = True,
    should_stop: Callable[[], bool] = lambda: False,
    device: str | torch.device | None = None,
    eval_batch_size: int = 1000,
    channels_last: bool = True,
    cuda_graph: bool = False,
    optimizer: str = "sgd",
    data_fraction: float = 1.0,
    lr_schedule: str = "constant",
) -> TrainResult:
    """Train ``model`` in place for ``steps`` SGD steps on ``dataset``'s training split, then
    return its accuracy on the validation split.  The test split is never touched.

    ``seed`` fixes the batch order and the augmentation (model initialisation is the caller's).
    ``optimizer``: "sgd" (section 3.4) or "adadelta" (seed 002; ``learning_rate`` is its lr,
    momentum unused).  ``data_fraction`` < 1: train on a random subset of the training split
    of that size, drawn from ``seed`` (seed 002: a fresh 10% per generation).
    ``lr_schedule``: "constant" (section 3.4) or "cosine": the learning rate falls from
    ``learning_rate`` to 0 over the ``steps`` along half a cosine (Loshchilov & Hutter 2017), so
    the network is evaluated where the noise of a large step no longer blurs it.  A chain of
    inheriting children is then SGD with warm restarts.  CUDA graphs bake the learning rate in, so
    "cosine" trains with the eager loop.
    Batches are drawn by reshuffling the training split every epoch.  ``device`` defaults to
    the device the data set lives on.
    """
    dev = resolve_device(device) if device is not None else dataset.train_x.device
    ds = dataset.to(dev)
    on_cuda = dev.type == "cuda"
    # channels_last speeds convolutions up (10-40% on CPU, NOTES.md) but costs a layout copy per
    # batch: measured 13% slower for the convolution-free initial model on 32x32x3 (lse bench)
    cl = channels_last and len(ds.input_shape) == 3 and any(isinstance(m, nn.Conv2d) for m in model.modules())
    model.to(dev)
    if cl:
        model.to(memory_format=torch.channels_last)
    model.train()
    if on_cuda:
        # static shapes for 25,600 steps: per-shape kernel autotuning pays for itself
        torch.backends.cudnn.benchmark = True

    if optimizer not in ("sgd", "adadelta"):
        raise ValueError(f"unknown optimizer {optimizer!r}; valid: sgd, adadelta")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {lr_schedule!r}; valid: {', '.join(LR_SCHEDULES)}")
    if not 0.0 < data_fraction <= 1.0:
        raise ValueError(f"data_fraction must be in (0, 1], got {data_fraction}")
    params = [p for p in model.parameters() if p.requires_grad]
    opt: torch.optim.Optimizer | None = None
    if params and optimizer == "sgd":
        opt_kwargs: dict = dict(lr=learning_rate, momentum=momentum, weight_decay=weight_decay)
        if on_cuda:
            opt_kwargs["fused"] = True
        opt = torch.optim.SGD(params, **opt_kwargs)
    elif params:
        opt = torch.optim.Adadelta(params, lr=learning_rate, weight_decay=weight_decay)
    optimizer = opt  # None: a model with nothing to learn; evaluation still defines fitness

    sampler = _Batches(ds, batch_size, seed, augment, dev, cl, data_fraction)
    failed: str | None = None
    done = 0
    if should_stop():
        raise StopRequested("stop requested before training")
    t0 = time.perf_counter()
    try:
        if optimizer is not None and steps > 0:
            if on_cuda and cuda_graph and lr_schedule == "constant":
                done, failed = _loop_cuda_graph(model, optimizer, sampler, steps, should_stop)
            else:
                lr_at = None if lr_schedule == "constant" else partial(cosine_lr, learning_rate, steps)
                done, failed = _loop(model, optimizer, sampler, steps, should_stop, on_cuda, lr_at)
        else:
            done = steps
    except torch.OutOfMemoryError as e:
        failed = f"out of memory after {done} steps: {str(e).splitlines()[0]}"
    except RuntimeError as e:
        if "out of memory" not in str(e) and "can't allocate memory" not in str(e):
            raise
        failed = f"out of memory: {str(e).splitlines()[0]}"
    finally:
        if on_cuda:
            torch.cuda.synchronize(dev)
    train_seconds = time.perf_counter() - t0
    if failed is not None:
        if on_cuda:
            torch.cuda.empty_cache()
        return TrainResult(0.0, done, done * batch_size, train_seconds, 0.0, failed)

    t1 = time.perf_counter()
    try:
        acc = evaluate(model, ds.val_x, ds.val_y, eval_batch_size, dataset=ds)
    except torch.OutOfMemoryError as e:
        return TrainResult(0.0, done, done * batch_size, train_seconds, time.perf_counter() - t1,
                           f"out of memory in evaluation: {str(e).splitlines()[0]}")
    return TrainResult(acc, done, done * batch_size, train_seconds, time.perf_counter() - t1, None)


class _Batches:
    """Draws (x float, y long) training batches on the device: every epoch a fresh permutation
    (from a generator seeded by ``seed``), uint8 gather, augmentation, one fused normalisation."""

    def __init__(self, ds: Dataset, batch_size: int, seed: int, augment: bool, dev: torch.device, cl: bool,
                 fraction: float = 1.0):
        self.x, self.y = ds.train_x, ds.train_y
        self.batch_size = batch_size
        self.augment = augment
        self.flip = ds.flip
        self.scale, self.shift = ds.normalization(dev)
        self.cl = cl
        self.gen = torch.Generator(device=dev)
        self.gen.manual_seed(int(seed))
        if fraction < 1.0:  # one random subset for this whole training (seed 002's 10%)
            keep = torch.randperm(self.x.shape[0], device=dev, generator=self.gen)[: max(1, round(fraction * self.x.shape[0]))]
            self.x, self.y = self.x[keep], self.y[keep]
        self.n = self.x.shape[0]
        self.dev = dev
        self.perm = torch.empty(0, dtype=torch.int64, device=dev)
        self.pos = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.batch_size
        if self.pos + b > self.perm.numel():
            # drop the epoch's remainder: every batch has the same shape (CUDA graphs need it)
            self.perm = torch.randperm(self.n, device=self.dev, generator=self.gen)
            if self.n < b:  # tiny data sets: repeat the permutation to fill one batch
                self.perm = self.perm.repeat(-(-b // self.n))
            self.pos = 0
        idx = self.perm[self.pos : self.pos + b]
        self.pos += b
        # Normalise, then augment: the zeros augmentation pads are then the training mean, not
        # raw black (-mean/std after normalising; issue 20).
        xf = normalize(self.x[idx], self.scale, self.shift)
        if self.augment:
            xf = augment_batch(xf, self.gen, flip=self.flip)
        if self.cl:
            xf = xf.contiguous(memory_format=torch.channels_last)
        return xf, self.y[idx]


def _diverged(loss_value: float, step: int) -> str:
    return f"diverged: loss {loss_value} at step {step}"


def cosine_lr(learning_rate: float, steps: int, step: int) -> float:
    """The learning rate of step ``step`` (0-based) of ``steps`` under the "cosine" schedule:
    ``learning_rate`` at the first step, falling along half a cosine towards 0 after the last."""
    return 0.5 * learning_rate * (1.0 + math.cos(math.pi * step / steps))


def _loop(model, optimizer, sampler: _Batches, steps: int, should_stop, on_cuda: bool,
          lr_at: Callable[[int], float] | None = None) -> tuple[int, str | None]:
    """The eager loop (CPU default, CUDA without graphs).  ``lr_at(step)``: the learning rate of
    each step (None: the optimizer's own, constant).  Returns (steps done, failed reason)."""
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if on_cuda else None
    check_every = CUDA_FINITE_CHECK_STEPS if on_cuda else 1  # on CPU .item() costs no sync
    for step in range(steps):
        if step % STOP_POLL_STEPS == 0 and step and should_stop():
            raise StopRequested(f"stop requested after {step} steps")
        xb, yb = sampler.next()
        if autocast is not None:
            with autocast:
                loss = F.cross_entropy(model(xb), yb)
        else:
            loss = F.cross_entropy(model(xb), yb)
        if (step + 1) % check_every == 0 or step == 0 or step == steps - 1:
            v = loss.item()
            if not math.isfinite(v):
                return step + 1, _diverged(v, step + 1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if lr_at is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
        optimizer.step()
    return steps, _check_params(model, steps)


def _check_params(model: nn.Module, steps: int) -> str | None:
    """The last step's update may itself have overflowed; a non-finite weight is a divergence."""
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            return f"diverged: non-finite weights ({name}) after {steps} steps"
    return None


def _loop_cuda_graph(model, optimizer, sampler: _Batches, steps: int, should_stop) -> tuple[int, str | None]:
    """Capture forward + backward + SGD step once (static shapes) and replay it ``steps`` times.

    Follows the whole-network capture recipe of the PyTorch CUDA-graph docs: a few warm-up
    steps on a side stream (they allocate momentum buffers and pick kernels; they are real
    training steps and are counted), grads set to None before capture so the captured backward
    *assigns* them, new batches copied into the static input tensors before each replay."""
    warmup = min(3, steps)
    static_x, static_y = sampler.next()
    static_x, static_y = static_x.clone(), static_y.clone()
    # the autocast weight-cast cache must be off around graphs (PyTorch CUDA-graph docs)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for i in range(warmup):
            if i:
                xb, yb = sampler.next()
                static_x.copy_(xb)
                static_y.copy_(yb)
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = F.cross_entropy(model(static_x), static_y)
            loss.backward()
            optimizer.step()
    torch.cuda.current_stream().wait_stream(s)
    v = loss.item()
    if not math.isfinite(v):
        return warmup, _diverged(v, warmup)
    if warmup == steps:
        return steps, _check_params(model, steps)

    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        with autocast:
            static_loss = F.cross_entropy(model(static_x), static_y)
        static_loss.backward()
        optimizer.step()
    # capture records but does not run: the replays below are the remaining steps
    for step in range(warmup, steps):
        if step % STOP_POLL_STEPS == 0 and should_stop():
            raise StopRequested(f"stop requested after {step} steps")
        xb, yb = sampler.next()
        static_x.copy_(xb)
        static_y.copy_(yb)
        graph.replay()
        if (step + 1) % CUDA_FINITE_CHECK_STEPS == 0 or step == steps - 1:
            v = static_loss.item()
            if not math.isfinite(v):
                return step + 1, _diverged(v, step + 1)
    return steps, _check_params(model, steps)


# ---------------------------------------------------------------------------------------------
# Evaluation


def _as_input(x: torch.Tensor, dev: torch.device, dataset: Dataset | None, cl: bool) -> torch.Tensor:
    """A batch ready for the model: uint8 images normalised with the training split's
    statistics (of ``dataset``, else of the loaded data set ``x`` belongs to, else of ``x``)."""
    x = x.to(dev, non_blocking=True)
    if x.dtype == torch.uint8:
        ds = dataset or dataset_of(x)
        if ds is not None:
            scale, shift = ds.normalization(dev)
        else:
            xf = x.float().transpose(0, 1).reshape(x.shape[1], -1)
            mean, std = xf.mean(1), xf.std(1).clamp_min(1e-3)
            scale, shift = (1 / std).view(1, -1, 1, 1), (-mean / std).view(1, -1, 1, 1)
        x = normalize(x, scale, shift)
    if cl and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000, *, dataset: Dataset | None = None) -> torch.Tensor:
    """Predicted class of every image of ``x`` (uint8 from a Dataset, or already-normalised
    float), as a CPU LongTensor; eval mode, no grad, large batches."""
    dev = _model_device(model)
    was_training = model.training
    model.eval()
    ds = dataset or (dataset_of(x) if x.dtype == torch.uint8 else None)
    out = []
    try:
        for i in range(0, x.shape[0], batch_size):
            xb = _as_input(x[i : i + batch_size], dev, ds, cl=dev.type != "mps")
            if dev.type == "cuda":
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    logits = model(xb)
            else:
                logits = model(xb)
            out.append(logits.argmax(1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000, *, dataset: Dataset | None = None) -> float:
    """Accuracy of ``model`` on (x, y), in [0, 1]."""
    if x.shape[0] == 0:
        return 0.0
    pred = predict(model, x, batch_size, dataset=dataset)
    return float((pred == y.cpu()).float().mean())
