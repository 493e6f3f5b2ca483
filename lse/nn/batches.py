"""Training batches drawn on the device, with every random choice made one epoch ahead.

A training step must draw a batch, augment it and convert it to float.  Done step by step on
the host, that is a dozen small kernel launches and several random draws per step: on a GPU it
cost as much as the training step of a small network (issue 27: 10,183 steps/s without
augmentation, 3,703 with).  Here the random choices of a whole epoch are drawn at once (one
permutation, every crop offset and mirror flag), and a step only *indexes* them with a step
counter that lives on the device.  A step is then device work alone, with fixed shapes and no
host sync, so it can be captured in a CUDA graph together with the forward, backward and
optimizer step, and replayed.  The eager loop runs the very same code, so a graphed and an eager
training of one seed see the same batches.

The epoch's remainder is dropped, as before: every batch has the same shape.
"""

from __future__ import annotations

import torch

from lse.nn.data import Dataset, augment_draws, crop_flip, normalize

#: pixels of zero padding before the random crop (He et al. 2016)
PAD = 4


class BatchPlan:
    """Batches of ``batch_size`` (x float, y long) from ``ds``'s training split on ``dev``.

    Call :meth:`advance` on the host before each step (it redraws the plan at the start of an
    epoch, outside any graph), then :meth:`draw` (device ops only; graph-safe).  ``seed`` fixes
    the batch order and the augmentation; ``fraction`` < 1 trains on one random subset of that
    size for the whole training (seed 002's 10%)."""

    def __init__(self, ds: Dataset, batch_size: int, seed: int, augment: bool, dev: torch.device,
                 channels_last: bool = False, fraction: float = 1.0):
        self.x, self.y = ds.train_x, ds.train_y
        self.batch_size = b = int(batch_size)
        self.augment = augment
        self.flip = bool(ds.flip)
        self.scale, self.shift = ds.normalization(dev)
        self.channels_last = channels_last
        self.dev = dev
        self.gen = torch.Generator(device=dev)
        self.gen.manual_seed(int(seed))
        if fraction < 1.0:
            keep = torch.randperm(self.x.shape[0], device=dev, generator=self.gen)[: max(1, round(fraction * self.x.shape[0]))]
            self.x, self.y = self.x[keep], self.y[keep]
        self.n = int(self.x.shape[0])
        # steps per epoch; a data set smaller than one batch repeats its permutation to fill it
        self.steps_per_epoch = max(1, self.n // b)
        self.perm = torch.empty((self.steps_per_epoch, b), dtype=torch.int64, device=dev)
        self.offset: torch.Tensor | None = None
        self.mirror: torch.Tensor | None = None
        self.step = torch.zeros(1, dtype=torch.int64, device=dev)  # step within the epoch (device)
        self._host_step = self.steps_per_epoch  # forces a plan at the first advance()

    def advance(self) -> None:
        """Host side, before each step: at an epoch's start, draw its permutation and augmentation
        into the same tensors (a captured graph keeps reading them) and reset the counter."""
        if self._host_step < self.steps_per_epoch:
            self._host_step += 1
            return
        b, e = self.batch_size, self.steps_per_epoch
        perm = torch.randperm(self.n, device=self.dev, generator=self.gen)
        if self.n < b:
            perm = perm.repeat(-(-b // self.n))
        self.perm.copy_(perm[: e * b].view(e, b))
        if self.augment:
            offset, mirror = augment_draws(b, self.gen, self.dev, flip=self.flip, pad=PAD, leading=(e,))
            if self.offset is None:
                self.offset, self.mirror = offset, mirror
            else:
                self.offset.copy_(offset)
                if mirror is not None:
                    self.mirror.copy_(mirror)
        self.step.zero_()
        self._host_step = 1

    def draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's batch, from device tensors only; moves the device counter on."""
        b = self.batch_size
        idx = self.perm.index_select(0, self.step).view(b)
        # Normalise, then augment: the zeros augmentation pads are then the training mean, not
        # raw black (-mean/std after normalising; issue 20).
        xf = normalize(self.x.index_select(0, idx), self.scale, self.shift)
        if self.augment:
            offset = self.offset.index_select(0, self.step).view(b, 2)
            mirror = self.mirror.index_select(0, self.step).view(b, 1, 1) if self.mirror is not None else None
            xf = crop_flip(xf, offset, mirror, pad=PAD)
        if self.channels_last:
            xf = xf.contiguous(memory_format=torch.channels_last)
        y = self.y.index_select(0, idx)
        self.step.add_(1)
        return xf, y

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One step's batch, outside a graph: :meth:`advance` then :meth:`draw`."""
        self.advance()
        return self.draw()
