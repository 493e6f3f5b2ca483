"""FLOP accounting (section 3.5): hand-computed counts for simple DNAs, and the meta-tensor
count equals the count taken around real forward/backward passes on CPU tensors."""

from __future__ import annotations

import random

import pytest
import torch

from lse.nn.build import build_model
from lse.core.dna import DNA, initial_dna
from lse.nn.flops import FlopCount, count_flops, measure_flops
from lse.core.mutations import mutate


def chain(convs, skips=()):
    """v0 -> v10 -> v11 ... -> v1 through the given convs ((kh, kw, stride_log2, channels))."""
    names = ["v0"] + [f"v{10 + i}" for i in range(len(convs) - 1)] + ["v1"]
    edges = [
        {"id": f"e{30 + i}", "src": a, "dst": b, "kind": "conv", "filter_h": kh, "filter_w": kw,
         "stride_log2": s, "out_channels": ch}
        for i, ((kh, kw, s, ch), a, b) in enumerate(zip(convs, names, names[1:]))
    ]
    edges += [{"id": f"e{60 + i}", "src": a, "dst": b, "kind": "identity", "skip": True} for i, (a, b) in enumerate(skips)]
    return DNA.model_validate({"vertices": [{"id": "v0"}] + [{"id": v, "activation": "bn_relu"} for v in names[1:-1]] + [{"id": "v1"}],
                               "edges": edges, "learning_rate": 0.1, "input_id": "v0", "output_id": "v1", "next_id": 99})


def conv_macs(b, cin, cout, kh, kw, hout, wout):
    return b * cout * hout * wout * cin * kh * kw


def test_initial_dna_counts_only_the_classifier():
    # GAP -> Linear(1, 10): forward 2*B*1*10; backward: weight gradient only (the input needs none)
    f = count_flops(initial_dna(), (1, 28, 28), 10, 50)
    assert f == FlopCount(train_per_batch=2 * (2 * 50 * 10), eval_per_batch=2 * 50 * 10, params=20)


def test_single_convolution_forward_and_backward():
    B, EB = 50, 1000
    d = chain([(3.0, 3.0, 0.0, 8.0)])
    f = count_flops(d, (3, 32, 32), 10, B, EB)
    conv = 2 * conv_macs(B, 3, 8, 3, 3, 32, 32)  # 2 FLOPs per multiply-add
    lin = 2 * B * 8 * 10
    # training: conv forward + weight gradient (no input gradient for the data)
    #           + classifier forward, weight gradient, input gradient
    assert f.train_per_batch == conv + conv + 3 * lin == 2 * 22_118_400 + 3 * 8_000 == 44_260_800
    conv_e, lin_e = 2 * conv_macs(EB, 3, 8, 3, 3, 32, 32), 2 * EB * 8 * 10
    assert f.eval_per_batch == conv_e + lin_e
    assert f.params == 3 * 3 * 3 * 8 + 8 + 8 * 10 + 10
    assert f.cost(100, 5) == 100 * f.train_per_batch + 5 * f.eval_per_batch


def test_two_convolutions_second_one_needs_input_gradient_too():
    B = 10
    d = chain([(5.0, 3.0, 1.0, 4.0), (3.0, 3.0, 0.0, 6.0)])  # 5x3 stride 2 -> 14x14, then 3x3
    f = count_flops(d, (1, 28, 28), 10, B)
    c1 = 2 * conv_macs(B, 1, 4, 5, 3, 14, 14)
    c2 = 2 * conv_macs(B, 4, 6, 3, 3, 14, 14)
    lin = 2 * B * 6 * 10
    assert f.eval_per_batch == c1 + c2 + lin
    assert f.train_per_batch == 2 * c1 + 3 * c2 + 3 * lin


def test_skips_add_no_counted_flops():
    d1 = chain([(3.0, 3.0, 1.0, 4.0), (3.0, 3.0, 0.0, 6.0)])
    d2 = chain([(3.0, 3.0, 1.0, 4.0), (3.0, 3.0, 0.0, 6.0)], skips=[("v0", "v1")])
    assert count_flops(d1, (3, 32, 32), 10, 8) == count_flops(d2, (3, 32, 32), 10, 8)


def test_count_is_cached_and_eval_batch_defaults_to_batch():
    d = chain([(3.0, 3.0, 0.0, 8.0)])
    assert count_flops(d, (3, 32, 32), 10, 50) is count_flops(d, (3, 32, 32), 10, 50, 50)


def evolved(seed: int) -> DNA:
    rng, d = random.Random(seed), initial_dna()
    for _ in range(40):
        d, _ = mutate(d, rng)
    return d


@pytest.mark.parametrize("seed", range(24))
def test_meta_count_equals_count_on_real_cpu_tensors(seed):
    d = evolved(seed)
    shape, classes = ((3, 32, 32), 10) if seed % 2 else ((1, 28, 28), 100)
    meta = count_flops(d, shape, classes, 4, 6)
    torch.manual_seed(0)
    real = measure_flops(build_model(d, shape, classes), shape, classes, 4, 6, device="cpu")
    assert (meta.train_per_batch, meta.eval_per_batch) == real
    assert meta.params == sum(p.numel() for p in build_model(d, shape, classes).parameters())
    assert meta.train_per_batch > meta.eval_per_batch * 4 / 6  # backward is counted


def test_flops_per_example_of_a_batch_normalised_network_on_a_1x1_code():
    """Seed 000's most compressed codes are 1x1 maps: a batch of one cannot be counted there
    (training-mode batch norm needs two values per channel), so the per-example count of the
    two-step report counts two and halves, which is exact."""
    from lse.reports.twostep import flops_per_example

    d = chain([(3.0, 3.0, 0.0, 21.0), (1.0, 1.0, 0.0, 8.0)])  # v10: 21 channels, batch-normalised
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        count_flops(d, (2, 1, 1), 10, 1, 1)
    per = flops_per_example(d, (2, 1, 1), 10)
    assert per == count_flops(d, (2, 1, 1), 10, 50, 100).eval_per_batch // 100 > 0
    assert per == 2 * conv_macs(1, 2, 21, 3, 3, 1, 1) + 2 * conv_macs(1, 21, 8, 1, 1, 1, 1) + 2 * 8 * 10
