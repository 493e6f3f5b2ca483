"""The 11 mutations of section 3.2: a table of what each changes and what it never changes,
plus mutate(): determinism, fallback, configurable probabilities, parent untouched."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from lse.core.dna import DNA, initial_dna
from lse.errors import ConfigError, MutationError
from lse.core.mutations import MUTATION_NAMES, MUTATIONS, MutationRecord, mutate

from _dna_helpers import rich


def arch(d: DNA) -> dict:
    """Everything but the learning rate."""
    x = d.model_dump(mode="json")
    x.pop("learning_rate")
    return x


def changed_conv_fields(p: DNA, c: DNA) -> set[tuple[str, str]]:
    out = set()
    for e in c.edges:
        try:
            old = p.edge(e.id)
        except KeyError:
            continue
        for f in ("filter_h", "filter_w", "stride_log2", "out_channels", "src", "dst", "kind", "skip"):
            if getattr(old, f) != getattr(e, f):
                out.add((e.id, f))
    return out


def check_alter_learning_rate(p, c, r):
    assert arch(c) == arch(p)
    assert 0.05 <= c.learning_rate <= 0.2 and c.learning_rate != p.learning_rate
    assert r.changed_edges == [] and not r.reset_all


def check_identity(p, c, r):
    assert c == p and r.changed_edges == [] and not r.reset_all


def check_reset_weights(p, c, r):
    assert c == p and r.reset_all


def check_insert_convolution(p, c, r):
    assert c.learning_rate == p.learning_rate
    assert len(c.conv_edges()) == len(p.conv_edges()) + 1 and len(c.vertices) == len(p.vertices) + 1
    new = c.edge(r.details["edge"])
    assert new.kind == "conv" and new.kernel() == (3, 3) and new.stride() in (1, 2)
    assert new.channels() == c.vertex_channels()[new.src]  # as many channels as its input
    assert c.vertex(new.dst).activation in ("bn_relu", "linear")
    assert r.changed_edges == [new.id]
    # old edges keep ids and parameters; only one of them is re-pointed to read the new vertex
    assert {f for _, f in changed_conv_fields(p, c)} <= {"src"} and len(changed_conv_fields(p, c)) == 1
    assert c.next_id == p.next_id + 2


def check_remove_convolution(p, c, r):
    assert len(c.conv_edges()) == len(p.conv_edges()) - 1
    assert r.details["edge"] not in {e.id for e in c.edges}
    assert c.learning_rate == p.learning_rate
    assert all(f in ("src", "dst") for _, f in changed_conv_fields(p, c))


def check_alter_stride(p, c, r):
    e = r.details["edge"]
    assert changed_conv_fields(p, c) == {(e, "stride_log2")}
    assert abs(c.edge(e).stride_log2 - p.edge(e).stride_log2) <= 1.0 and c.edge(e).stride_log2 >= 0
    s = c.edge(e).stride()
    assert s & (s - 1) == 0  # a power of two
    assert r.changed_edges == []


def check_alter_channels(p, c, r):
    e = r.details["edge"]
    assert changed_conv_fields(p, c) == {(e, "out_channels")}
    old, new = p.edge(e).out_channels, c.edge(e).out_channels
    assert old / 2 <= new <= old * 2


def check_filter_size(p, c, r):
    e, axis = r.details["edge"], r.details["axis"]
    assert changed_conv_fields(p, c) == {(e, axis)}
    kh, kw = c.edge(e).kernel()
    assert kh % 2 == 1 and kw % 2 == 1
    old, new = getattr(p.edge(e), axis), getattr(c.edge(e), axis)
    assert old / 2 <= new <= old * 2
    # like alter-channels: the conv's tensors are kept when the rounded size did not change
    assert r.changed_edges == ([e] if c.edge(e).kernel() != p.edge(e).kernel() else [])


def check_insert_one_to_one(p, c, r):
    assert len(c.conv_edges()) == len(p.conv_edges()) and len(c.vertices) == len(p.vertices) + 1
    new = c.edge(r.details["edge"])
    assert new.kind == "identity" and not new.skip
    assert r.changed_edges == []


def check_add_skip(p, c, r):
    new = c.edge(r.details["edge"])
    assert new.skip and new.kind == "identity"
    path = c.backbone()
    assert path.index(new.src) < path.index(new.dst)
    assert len(c.skips()) == len(p.skips()) + 1 and changed_conv_fields(p, c) == set()
    assert r.changed_edges == []


def check_remove_skip(p, c, r):
    assert len(c.skips()) == len(p.skips()) - 1 and changed_conv_fields(p, c) == set()
    assert c.learning_rate == p.learning_rate and r.changed_edges == []


CHECKS = {n: globals()[f"check_{n}"] for n in MUTATION_NAMES}


@pytest.mark.parametrize("name", MUTATION_NAMES)
@pytest.mark.parametrize("seed", range(8))
def test_each_mutation_changes_what_it_should_and_nothing_else(name, seed):
    parent = rich()
    before = parent.model_dump(mode="json")
    child, record = MUTATIONS[name](parent, random.Random(seed))
    assert isinstance(record, MutationRecord) and record.name == name
    assert parent.model_dump(mode="json") == before  # parent never modified
    DNA.model_validate(child.model_dump(mode="json"))  # child valid
    assert child.next_id >= parent.next_id
    # ids that survive keep their meaning: a surviving vertex keeps its activation
    for v in child.vertices:
        if v.id in {u.id for u in parent.vertices}:
            assert v.activation == parent.vertex(v.id).activation
    CHECKS[name](parent, child, record)


@pytest.mark.parametrize("name", ["remove_convolution", "alter_stride", "alter_channels", "filter_size", "add_skip", "remove_skip"])
def test_inapplicable_mutations_raise_on_the_initial_dna(name):
    with pytest.raises(MutationError):
        MUTATIONS[name](initial_dna(), random.Random(0))


@pytest.mark.parametrize("name", ["alter_learning_rate", "identity", "reset_weights", "insert_convolution", "insert_one_to_one"])
def test_always_applicable_mutations_apply_to_the_initial_dna(name):
    child, record = MUTATIONS[name](initial_dna(), random.Random(0))
    assert record.name == name


def test_remove_only_convolution_leaves_an_identity():
    d, _ = MUTATIONS["insert_convolution"](initial_dna(), random.Random(1))
    # the conv reads the input; contracting it merges its vertex into the input
    c, r = MUTATIONS["remove_convolution"](d, random.Random(0))
    assert c.conv_edges() == [] and len(c.vertices) == 2


def test_remove_convolution_into_output_folds_it():
    p = DNA.model_validate({
        "vertices": [{"id": "v0"}, {"id": "v1"}], "edges": [
            {"id": "e2", "src": "v0", "dst": "v1", "kind": "conv", "filter_h": 3.0, "filter_w": 3.0, "stride_log2": 0.0, "out_channels": 4.0}],
        "learning_rate": 0.1, "input_id": "v0", "output_id": "v1", "next_id": 3})
    c, r = MUTATIONS["remove_convolution"](p, random.Random(0))
    assert [e.kind for e in c.edges] == ["identity"] and c.edges[0].id != "e2"


def test_add_skip_never_duplicates_and_eventually_exhausts():
    d = rich()
    rng = random.Random(0)
    for _ in range(100):
        try:
            d, _ = MUTATIONS["add_skip"](d, rng)
        except MutationError:
            break
    else:
        pytest.fail("add_skip never ran out of pairs")
    pairs = [(e.src, e.dst) for e in d.skips()]
    assert len(pairs) == len(set(pairs))


def test_mutate_is_deterministic_per_seed():
    def chain(seed):
        rng, d, names = random.Random(seed), initial_dna(), []
        for _ in range(40):
            d, r = mutate(d, rng)
            names.append(r.name)
        return d.to_json(), names

    assert chain(3) == chain(3)
    assert chain(3) != chain(4)


def test_mutate_replaces_inapplicable_draws_and_falls_back_to_identity():
    # only inapplicable mutations allowed: bounded, ends in identity
    only_bad = {"remove_skip": 1.0, "add_skip": 1.0, "alter_stride": 1.0}
    child, r = mutate(initial_dna(), random.Random(0), only_bad)
    assert r.name == "identity" and sorted(r.skipped) == sorted(only_bad)
    assert child == initial_dna()
    # identity always applies, even with weight 0 elsewhere
    child, r = mutate(initial_dna(), random.Random(0), {"identity": 1.0})
    assert r.name == "identity" and r.skipped == []


def test_probabilities_are_respected():
    rng = random.Random(0)
    counts = Counter(mutate(rich(), rng, {"alter_learning_rate": 3.0, "add_skip": 1.0})[1].name for _ in range(400))
    assert set(counts) <= {"alter_learning_rate", "add_skip"}
    assert counts["alter_learning_rate"] > 2 * counts["add_skip"]
    uniform = Counter(mutate(rich(), rng)[1].name for _ in range(1100))
    assert set(uniform) == set(MUTATION_NAMES)


@pytest.mark.parametrize("bad", [{"grow": 1.0}, {"identity": -1.0}, {"identity": 0.0}])
def test_bad_probabilities_raise_config_error_listing_valid_names(bad):
    with pytest.raises(ConfigError) as info:
        mutate(initial_dna(), random.Random(0), bad)
    if "grow" in bad:
        assert "insert_convolution" in str(info.value)


def test_long_chains_stay_valid_and_connected():
    for seed in range(30):
        rng, d = random.Random(seed), initial_dna()
        for _ in range(50):
            d, _ = mutate(d, rng)
            assert set(d.backbone()) == {v.id for v in d.vertices}
        DNA.model_validate(d.model_dump(mode="json"))


def test_record_round_trips():
    _, r = mutate(rich(), random.Random(1))
    assert MutationRecord.model_validate(r.model_dump(mode="json")) == r


def test_alter_channels_accumulates_below_rounding_and_then_blocks_nothing():
    # footnote 3: floats let small changes accumulate; if the rounded width is unchanged the
    # conv's tensors are still valid, so nothing is marked changed
    unchanged = changed = 0
    for seed in range(40):
        c, r = MUTATIONS["alter_channels"](rich(), random.Random(seed))
        e = c.edge(r.details["edge"])
        if e.channels() == rich().edge(e.id).channels():
            unchanged += 1
            assert r.changed_edges == [] and e.out_channels != rich().edge(e.id).out_channels
        else:
            changed += 1
            assert r.changed_edges == [e.id]
    assert unchanged and changed


def _with(field: str, value: float) -> DNA:
    """rich() with ``field`` of both convolutions set to ``value``."""
    d = rich().model_dump(mode="python")
    for e in d["edges"]:
        if e["kind"] == "conv":
            e[field] = value
    return DNA.model_validate(d)


def test_alter_stride_at_the_bound_stays_valid():
    # issue 20: from stride_log2 near MAX_STRIDE_LOG2 a draw above it made DNA validation raise,
    # which ended the worker.  The draw is reflected at the bound as it is at 0.
    from lse.core.dna import MAX_STRIDE_LOG2

    for start in (MAX_STRIDE_LOG2, MAX_STRIDE_LOG2 + 0.4, MAX_STRIDE_LOG2 - 0.3):
        for seed in range(200):
            c, r = MUTATIONS["alter_stride"](_with("stride_log2", start), random.Random(seed))
            x = c.edge(r.details["edge"]).stride_log2
            assert 0 <= x <= MAX_STRIDE_LOG2 and (abs(x - start) <= 1.0 or start > MAX_STRIDE_LOG2)


def test_a_long_stride_walk_never_raises():
    # a neutral random walk reaches the bound after ~1,100 steps on one convolution (issue 20)
    from lse.core.dna import MAX_STRIDE_LOG2

    rng, dna, top = random.Random(5), _with("stride_log2", 15.0), 0.0
    for _ in range(4000):
        dna, r = MUTATIONS["alter_stride"](dna, rng)
        top = max(top, dna.edge(r.details["edge"]).stride_log2)
    assert top >= MAX_STRIDE_LOG2 - 0.5  # the walk did press against the bound


def test_filter_size_draws_half_to_twice_and_reaches_one():
    # issue 20: from 3 the old draw always gave 5; half to twice (1.5..6) rounds to 1, 3 or 5
    sizes = Counter()
    for seed in range(300):
        c, r = MUTATIONS["filter_size"](rich(), random.Random(seed))
        e = c.edge(r.details["edge"])
        sizes[e.kernel()[0 if r.details["axis"] == "filter_h" else 1]] += 1
    assert set(sizes) == {1, 3, 5}
    assert sizes[1] < sizes[3] and sizes[1] < sizes[5]  # 1 is reached from [1.5, 2) only


def test_filter_floats_round_to_the_nearest_odd_size():
    # footnote 3: the stored float drifts; the built size is the nearest odd one (halves up)
    for x, k in ((0.5, 1), (1.9, 1), (2.0, 3), (3.99, 3), (4.2, 5), (6.0, 7)):
        assert _with("filter_h", x).edge("e2").kernel()[0] == k


def test_insert_convolution_draws_its_width_when_given_choices():
    # issue 19/20: on grey images the paper's rule inserts 1-channel convolutions
    one = initial_dna(0.1, input_channels=1)
    widths = set()
    for seed in range(40):
        c, r = MUTATIONS["insert_convolution"](one, random.Random(seed))
        assert c.edge(r.details["edge"]).channels() == 1  # the paper: as many as the input
        c, r = mutate(one, random.Random(seed), {"insert_convolution": 1.0}, insert_channels=[8, 16])
        widths.add(c.edge(r.details["edge"]).channels())
        assert r.details["channels"] in (8, 16)
    assert widths == {8, 16}
