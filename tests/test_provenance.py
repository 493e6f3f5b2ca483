"""Two-parent weight inheritance through the provenance map, and recombination of the DNA."""

import random

import pytest
import torch
from torch import nn

from lse.core.crossover import recombine
from lse.core.dna import initial_dna
from lse.core.mutations import mutate
from lse.core.provenance import Provenance, TensorSource
from lse.nn.build import build_model
from lse.nn.inherit import inherit


class Two(nn.Module):
    def __init__(self, rows=4, cols=3):
        super().__init__()
        self.a = nn.Linear(cols, rows, bias=False)
        self.b = nn.Linear(cols, rows, bias=False)


def _states():
    p = {"a.weight": torch.full((4, 3), 1.0), "b.weight": torch.full((4, 3), 2.0)}
    q = {"a.weight": torch.full((4, 3), 10.0), "b.weight": torch.full((5, 3), 20.0)}
    return {"P": p, "Q": q}


def test_default_and_prefix_parents_with_fallback():
    child = Two()
    rep = inherit(child, _states(), Provenance(default="P", by_prefix={"a.": "Q", "b.": "Q"}))
    assert torch.all(child.a.weight == 10.0)  # from Q
    assert torch.all(child.b.weight == 2.0)  # Q's has another shape: falls back to P
    assert rep.by_parent == {"Q": 1, "P": 1} and rep.kept == 2


def test_rows_from_two_parents_and_fan_in_repair():
    child = Two(rows=4, cols=2)
    fresh = child.b.weight.detach().clone()
    prov = Provenance(sources={
        "a.weight": (TensorSource("P", "a.weight", rows=(0, 1), into=(0, 1)),
                     TensorSource("Q", "a.weight", rows=(3,), into=(2,))),
    })
    rep = inherit(child, _states(), prov)
    w = child.a.weight.detach()
    assert torch.all(w[:2] == 1.0) and torch.all(w[2] == 10.0)  # rows from each parent, fan-in cut to 2
    assert not torch.all(w[3] == 10.0) and not torch.all(w[3] == 1.0)  # row 3: fresh
    assert torch.equal(child.b.weight.detach(), fresh)  # no source: untouched
    assert rep.by_parent == {"P": 1, "Q": 1} and rep.kept == 1 and rep.reinitialised == 1


def test_reset_and_blocked():
    child = Two()
    assert inherit(child, _states(), Provenance(reset_all=True)).kept == 0
    rep = inherit(child, _states(), Provenance(default="P", blocked=("a.",)))
    assert rep.kept_names == ["b.weight"]


def test_rows_and_into_go_together():
    with pytest.raises(ValueError):
        TensorSource("P", "x", rows=(0,))


@pytest.mark.parametrize("seed", range(20))
def test_recombined_child_is_valid_and_inherits_from_both(seed):
    rng = random.Random(seed)
    base = initial_dna(input_channels=1)
    for _ in range(6):  # a common ancestor with some convolutions
        base, _ = mutate(base, rng, {"insert_convolution": 1})
    a, b = base, base
    for _ in range(3):
        a, _ = mutate(a, rng)
        b, _ = mutate(b, rng)
    pa = build_model(a, (1, 16, 16), 10).state_dict()
    pb = build_model(b, (1, 16, 16), 10).state_dict()
    child, prov = recombine(a, "A", b, "B", random.Random(seed))
    assert child.learning_rate in (a.learning_rate, b.learning_rate)
    model = build_model(child, (1, 16, 16), 10)
    rep = inherit(model, {"A": pa, "B": pb}, prov)
    assert rep.kept + rep.reinitialised == len(model.state_dict())
    assert set(rep.by_parent) <= {"A", "B"} and rep.by_parent.get("A", 0) + rep.by_parent.get("B", 0) == rep.kept
    model(torch.zeros(2, 1, 16, 16)).sum().backward()  # builds, runs, trains


def test_recombination_takes_weights_from_both_over_many_draws():
    rng = random.Random(0)
    base = initial_dna(input_channels=1)
    for _ in range(5):
        base, _ = mutate(base, rng, {"insert_convolution": 1})
    pa = build_model(base, (1, 16, 16), 10).state_dict()
    pb = build_model(base, (1, 16, 16), 10).state_dict()
    seen = set()
    for s in range(10):
        child, prov = recombine(base, "A", base, "B", random.Random(s))
        seen |= set(inherit(build_model(child, (1, 16, 16), 10), {"A": pa, "B": pb}, prov).by_parent)
    assert seen == {"A", "B"}
