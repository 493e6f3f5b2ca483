"""Q7.8 fixed-point evaluation (seed 001, section 3.6).

The paper runs the multiplications of convolutions and fully connected layers in signed 16-bit
fixed point with 8 fractional bits (Q7.8: values k / 256 for integers k in [-32768, 32767], so
-128 .. 127.996), and everything else (bias additions, sums, batch-norm, ReLU, pooling) in
float; training stays float.  Here both operands of those multiplications -- the layer's input
and its weights -- are rounded to Q7.8 with torch's fake-quantise op
(``torch.fake_quantize_per_tensor_affine``, scale 1/256, zero point 0, range int16: round to
nearest with ties to even, saturate), and the layer then runs as usual.  A 16 x 16-bit
multiplier's full product of two Q7.8 numbers is exact; a float64 run reproduces integer
arithmetic exactly (tests/test_ea4cnn_fixedpoint.py checks it against int64 sums of products),
and the default float32 run rounds each product and sum at float32 precision (relative 2^-24),
as the paper's "the product is converted back to FP" does.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

FRACTION_BITS = 8
SCALE = 1.0 / (1 << FRACTION_BITS)
QMIN, QMAX = -(1 << 15), (1 << 15) - 1


def to_q78(x: torch.Tensor) -> torch.Tensor:
    """``x`` rounded to the nearest Q7.8 value (ties to even), saturated to [-128, 127.99609375];
    same dtype as ``x`` (float32 or float64)."""
    if x.dtype == torch.float64:  # the op takes float32; every Q7.8 value is exact in float32
        return torch.fake_quantize_per_tensor_affine(x.float(), SCALE, 0, QMIN, QMAX).double()
    return torch.fake_quantize_per_tensor_affine(x, SCALE, 0, QMIN, QMAX)


@contextlib.contextmanager
def fixed_point(model: nn.Module):
    """Within the block, every Conv2d and Linear of ``model`` multiplies in Q7.8: its weights
    are rounded (restored on exit) and its input is rounded by a forward pre-hook.  Biases stay
    float: they are added, not multiplied."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    saved = [m.weight.detach().clone() for m in layers]
    hooks = [m.register_forward_pre_hook(lambda _m, args: (to_q78(args[0]), *args[1:])) for m in layers]
    try:
        with torch.no_grad():
            for m in layers:
                m.weight.copy_(to_q78(m.weight))
        yield model
    finally:
        for h in hooks:
            h.remove()
        with torch.no_grad():
            for m, w in zip(layers, saved):
                m.weight.copy_(w)
