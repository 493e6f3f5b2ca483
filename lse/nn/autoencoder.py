"""The convolutional autoencoder of seed 000 in torch: the genome's encoder, its mirrored
decoder, MSE training and the two measurements its objectives use.

Model (paper, Figure 1).  Encoder layer ``Lk`` (conv): ``encoder.Lk.conv`` + ``encoder.Lk.bn`` +
ReLU; (pool): max-pool of window = stride = size.  Decoder, in reverse order: a conv becomes
``decoder.Lk.deconv``, a transposed convolution of the same kernel, stride and padding back to
the conv's input channels and EXACT input size (its ``output_padding`` makes up what the
strided conv floored away), with BN + ReLU, except the mirror of the first convolution, which
outputs the input's channels with no activation (the reconstruction of standardised pixels);
a pool becomes nearest up-sampling to the exact size the pool received.  Tensor names come
from the layer ids, which never change, so inheritance copies a layer wherever it moved.

Reconstruction accuracy (the paper never defines it; decided here): the fraction of the
validation pixels' variance the reconstruction explains, R = max(0, 1 - SSE/SST) with SSE the
squared error of the reconstruction and SST the squared deviation of the pixels from their
per-channel mean over the validation split, both on standardised pixels.  Why: it is a direct
function of the MSE the autoencoder minimises, so the objective and the loss agree; it is
scale-free (comparable across data sets and channel counts); it lies in [0, 1] with 1 a perfect
copy and 0 no better than a flat grey image, which is what TOPSIS's fixed ideal (1, 1) and
anti-ideal (0, 0) assume.  A tolerance-based "pixel accuracy" (|x' - x| <= 5% of the range) is
recorded beside it for comparison, not selected on.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lse.core.autoencoder import AutoencoderGenome, shapes
from lse.errors import StopRequested

PIXEL_TOLERANCE = 0.05  # of the 0-255 range, for the recorded (not selected) pixel accuracy
STOP_POLL_STEPS = 10


class Autoencoder(nn.Module):
    def __init__(self, genome: AutoencoderGenome) -> None:
        super().__init__()
        s = shapes(genome.input_shape, genome.layers)
        if s is None:
            raise ValueError(f"autoencoder layers do not fit input {genome.input_shape}")
        self.order = [layer.id for layer in genome.layers]
        self.encoder = nn.ModuleDict()
        self.decoder = nn.ModuleDict()
        first_conv = next(layer.id for layer in genome.layers if layer.kind == "conv")
        for i, layer in enumerate(genome.layers):
            (cin, h, w), (cout, _, _) = s[i], s[i + 1]
            if layer.kind == "pool":
                self.encoder[layer.id] = nn.MaxPool2d(layer.size)
                self.decoder[layer.id] = nn.Upsample(size=(h, w), mode="nearest")
                continue
            (kh, kw), (ph, pw), st = layer.kernel, layer.padding(), layer.stride
            self.encoder[layer.id] = nn.Sequential()
            self.encoder[layer.id].add_module("conv", nn.Conv2d(cin, cout, (kh, kw), st, (ph, pw), bias=False))
            self.encoder[layer.id].add_module("bn", nn.BatchNorm2d(cout))
            self.encoder[layer.id].add_module("relu", nn.ReLU())
            # what the strided conv floored away: (H + 2p - k) mod s, always < s
            op = ((h + 2 * ph - kh) % st, (w + 2 * pw - kw) % st)
            dec = nn.Sequential()
            last = layer.id == first_conv
            dec.add_module("deconv", nn.ConvTranspose2d(cout, cin, (kh, kw), st, (ph, pw), output_padding=op,
                                                        bias=last))
            if not last:
                dec.add_module("bn", nn.BatchNorm2d(cin))
                dec.add_module("relu", nn.ReLU())
            self.decoder[layer.id] = dec

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        for lid in self.order:
            x = self.encoder[lid](x)
        return x

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        for lid in reversed(self.order):
            z = self.decoder[lid](z)
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class Encoder(nn.Module):
    """The encoder half alone (stage 2 and the composed model): same tensor names as in the
    autoencoder under ``encoder.``, so an autoencoder's weights load into it directly."""

    def __init__(self, genome: AutoencoderGenome) -> None:
        super().__init__()
        full = Autoencoder(genome)
        self.order = full.order
        self.encoder = full.encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for lid in self.order:
            x = self.encoder[lid](x)
        return x


def build_autoencoder(genome: AutoencoderGenome, input_shape: tuple[int, int, int], num_classes: int = 0) -> Autoencoder:
    """The builder of genome kind "autoencoder" (lse.nn.genomes); ``num_classes`` is unused."""
    if tuple(input_shape) != tuple(genome.input_shape):
        raise ValueError(f"autoencoder genome is for inputs {tuple(genome.input_shape)}, the data are {tuple(input_shape)}")
    return Autoencoder(genome)


