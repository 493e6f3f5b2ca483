"""DNA -> nn.Module: stable names, skip merges summed and reshaped as in section 3.2, GAP +
classifier on the output vertex, and the property "any chain of mutations builds and trains"."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lse.nn.build import build_model
from lse.core.dna import DNA, initial_dna
from lse.core.mutations import mutate


def conv(eid, src, dst, *, k=(3.0, 3.0), s=0.0, ch=8.0):
    return {"id": eid, "src": src, "dst": dst, "kind": "conv", "filter_h": k[0], "filter_w": k[1],
            "stride_log2": s, "out_channels": ch}


def skip(eid, src, dst):
    return {"id": eid, "src": src, "dst": dst, "kind": "identity", "skip": True}


def make(vertices, edges, next_id=50):
    return DNA.model_validate({"vertices": vertices, "edges": edges, "learning_rate": 0.1,
                               "input_id": "v0", "output_id": "v1", "next_id": next_id})


def reachable(dna: DNA, start: str, forward: bool) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        v = todo.pop()
        for e in dna.edges:
            a, b = (e.src, e.dst) if forward else (e.dst, e.src)
            if a == v and b not in seen:
                seen.add(b)
                todo.append(b)
    return seen


def test_initial_dna_is_gap_plus_linear_classifier_on_the_output():
    m = build_model(initial_dna(), (3, 32, 32), 10)
    assert sorted(m.state_dict()) == ["classifier.bias", "classifier.weight"]
    x = torch.randn(4, 3, 32, 32)
    assert torch.allclose(m(x), m.classifier(x.mean(dim=(2, 3))))


def test_names_derive_from_stable_ids():
    d = make([{"id": "v0"}, {"id": "v3", "activation": "bn_relu"}, {"id": "v1"}],
             [conv("e2", "v0", "v3", ch=16.0), conv("e7", "v3", "v1", s=1.0, ch=32.0)])
    m = build_model(d, (3, 32, 32), 10)
    assert set(m.state_dict()) == {
        "edges.e2.weight", "edges.e2.bias", "edges.e7.weight", "edges.e7.bias",
        "vertices.v3.bn.weight", "vertices.v3.bn.bias", "vertices.v3.bn.running_mean",
        "vertices.v3.bn.running_var", "vertices.v3.bn.num_batches_tracked",
        "classifier.weight", "classifier.bias",
    }
    assert m.state_dict()["edges.e7.weight"].shape == (32, 16, 3, 3)
    assert m.state_dict()["classifier.weight"].shape == (10, 32)  # reads the OUTPUT vertex
    assert m.shapes == {"v0": (3, 32, 32), "v3": (16, 32, 32), "v1": (32, 16, 16)}


def test_asymmetric_filters_and_strides():
    d = make([{"id": "v0"}, {"id": "v1"}], [conv("e2", "v0", "v1", k=(5.0, 1.0), s=2.0, ch=4.0)])
    m = build_model(d, (1, 28, 28), 10)
    conv_ = m.edges["e2"]
    assert conv_.kernel_size == (5, 1) and conv_.stride == (4, 4) and conv_.padding == (2, 0)
    assert m.shapes["v1"] == (4, 7, 7)


def test_skip_merge_is_summed_with_nearest_downsampling_and_zero_padding():
    # v0 (3x8x8) -conv s2 8ch-> v1, skip v0 -> v1: out = conv(x) + pad(nearest(x))
    d = make([{"id": "v0"}, {"id": "v1"}], [conv("e2", "v0", "v1", s=1.0, ch=8.0), skip("e3", "v0", "v1")])
    m = build_model(d, (3, 8, 8), 5).eval()
    x = torch.randn(2, 3, 8, 8)
    merged = m.edges["e2"](x) + F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, 5))
    assert torch.allclose(m(x), m.classifier(merged.mean(dim=(2, 3))), atol=1e-6)


def test_skip_merge_truncates_channels_and_upsamples_and_applies_activation_after_sum():
    # v0 -conv 6ch-> v2 -conv 2ch (bn_relu at v1)-> v1 ; skip v2 -> v1 (6 ch truncated to 2)
    d = make([{"id": "v0"}, {"id": "v2"}, {"id": "v1", "activation": "bn_relu"}],
             [conv("e3", "v0", "v2", ch=6.0), conv("e4", "v2", "v1", ch=2.0), skip("e5", "v2", "v1")])
    m = build_model(d, (1, 6, 6), 3).eval()
    x = torch.randn(2, 1, 6, 6)
    h = m.edges["e3"](x)
    merged = m.vertices["v1"](m.edges["e4"](h) + h[:, :2])
    assert torch.allclose(m(x), m.classifier(merged.mean(dim=(2, 3))), atol=1e-6)


def _merged_at(m, vertex: str, x: torch.Tensor) -> torch.Tensor:
    """The sum of a bn_relu vertex's inputs (what its batch-norm receives) in a forward of x."""
    got = []
    h = m.vertices[vertex].register_forward_hook(lambda mod, inp, out: got.append(inp[0].detach()))
    try:
        m(x)
    finally:
        h.remove()
    return got[0]


