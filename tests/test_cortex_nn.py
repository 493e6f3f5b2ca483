"""Seed 002 (PyCortex), the torch side: masked kernels of their own shapes, N(0, 0.1)
initialisation, Lamarckian inheritance of nodes through the provenance map, and a real
offspring with its fitness before training."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from lse.core import cortex
from lse.core.cortex import ConvLayer, CortexGenome
from lse.core.provenance import Provenance, TensorSource
from lse.nn.cortex import CortexConv, CortexNet, build_cortex
from lse.nn.inherit import inherit


@pytest.mark.parametrize("shapes,stride", [
    (((1, 1), (3, 3), (5, 1), (1, 7), (3, 5)), (1, 1)),
    (((3, 1), (1, 3)), (2, 1)),
    (((5, 5), (1, 1)), (2, 3)),
])
def test_a_masked_kernel_equals_a_convolution_of_its_own_shape(shapes, stride):
    torch.manual_seed(0)
    layer = CortexConv(3, shapes, stride)
    x = torch.randn(2, 3, 15, 16)
    y = layer(x)
    for j, (h, w) in enumerate(shapes):
        own = F.conv2d(x, layer.kernels[j], layer.bias[j:j + 1], stride, (h // 2, w // 2))
        assert torch.allclose(y[:, j:j + 1], own, atol=1e-5), (h, w)
    # the stacked weight is zero outside each kernel's shape, and so is its gradient
    wt = layer.weight()
    mask = layer.mask()
    assert torch.all(wt * (1 - mask) == 0)
    stacked = wt.detach().clone().requires_grad_(True)
    F.conv2d(x, stacked * mask, None, stride, layer.padding).square().sum().backward()
    assert torch.all(stacked.grad * (1 - mask) == 0)
    y.square().sum().backward()
    assert [tuple(k.grad.shape[2:]) for k in layer.kernels] == list(shapes)


def test_weights_are_drawn_from_n_0_0_1():
    torch.manual_seed(0)
    net = CortexNet(CortexGenome(conv=(ConvLayer(kernels=((3, 3),) * 64),), fc=(200,)), (1, 28, 28), 10)
    w = torch.cat([p.flatten() for n, p in net.named_parameters() if "bias" not in n])
    assert abs(w.mean().item()) < 0.005 and w.std().item() == pytest.approx(0.1, rel=0.02)


def test_inheritance_follows_the_node_provenance_with_centred_kernels():
    a = CortexGenome(conv=(ConvLayer(kernels=((3, 3), (1, 1))),), fc=(3,), input=(1, 12, 12), classes=2)
    b = CortexGenome(conv=(ConvLayer(kernels=((1, 1), (3, 1))),), fc=(3,), input=(1, 12, 12), classes=2)
    torch.manual_seed(0)
    ma, mb = build_cortex(a, (1, 12, 12), 2), build_cortex(b, (1, 12, 12), 2)
    draft = cortex.draft_of(a)
    draft.layers[0].origins[1] = cortex.Origin(1, "conv", 0, 1)  # conv node 1 from b (3x1)
    draft.layers[0].kernels[1] = (3, 1)
    draft.layers[0].kernels[0] = (5, 3)  # kernel 0 grown from 3x3: keeps its centre
    draft.layers[1].origins[2] = cortex.Origin(1, "fc", 0, 2)  # fc node 2 from b
    child_g = draft.genome()
    prov = cortex.provenance(draft, ["A", "B"], [a, b])
    child = build_cortex(child_g, (1, 12, 12), 2)
    rep = inherit(child, {"A": ma.state_dict(), "B": mb.state_dict()}, prov)
    sd, sa, sb = child.state_dict(), ma.state_dict(), mb.state_dict()
    assert torch.equal(sd["conv.0.kernels.0"][:, :, 1:4, :], sa["conv.0.kernels.0"])  # centre of 5x3
    assert torch.equal(sd["conv.0.kernels.1"], sb["conv.0.kernels.1"])
    assert torch.equal(sd["fc.0.weight"][:2], sa["fc.0.weight"][:2])
    assert torch.equal(sd["fc.0.weight"][2], sb["fc.0.weight"][2])
    assert torch.equal(sd["out.weight"], sa["out.weight"])
    # A: kernel 0, conv bias, fc weight, fc bias, out weight, out bias; B: kernel 1, conv bias, fc weight, fc bias
    assert rep.by_parent == {"A": 6, "B": 4}


def test_fan_in_map_copies_columns_and_keeps_new_inputs_fresh():
    torch.manual_seed(0)
    src = {"w": torch.arange(12.0).view(3, 4)}
    child = torch.nn.Module()
    child.w = torch.nn.Parameter(torch.full((2, 5), -1.0))
    prov = Provenance(sources={"w": TensorSource("P", "w", rows=(2, 0), into=(0, 1), cols=(3, None, 0, 1, None))})
    inherit(child, {"P": src}, prov)
    assert child.w.tolist() == [[11.0, -1.0, 8.0, 9.0, -1.0], [3.0, -1.0, 0.0, 1.0, -1.0]]


def test_algorithm_offspring_on_real_records(tmp_path):
    """vary() of two same-species records: node-level crossover, one mutation, provenance that
    builds and inherits; the child is of the parents' species unless the mutation was structural."""
    from lse.algorithms import make_algorithm
    from lse.config import ExperimentConfig
    from lse.core.records import IndividualRecord, new_id

    cfg = ExperimentConfig(algorithm={"name": "pycortex", "options": {"ecosystem_limit": 10}})
    algo = make_algorithm(cfg)
    gen = CortexGenome(conv=(ConvLayer(kernels=((1, 1),) * 4),), fc=(6,), input=(1, 28, 28), classes=10)
    recs = [IndividualRecord(id=new_id(), genome="cortex", dna=gen.model_dump(mode="json"), fitness=f,
                             val_accuracy=f, species="c4.f6", age=2, params=1000,
                             extra={"step": "continue", "input_shape": [1, 28, 28], "classes": 10})
            for f in (0.8, 0.6)]
    child = algo.offspring(recs, {recs[0].id: 0.7, recs[1].id: 0.3}, {"c4.f6"}, random.Random(0))
    assert child.genome == "cortex" and child.parents == (recs[0].id, recs[1].id) and child.age == 1
    torch.manual_seed(0)
    states = {r.id: build_cortex(gen, (1, 28, 28), 10).state_dict() for r in recs}
    model = build_cortex(child.dna, (1, 28, 28), 10)
    rep = inherit(model, states, child.provenance)
    assert rep.kept > 0 and set(rep.by_parent) <= {r.id for r in recs}