def encoder_state(state: dict) -> dict:
    """The encoder's tensors of an autoencoder's state dict."""
    return {k: v for k, v in state.items() if k.startswith("encoder.")}


def autoencoder_flops(genome: AutoencoderGenome, batch_size: int, eval_batch_size: int) -> tuple[int, int, int]:
    """(F_t per batch: forward + MSE backward, F_v per batch: forward, parameters), on meta."""
    with torch.device("meta"):
        model = Autoencoder(genome)
    x = torch.zeros((batch_size, *genome.input_shape), device="meta")
    model.train()
    with FlopCounterMode(display=False) as counter:
        F.mse_loss(model(x), x).backward()
    train = counter.get_total_flops()
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros((eval_batch_size, *genome.input_shape), device="meta"))
    params = sum(p.numel() for p in model.parameters())
    return int(train), int(counter.get_total_flops()), int(params)


def encoder_flops(genome: AutoencoderGenome) -> int:
    """Forward FLOPs of the encoder on ONE example (the composed model's first part)."""
    with torch.device("meta"):
        enc = Encoder(genome).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        enc(torch.zeros((1, *genome.input_shape), device="meta"))
    return int(counter.get_total_flops())


@dataclass
class AEResult:
    mse: float | None  # per standardised pixel, validation split
    reconstruction: float | None  # R = max(0, 1 - SSE/SST) (module doc)
    pixel_accuracy: float | None
    steps: int
    examples: int
    train_seconds: float
    eval_seconds: float
    failed_reason: str | None = None


def train_autoencoder(model: Autoencoder, ds, *, steps: int, learning_rate: float, momentum: float,
                      weight_decay: float, batch_size: int, seed: int, should_stop=lambda: False,
                      eval_batch_size: int = 1000, device: torch.device | str = "cpu") -> AEResult:
    """SGD with momentum on the MSE between the standardised input and its reconstruction
    (no augmentation: the target is the input itself), then the validation measurements."""
    dev = torch.device(device)
    model.to(dev).train()
    scale, shift = ds.normalization(dev)
    opt = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=momentum, weight_decay=weight_decay)
    gen = torch.Generator(device=dev)
    gen.manual_seed(int(seed))
    n = ds.train_x.shape[0]
    perm, pos = torch.empty(0, dtype=torch.int64), 0
    t0 = time.time()
    done = 0
    for step in range(steps):
        if step % STOP_POLL_STEPS == 0 and step and should_stop():
            raise StopRequested(f"stop requested after {step} steps")
        if pos + batch_size > perm.numel():
            perm, pos = torch.randperm(n, device=dev, generator=gen), 0
        idx = perm[pos: pos + batch_size]
        pos += batch_size
        x = ds.train_x[idx].to(dev).float().mul_(scale).add_(shift)
        loss = F.mse_loss(model(x), x)
        v = loss.item()
        done = step + 1
        if not math.isfinite(v):
            return AEResult(None, None, None, done, done * batch_size, time.time() - t0, 0.0,
                            f"diverged: loss {v} at step {done}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            return AEResult(None, None, None, done, done * batch_size, time.time() - t0, 0.0,
                            f"diverged: non-finite weights ({name}) after {done} steps")
    train_seconds = time.time() - t0
    t1 = time.time()
    mse, r, acc = measure(model, ds.val_x, ds, eval_batch_size, dev)
    return AEResult(mse, r, acc, done, done * batch_size, train_seconds, time.time() - t1)


@torch.no_grad()
def measure(model: Autoencoder, x_uint8: torch.Tensor, ds, batch_size: int = 1000,
            device: torch.device | str = "cpu") -> tuple[float, float, float]:
    """(MSE per standardised pixel, reconstruction R, pixel accuracy) of ``model`` on images
    ``x_uint8`` (normalised with ``ds``'s training statistics)."""
    dev = torch.device(device)
    was = model.training
    model.eval()
    scale, shift = ds.normalization(dev)
    c = x_uint8.shape[1]
    sse = torch.zeros((), dtype=torch.float64)
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    close = 0
    count = 0
    tol = PIXEL_TOLERANCE * 255.0
    try:
        for i in range(0, x_uint8.shape[0], batch_size):
            xb = x_uint8[i: i + batch_size].to(dev).float()
            xn = xb * scale + shift
            rec = model(xn)
            sse += ((rec - xn) ** 2).sum().double().cpu()
            total += xn.double().sum(dim=(0, 2, 3)).cpu()
            total_sq += (xn.double() ** 2).sum(dim=(0, 2, 3)).cpu()
            back = (rec - shift) / scale  # to the 0-255 scale
            close += int(((back - xb).abs() <= tol).sum())
            count += xn.numel()
    finally:
        model.train(was)
    per_channel = count / c
    sst = float((total_sq - total ** 2 / per_channel).sum())
    mse = float(sse) / count
    r = max(0.0, 1.0 - float(sse) / sst) if sst > 0 else 0.0
    if not math.isfinite(mse):
        raise ValueError("non-finite reconstruction error")
    return mse, r, close / count
