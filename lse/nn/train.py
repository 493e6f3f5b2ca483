"""The trainer of section 3.4: SGD with momentum 0.9, batch 50, weight decay 1e-4, cross-entropy,
T steps, then one evaluation on the validation set, whose accuracy is the fitness.

Training is where all the compute goes, so the hot loop does only device work (``lse bench``
measures it beside a minimal hand-written loop):

* the data set is already on the device as uint8; a step indexes a batch and its augmentation
  from a plan drawn one epoch ahead (:class:`lse.nn.batches.BatchPlan`) and converts it to float;
* the learning rate is a tensor the fused SGD reads (:class:`LearningRate`), so a schedule costs
  no host write;
* gradients are set to None rather than zeroed; ``channels_last`` for convolutions;
* a NaN/inf loss ends training early with ``failed_reason`` (the child dies; no crash);
  out-of-memory likewise; the loss is checked through a device flag, every few steps;
* ``should_stop`` is polled every STOP_POLL_SECONDS and raises :class:`lse.errors.StopRequested`;
  at the same polls a ``deadline`` shortens the schedule to the steps that fit before it.

On CUDA, the step is captured once as a CUDA graph and replayed (the default; every learning-rate
schedule): at batch 50 a small net is bound by kernel launches, and ``torch.compile`` costs
seconds per new architecture (NOTES.md).  bf16 autocast is a choice (``precision``), measured in
docs/GPU.md.  The CPU path is fp32 eager: bf16 was 5-10x slower on these CPUs.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lse.errors import StopRequested
from lse.nn.batches import BatchPlan
from lse.nn.data import Dataset, dataset_of, normalize

#: seconds between two polls of ``should_stop`` (a poll may touch the filesystem)
STOP_POLL_SECONDS = 0.25
#: on the CPU, steps between two finiteness checks of the loss
STOP_POLL_STEPS = 10
#: on CUDA, steps between two finiteness checks of the loss (each check is a host sync)
CUDA_FINITE_CHECK_STEPS = 200
#: eager steps on a side stream before a CUDA graph is captured (PyTorch's recipe)
GRAPH_WARMUP_STEPS = 3
#: Learning-rate schedules within one training run (``train(lr_schedule=...)``).
LR_SCHEDULES = ("constant", "cosine")
#: arithmetic on CUDA: "auto" (bf16 autocast for networks with convolutions when
#: DEFAULT_CUDA_BF16, else fp32 with TF32), "fp32" or "bf16".  The CPU is always fp32.
PRECISIONS = ("auto", "fp32", "bf16")
#: what "auto" picks on CUDA for a network with convolutions (docs/GPU.md measures both)
DEFAULT_CUDA_BF16 = False


@dataclass
class TrainResult:
    """Outcome of one training.  A failed training has ``failed_reason`` set and accuracy 0."""

    val_accuracy: float
    steps: int  # SGD steps actually taken
    examples: int  # training examples seen (steps * batch size)
    train_seconds: float
    eval_seconds: float
    failed_reason: str | None = None
    graphed: bool = False  # the steps after the warm-up were replayed from a CUDA graph

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
    cuda_graph: bool | None = None,
    optimizer: str = "sgd",
    data_fraction: float = 1.0,
    lr_schedule: str = "constant",
    precision: str = "auto",
    cudnn_benchmark: bool = True,
    deadline: float | None = None,
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
    inheriting children is then SGD with warm restarts.
    ``cuda_graph``: on CUDA, capture one SGD step (batch, augmentation, learning rate and update
    included) as a CUDA graph and replay it; None = on wherever it applies (SGD on CUDA), with
    an eager fallback where capture fails.  ``precision``: see PRECISIONS.
    Batches are drawn by reshuffling the training split every epoch (:class:`BatchPlan`).
    ``deadline``: a ``time.monotonic()`` by which the steps must end (a wall-clock budget, as
    ``lse retrain --minutes`` has).  When the speed measured so far says the remaining steps
    will not fit, training is cut to the steps that do, and a cosine schedule is spread anew
    over them from where it is, so it still reaches 0 at the last step; ``steps`` in the result
    says how many were taken.
    ``device`` defaults to the device the data set lives on.
    """
    dev = resolve_device(device) if device is not None else dataset.train_x.device
    ds = dataset.to(dev)
    on_cuda = dev.type == "cuda"
    if optimizer not in ("sgd", "adadelta"):
        raise ValueError(f"unknown optimizer {optimizer!r}; valid: sgd, adadelta")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {lr_schedule!r}; valid: {', '.join(LR_SCHEDULES)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if not 0.0 < data_fraction <= 1.0:
        raise ValueError(f"data_fraction must be in (0, 1], got {data_fraction}")
    has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    bf16 = on_cuda and (precision == "bf16" or (precision == "auto" and has_conv and DEFAULT_CUDA_BF16))
    # channels_last speeds convolutions up (10-40% on CPU, NOTES.md) but costs a layout copy per
    # batch: measured 13% slower for the convolution-free initial model on 32x32x3 (lse bench)
    cl = channels_last and len(ds.input_shape) == 3 and has_conv
    model.to(dev)
    if cl:
        model.to(memory_format=torch.channels_last)
    model.train()
    if on_cuda:
        # Convolution algorithms autotuned per new shape: pays over a long training, costs a
        # few ms per shape in a short one (``cudnn_benchmark``; measured in docs/GPU.md).
        torch.backends.cudnn.benchmark = bool(cudnn_benchmark)
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 for the classifier, as convs already use

    params = [p for p in model.parameters() if p.requires_grad]
    lr = LearningRate(learning_rate, steps, lr_schedule, dev)
    opt: torch.optim.Optimizer | None = None
    if params and optimizer == "sgd":
        # fused: one kernel for the whole update, and it reads the learning rate from a tensor,
        # so a schedule needs no host write and the step can live in a CUDA graph
        opt = torch.optim.SGD(params, lr=lr.value, momentum=momentum, weight_decay=weight_decay, fused=True)
    elif params:
        opt = torch.optim.Adadelta(params, lr=learning_rate, weight_decay=weight_decay)
        lr = None  # Adadelta (seed 002) keeps its constant rate
    graph = on_cuda and opt is not None and optimizer == "sgd" and (cuda_graph if cuda_graph is not None else True)

    plan = BatchPlan(ds, batch_size, seed, augment, dev, cl, data_fraction)
    loop = _Loop(model, opt, plan, lr, bf16, on_cuda, should_stop, deadline)
    failed: str | None = None
    if should_stop():
        raise StopRequested("stop requested before training")
    t0 = time.perf_counter()
    try:
        if opt is not None and steps > 0:
            failed = loop.run(steps, graph)
    except torch.OutOfMemoryError as e:
        failed = f"out of memory after {loop.done} steps: {str(e).splitlines()[0]}"
    except RuntimeError as e:
        if "out of memory" not in str(e) and "can't allocate memory" not in str(e):
            raise
        failed = f"out of memory: {str(e).splitlines()[0]}"
    finally:
        if on_cuda:
            torch.cuda.synchronize(dev)
    done = loop.done if opt is not None else steps
    train_seconds = time.perf_counter() - t0
    if failed is not None:
        if on_cuda:
            torch.cuda.empty_cache()
        return TrainResult(0.0, done, done * batch_size, train_seconds, 0.0, failed, loop.graphed)

    t1 = time.perf_counter()
    try:
        acc = evaluate(model, ds.val_x, ds.val_y, eval_batch_size, dataset=ds, bf16=bf16)
    except torch.OutOfMemoryError as e:
        return TrainResult(0.0, done, done * batch_size, train_seconds, time.perf_counter() - t1,
                           f"out of memory in evaluation: {str(e).splitlines()[0]}", loop.graphed)
    return TrainResult(acc, done, done * batch_size, train_seconds, time.perf_counter() - t1, None, loop.graphed)


def cosine_lr(learning_rate: float, steps: int, step: int) -> float:
    """The learning rate of step ``step`` (0-based) of ``steps`` under the "cosine" schedule:
    ``learning_rate`` at the first step, falling along half a cosine towards 0 after the last."""
    return 0.5 * learning_rate * (1.0 + math.cos(math.pi * step / steps))


class LearningRate:
    """The learning rate as a one-element tensor on the training device, which the fused SGD
    reads at every step.  :meth:`update` sets the next step's rate from a table of the whole
    schedule, indexed by a step counter on the device: no host write, no sync, so the update can
    be captured in a CUDA graph with the step it belongs to, whatever the schedule."""

    def __init__(self, base: float, steps: int, schedule: str, dev: torch.device):
        # CUDA's fused SGD reads a float32 rate; the CPU's reads a double (exactly the DNA's rate)
        dtype = torch.float32 if dev.type == "cuda" else torch.float64
        self.value = torch.tensor(float(base), dtype=dtype, device=dev)
        self.table: torch.Tensor | None = None
        self.base = float(base)
        # the steps start..end-1 run along the half cosine from phase p to 1 (a respread moves it)
        self.segment = (0, 0.0, steps)
        if schedule == "cosine" and steps > 0:
            rates = [cosine_lr(base, steps, i) for i in range(steps)]
            self.table = torch.tensor(rates, dtype=dtype, device=dev)
            self.step = torch.zeros(1, dtype=torch.int64, device=dev)

    def respread(self, done: int, steps: int) -> None:
        """Fewer steps in all (``steps``, ``done`` of them taken): the rest of the cosine is spread
        over the steps left, continuing from step ``done``'s phase to 0 after the last.  The table
        is rewritten in place (a captured graph keeps reading it)."""
        if self.table is None or not done < steps <= len(self.table):
            return
        start, p, end = self.segment
        p0, n = p + (1.0 - p) * (done - start) / (end - start), steps - done  # step done's phase
        self.segment = (done, p0, steps)
        rates = [0.5 * self.base * (1.0 + math.cos(math.pi * (p0 + (1.0 - p0) * k / n))) for k in range(n)]
        self.table[done:steps].copy_(torch.tensor(rates, dtype=self.table.dtype))

    def update(self) -> None:
        """Before an optimizer step: the rate of this step (constant: nothing to do)."""
        if self.table is not None:
            self.value.copy_(self.table.index_select(0, self.step).view(()))
            self.step.add_(1)


class _Loop:
    """The training steps, eager or replayed from a CUDA graph.  Both run :meth:`_body` (batch,
    forward, backward, learning rate, optimizer step, finiteness flag), so they train alike."""

    def __init__(self, model, opt, plan: BatchPlan, lr: LearningRate | None, bf16: bool, on_cuda: bool, should_stop,
                 deadline: float | None = None):
        self.model, self.opt, self.plan, self.lr = model, opt, plan, lr
        self.bf16, self.on_cuda, self.should_stop, self.deadline = bf16, on_cuda, should_stop, deadline
        self.target = 0  # the steps to take: run()'s, or fewer where the deadline cut them
        self.started = 0.0  # when run() began: the deadline's speed is measured from there
        dev = plan.dev
        self.bad = torch.zeros(1, dtype=torch.bool, device=dev)  # a non-finite loss was seen
        self.done = 0
        self.graphed = False
        # a finiteness check is a host sync on CUDA: rarely there, often on the CPU (it is free)
        self.check_every = CUDA_FINITE_CHECK_STEPS if on_cuda else STOP_POLL_STEPS
        self.next_poll = time.monotonic() + STOP_POLL_SECONDS

    def _body(self) -> torch.Tensor:
        xb, yb = self.plan.draw()
        if self.bf16:
            # the autocast weight-cast cache must be off around graphs (PyTorch CUDA-graph docs)
            with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
                loss = F.cross_entropy(self.model(xb), yb)
        else:
            loss = F.cross_entropy(self.model(xb), yb)
        loss.backward()
        if self.lr is not None:
            self.lr.update()
        self.opt.step()
        torch.logical_or(self.bad, ~torch.isfinite(loss.detach()), out=self.bad)
        return loss

    def _poll(self) -> None:
        """``should_stop`` at most every STOP_POLL_SECONDS (a poll may touch the filesystem;
        per step it cost up to 2% of a graphed replay)."""
        now = time.monotonic()
        if now >= self.next_poll:
            self.next_poll = now + STOP_POLL_SECONDS
            if self.should_stop():
                raise StopRequested(f"stop requested after {self.done} steps")
            if self.deadline is not None:
                self._fit(now)

    def _fit(self, now: float) -> None:
        """Cut the steps to those that fit before the deadline at the speed measured so far (the
        mean since the start, once a second of it is measured); never more steps than asked."""
        if self.done < 1 or now - self.started < 1.0:
            return
        per_step = (now - self.started) / self.done
        fit = self.done + max(0, int((self.deadline - now) / per_step))
        if fit < self.target:
            self.target = max(fit, self.done + 1)
            if self.lr is not None:
                self.lr.respread(self.done, self.target)

    def _diverged(self) -> str | None:
        if bool(self.bad.item()):
            return f"diverged: non-finite loss by step {self.done}"
        return None

    def run(self, steps: int, graph: bool) -> str | None:
        """Train ``steps`` steps; the failure reason, or None.  With ``graph``, a few eager
        warm-up steps on a side stream, one capture, then replays; a capture that fails falls
        back to the eager loop for the remaining steps (one warning)."""
        self.target, self.started = steps, time.monotonic()
        if graph and steps > GRAPH_WARMUP_STEPS:
            warm = self._side_stream_warmup()
            if warm is not None:
                return warm
            replay = self._capture()
            if replay is not None:
                self.graphed = True
                return self._steps(replay)
        return self._steps(None)

    def _steps(self, replay) -> str | None:
        while self.done < self.target:
            self._poll()
            self.plan.advance()
            if replay is not None:
                replay()
            else:
                self.opt.zero_grad(set_to_none=True)
                self._body()
            self.done += 1
            if self.done % self.check_every == 0 or self.done == self.target:
                failed = self._diverged()
                if failed:
                    return failed
        return self._diverged() or _check_params(self.model, self.done)

    def _side_stream_warmup(self) -> str | None:
        """The PyTorch CUDA-graph recipe: a few warm-up steps on a side stream (they allocate the
        momentum buffers and pick kernels; they are real steps and are counted)."""
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(GRAPH_WARMUP_STEPS):
                self.plan.advance()
                self.opt.zero_grad(set_to_none=True)
                self._body()
                self.done += 1
        torch.cuda.current_stream().wait_stream(s)
        return self._diverged()

    def _capture(self):
        """Capture one step; return its replay, or None where capture failed.  Grads are set to
        None before capture so that the captured backward *assigns* them at every replay."""
        graph = torch.cuda.CUDAGraph()
        self.opt.zero_grad(set_to_none=True)
        # capture records the body's device work without running it, so the host-side counters
        # stay where they are; the replays advance the device ones
        try:
            with torch.cuda.graph(graph):
                self._body()
        except Exception as e:  # an op that cannot be captured: train this child eagerly
            global _CAPTURE_WARNED
            if not _CAPTURE_WARNED:
                warnings.warn(f"CUDA graph capture failed, training eagerly instead: {e}", RuntimeWarning, stacklevel=2)
                _CAPTURE_WARNED = True
            torch.cuda.synchronize()
            return None
        return graph.replay


_CAPTURE_WARNED = False


def _check_params(model: nn.Module, steps: int) -> str | None:
    """The last step's update may itself have overflowed; a non-finite weight is a divergence."""
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            return f"diverged: non-finite weights ({name}) after {steps} steps"
    return None


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


#: images per evaluation batch on CUDA at least (whatever ``eval_batch_size`` says: the
#: accuracy is the same, and a few large batches cost a fraction of many small launches)
CUDA_EVAL_BATCH = 10_000


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000, *, dataset: Dataset | None = None,
            bf16: bool = False) -> torch.Tensor:
    """Predicted class of every image of ``x`` (uint8 from a Dataset, or already-normalised
    float), as a CPU LongTensor; eval mode, no grad, large batches (``bf16``: autocast on CUDA,
    as the network was trained)."""
    dev = _model_device(model)
    if dev.type == "cuda":
        batch_size = max(batch_size, CUDA_EVAL_BATCH)
    was_training = model.training
    model.eval()
    ds = dataset or (dataset_of(x) if x.dtype == torch.uint8 else None)
    out = []
    try:
        for i in range(0, x.shape[0], batch_size):
            xb = _as_input(x[i : i + batch_size], dev, ds, cl=dev.type != "mps")
            if dev.type == "cuda" and bf16:
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    logits = model(xb)
            else:
                logits = model(xb)
            out.append(logits.argmax(1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000, *, dataset: Dataset | None = None,
             bf16: bool = False) -> float:
    """Accuracy of ``model`` on (x, y), in [0, 1]."""
    if x.shape[0] == 0:
        return 0.0
    pred = predict(model, x, batch_size, dataset=dataset, bf16=bf16)
    return float((pred == y.cpu()).float().mean())
