"""Q7.8 fixed point (seed 001, section 3.6) against exact integer arithmetic on small tensors."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from torch import nn

from lse.nn.fixedpoint import fixed_point, to_q78


def q78_int(x: float) -> int:
    """The exact reference: x * 256 rounded to the nearest integer, ties to even (Python's
    round on an exact Fraction), saturated to int16."""
    return max(-32768, min(32767, round(Fraction(x) * 256)))


@pytest.mark.parametrize("x", [0.0, 1.0, -1.0, 0.5 / 256, 1.5 / 256, 2.5 / 256, -0.5 / 256, -1.5 / 256,  # ties
                               0.3, -0.3, 1 / 3, 3.14159, 127.99609375, 127.998, 128.0, 1e6, -128.0, -128.002, -1e6,
                               0.00195, 0.001953125, 0.0019531])
def test_rounding_and_saturation_match_integer_arithmetic(x):
    got = to_q78(torch.tensor([x], dtype=torch.float64)).item()
    assert Fraction(got) == Fraction(q78_int(x), 256)


def test_saturation_bounds_and_grid():
    v = to_q78(torch.linspace(-300, 300, 20001))
    assert v.max().item() == 32767 / 256 and v.min().item() == -128.0
    assert torch.equal(v * 256, torch.round(v * 256))  # every value on the Q7.8 grid


def _int_linear(x, w, b):
    xi = [[q78_int(float(v)) for v in row] for row in x.tolist()]
    wi = [[q78_int(float(v)) for v in row] for row in w.tolist()]
    return [[Fraction(sum(a * c for a, c in zip(xr, wr)), 65536) + Fraction(float(bb)) for wr, bb in zip(wi, b.tolist())]
            for xr in xi]


def test_linear_layer_multiplies_in_q78_exactly():
    torch.manual_seed(0)
    layer = nn.Linear(7, 3).double()
    with torch.no_grad():
        layer.weight.mul_(40)  # some weights beyond +-128: saturation inside a layer
    x = torch.randn(4, 7, dtype=torch.float64) * 50
    w0 = layer.weight.detach().clone()
    with fixed_point(layer):
        y = layer(x)
    assert torch.equal(layer.weight, w0)  # restored on exit
    want = _int_linear(x, w0, layer.bias.detach())
    assert [[Fraction(v) for v in row] for row in y.tolist()] == want


def test_conv_layer_multiplies_in_q78_exactly():
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 3, 3, padding=1).double()
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64) * 3
    with fixed_point(conv):
        y = conv(x)
    xi = torch.tensor([[q78_int(float(v)) for v in x.flatten().tolist()]], dtype=torch.int64).view_as(x)
    wi = torch.tensor([q78_int(float(v)) for v in conv.weight.flatten().tolist()], dtype=torch.int64).view_as(conv.weight)
    xp = torch.nn.functional.pad(xi, (1, 1, 1, 1))
    for o in range(3):
        for i in range(4):
            for j in range(4):
                acc = int((xp[0, :, i:i + 3, j:j + 3] * wi[o]).sum())  # exact int64 sum of products
                assert Fraction(y[0, o, i, j].item()) == Fraction(acc, 65536) + Fraction(conv.bias[o].item())


def test_fixed_point_changes_only_conv_and_linear_and_is_close_to_float():
    from lse.core.layerlist import Conv, LayerList, Pool
    from lse.nn.layerlist import build_layerlist

    g = LayerList(layers=(Conv(id=0, kernel=3, filters=4, padding=1), Pool(id=1, size=2, stride=2)), fc_width=6,
                  learning_rate=0.1, next_id=2)
    net = build_layerlist(g, (1, 8, 8), 10).eval()
    x = torch.rand(5, 1, 8, 8)
    y = net(x)
    with fixed_point(net):
        yq = net(x)
    assert not torch.equal(y, yq) and torch.allclose(y, yq, atol=0.05)
    assert torch.equal(net(x), y)  # weights restored