@pytest.mark.parametrize("size, strides, rows", [
    (7, [1.0], [0, 2, 4, 6]),  # one stride-2 conv: 7 -> 4 centres on 0, 2, 4, 6
    (28, [1.0, 1.0, 1.0], [0, 8, 16, 24]),  # Fashion-MNIST's 28 -> 14 -> 7 -> 4 chain
    (28, [3.0], [0, 8, 16, 24]),  # one stride-8 conv, same grid
    (8, [1.0, 0.0], [0, 2, 4, 6]),  # a stride-1 conv on the way changes nothing
])
def test_skip_downsampling_picks_the_backbone_convolutions_centres(size, strides, rows):
    # Issue 20: F.interpolate(nearest) picked 0, 1, 3, 5 for 7 -> 4 and 0, 7, 14, 21 for
    # 28 -> 4.  Zeroth-order resizing must sample the grid the strided convolutions centre on.
    vs = [f"v{10 + i}" for i in range(len(strides) - 1)]
    path = ["v0", *vs, "v1"]
    edges = [conv(f"e{30 + i}", a, b, s=s, ch=2.0) for i, (a, b, s) in enumerate(zip(path, path[1:], strides))]
    d = make([{"id": "v0"}, *({"id": v} for v in vs), {"id": "v1", "activation": "bn_relu"}],
             [*edges, skip("e49", "v0", "v1")])
    m = build_model(d, (2, size, size), 3).eval()
    assert m.shapes["v1"][1:] == (len(rows), len(rows))
    x = torch.randn(2, 2, size, size)
    y = x
    for i in range(len(strides)):
        y = m.edges[f"e{30 + i}"](y)
    merged = _merged_at(m, "v1", x)
    sampled = x[:, :, rows][:, :, :, rows]  # rows and columns on the backbone's grid
    assert torch.allclose(merged, y + sampled, atol=1e-6)


def test_skip_truncated_and_downsampled_sums_the_sampled_values():
    # v0 (2x4x4) -s2-> v2 (2x2) -s1-> v4 -s1-> v1 (bn_relu), skip v0 -> v1: values at 0, 2
    d = make([{"id": "v0"}, {"id": "v2"}, {"id": "v4"}, {"id": "v1", "activation": "bn_relu"}],
             [conv("e3", "v0", "v2", s=1.0, ch=2.0), conv("e5", "v2", "v4", s=0.0, ch=2.0),
              conv("e6", "v4", "v1", s=0.0, ch=1.0), skip("e7", "v0", "v1")])
    m = build_model(d, (2, 4, 4), 3).eval()
    assert m.shapes["v1"] == (1, 2, 2)  # the primary path decides
    x = torch.randn(3, 2, 4, 4)
    primary = m.edges["e6"](m.edges["e5"](m.edges["e3"](x)))
    assert torch.allclose(_merged_at(m, "v1", x), primary + x[:, :1, ::2, ::2], atol=1e-6)


def test_spatial_size_never_collapses():
    d = make([{"id": "v0"}, {"id": "v2"}, {"id": "v1"}],
             [conv("e3", "v0", "v2", s=5.0, ch=4.0), conv("e4", "v2", "v1", s=3.0, ch=4.0, k=(9.0, 9.0))])
    m = build_model(d, (1, 28, 28), 10)
    assert m.shapes["v2"][1:] == (1, 1) and m.shapes["v1"][1:] == (1, 1)
    out = m(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 10)


def test_channels_last_input_works():
    rng, d = random.Random(0), initial_dna()
    for _ in range(20):
        d, _ = mutate(d, rng)
    m = build_model(d, (3, 16, 16), 10).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 16, 16).to(memory_format=torch.channels_last)
    assert m(x).shape == (2, 10)


def test_bad_input_shape_is_refused():
    with pytest.raises(ValueError):
        build_model(initial_dna(), (32, 32), 10)  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seeds=st.integers(0, 50).flatmap(lambda n: st.lists(st.integers(0, 2**32 - 1), min_size=n, max_size=n)))
@example(seeds=list(range(50)))
@example(seeds=list(range(1000, 1050)))
def test_any_chain_of_mutations_builds_and_trains(seeds):
    d = initial_dna()
    for s in seeds:
        d, _ = mutate(d, random.Random(s))
    assert DNA.from_json(d.to_json()) == d
    ids = {v.id for v in d.vertices}
    # every vertex lies on a path from input to output
    assert reachable(d, d.input_id, True) == ids == reachable(d, d.output_id, False)
    for shape, classes in (((3, 32, 32), 10), ((1, 28, 28), 7)):
        torch.manual_seed(0)
        m = build_model(d, shape, classes)
        logits = m(torch.randn(2, *shape))
        assert logits.shape == (2, classes) and torch.isfinite(logits).all()
        F.cross_entropy(logits, torch.tensor([0, 1])).backward()
        # every parameter receives a gradient: no branch is built and then thrown away
        assert all(p.grad is not None for p in m.parameters())
