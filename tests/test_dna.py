"""DNA graph: validation names the bad field, JSON round trip is exact, helpers, rendering."""

from __future__ import annotations

import json
import random

import pytest

from lse.core.dna import DNA, DNA_SCHEMA_VERSION, initial_dna, render_dot, render_line
from lse.errors import DNAError
from lse.core.mutations import mutate


def conv(eid, src, dst, *, fh=3.0, fw=3.0, s=0.0, ch=8.0):
    return {"id": eid, "src": src, "dst": dst, "kind": "conv", "skip": False,
            "filter_h": fh, "filter_w": fw, "stride_log2": s, "out_channels": ch}


def ident(eid, src, dst, skip=False):
    return {"id": eid, "src": src, "dst": dst, "kind": "identity", "skip": skip}


def two_convs() -> dict:
    """v0 -C3x3/1x32-> v3 -C3x3/2x64-> v1, bn_relu on v3."""
    return {
        "vertices": [{"id": "v0"}, {"id": "v3", "activation": "bn_relu"}, {"id": "v1"}],
        "edges": [conv("e2", "v0", "v3", ch=32.0), conv("e4", "v3", "v1", s=1.0, ch=64.0)],
        "learning_rate": 0.1, "input_id": "v0", "output_id": "v1", "next_id": 5,
    }


def evolved(seed: int, n: int = 30) -> DNA:
    rng, d = random.Random(seed), initial_dna()
    for _ in range(n):
        d, _ = mutate(d, rng)
    return d


def test_initial_dna_is_a_single_layer_without_convolutions():
    d = initial_dna()
    assert d.learning_rate == 0.1 and d.schema_version == DNA_SCHEMA_VERSION
    assert d.conv_edges() == [] and d.depth() == 0 and d.total_channels() == 0
    assert d.backbone() == [d.input_id, d.output_id]
    assert [e.kind for e in d.edges] == ["identity"]
    assert initial_dna(0.5).learning_rate == 0.5
    assert render_line(d, 10) == "I > GAP > FC10"


def test_render_line_and_helpers():
    d = DNA.model_validate(two_convs())
    assert render_line(d, 10) == "C3x3/1x32+BN+R > C3x3/2x64 > GAP > FC10"
    assert render_line(d) .endswith("GAP > FC")
    assert d.depth() == 2 and d.total_channels() == 96
    assert [e.id for e in d.conv_edges()] == ["e2", "e4"]
    assert d.vertex_channels(1) == {"v0": 1, "v3": 32, "v1": 64}
    dot = render_dot(d)
    assert dot.startswith("digraph dna {") and "v3 -> v1" in dot and dot.rstrip().endswith("}")


def test_floats_round_half_up_when_read():
    raw = two_convs()
    raw["edges"][0].update(filter_h=3.4, filter_w=4.6, stride_log2=0.5, out_channels=31.5)
    e = DNA.model_validate(raw).edge("e2")
    assert e.kernel() == (3, 5) and e.stride() == 2 and e.channels() == 32


@pytest.mark.parametrize("seed", range(10))
def test_json_round_trip_is_exact(seed):
    d = evolved(seed)
    dumped = d.model_dump(mode="json")
    assert DNA.model_validate(dumped).model_dump(mode="json") == dumped
    assert DNA.from_json(d.to_json()) == d
    assert DNA.from_json(d.to_json()).to_json() == d.to_json()
    # floats survive JSON bit for bit
    assert json.loads(d.to_json())["learning_rate"] == d.learning_rate


def _bad(mutator):
    raw = two_convs()
    mutator(raw)
    return raw


BAD = {
    "dangling edge": (lambda r: r["edges"][1].update(dst="v9"), "edges[e4].dst"),
    "cycle (backward skip)": (lambda r: r["edges"].append(ident("e5", "v3", "v0", skip=True)) or r.update(next_id=6), "cycle"),
    "self loop": (lambda r: r["edges"].append(ident("e5", "v3", "v3", skip=True)) or r.update(next_id=6), "edges[e5]"),
    "unreachable vertex": (lambda r: r["vertices"].append({"id": "v7"}) or r.update(next_id=8), "unreachable vertex"),
    "negative filter": (lambda r: r["edges"][0].update(filter_w=-3.0), "edges[e2].filter_w"),
    "zero filter": (lambda r: r["edges"][0].update(filter_h=0.2), "edges[e2].filter_h"),
    "negative lr": (lambda r: r.update(learning_rate=-0.1), "learning_rate"),
    "nan lr": (lambda r: r.update(learning_rate=float("nan")), "learning_rate"),
    "lr not a number": (lambda r: r.update(learning_rate="fast"), "learning_rate"),
    "duplicate vertex id": (lambda r: r["vertices"].append({"id": "v3"}), "duplicate id"),
    "duplicate edge id": (lambda r: r["edges"].__setitem__(1, {**r["edges"][1], "id": "e2"}), "duplicate id"),
    "vertex id used by an edge number": (lambda r: r["edges"][0].update(id="e3"), "share a number"),
    "bad id": (lambda r: r["edges"][0].update(id="conv1"), "edges[0].id"),
    "next_id reused": (lambda r: r.update(next_id=4), "next_id"),
    "zero channels": (lambda r: r["edges"][0].update(out_channels=0.2), "out_channels"),
    "negative stride": (lambda r: r["edges"][0].update(stride_log2=-1.0), "stride_log2"),
    "conv skip": (lambda r: r["edges"].append({**conv("e5", "v0", "v1"), "skip": True}) or r.update(next_id=6), "kind"),
    "identity with conv params": (lambda r: r["edges"].append({**ident("e5", "v0", "v1", True), "out_channels": 3.0}) or r.update(next_id=6), "out_channels"),
    "conv missing params": (lambda r: r["edges"][0].pop("filter_h"), "filter_h"),
    "two primary inputs": (lambda r: r["edges"].append(ident("e5", "v0", "v1")) or r.update(next_id=6), "two primary"),
    "duplicate skip": (lambda r: r["edges"].extend([ident("e5", "v0", "v1", True), ident("e6", "v0", "v1", True)]) or r.update(next_id=7), "duplicate skip"),
    "missing output": (lambda r: r.update(output_id="v8"), "output_id"),
    "input == output": (lambda r: r.update(output_id="v0"), "output_id"),
    "edge into input": (lambda r: r["edges"].append(ident("e5", "v3", "v0", True)) or r.update(next_id=6), "cycle"),
    "unknown field": (lambda r: r.update(color="red"), "color"),
    "newer schema": (lambda r: r.update(schema_version=DNA_SCHEMA_VERSION + 1), "schema_version"),
    "bad activation": (lambda r: r["vertices"][1].update(activation="tanh"), "activation"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_dna_raises_dna_error_naming_the_field(case):
    mutator, needle = BAD[case]
    with pytest.raises(DNAError) as info:
        DNA.model_validate(_bad(mutator))
    assert needle in str(info.value)
    with pytest.raises(DNAError):  # the constructor and from_json refuse it too
        DNA(**_bad(mutator))
    with pytest.raises(DNAError):
        DNA.from_json(json.dumps(_bad(mutator), allow_nan=True))


def test_from_json_rejects_garbage():
    with pytest.raises(DNAError, match="not valid JSON"):
        DNA.from_json("{nope")
    with pytest.raises(DNAError):
        DNA.from_json("[]")


def test_dna_is_immutable():
    d = initial_dna()
    with pytest.raises(Exception):
        d.learning_rate = 1.0  # type: ignore[misc]
