"""Structure fusion (paper section 5): a child with both parents' architectures side by side,
"generating wide models fast".

How fusion is expressed.  The DNA has ONE primary backbone with identity skips
(:mod:`lse.core.dna`); two parallel backbones would need a second primary path, a
concatenating merge, and changes to validation, the builder, the FLOP counter and all 11
mutations.  Instead the child is the deeper parent's backbone *widened layer by layer*: its
k-th convolution gets the channels of both parents' k-th convolutions (``c_a + c_b``) and the
larger filter of the two, so the fused model is an ordinary DNA that builds, trains, counts its
FLOPs and mutates like any other.  Its weights come from both parents:

* convolution k, output channels ``[0, c_a)``: parent A's filters, reading A's channels (the
  first ``c_a`` of the previous layer); ``[c_a, c_a + c_b)``: parent B's filters, reading B's
  channels (placed after A's: ``TensorSource.cols_at``); filters centred in the larger kernel;
* the batch-norm after it: A's statistics for A's channels, B's for B's;
* the classifier, when the last convolution was fused: A's columns, and zeros for B's features
  (bias: A's);
* everything else of A's backbone (deeper convolutions A alone has, skips, activations,
  strides, learning rate) as in A.

It is a function-preserving widening (issue 31): the blocks that connect A's channels to B's
(and back), the kernel taps a larger filter adds around A's, and the classifier's columns for
B's features all start at zero (``Provenance.zero_rest``), so before training the fused child
computes exactly what A computes, with B's filters running beside it; training then decides
how much of B to use.  (Before, those blocks kept their fresh initialisation, so a fused child
started as neither parent's function.)  One exception, structural: a skip from a widened vertex
into one with more of A's channels (:func:`leaky_skips`) adds B's channels where A's skip added
zeros.

What is lost: B's strides, skips and activations where they differ from A's (the child has one
topology, A's), and B's convolutions beyond A's depth (A is the deeper parent, so there are
none).  A is the parent with more convolutions (ties: the first parent).

Pure: DNA and provenance data, no torch.
"""

from __future__ import annotations

from lse.core.dna import DNA
from lse.core.provenance import Provenance, TensorSource


def leaky_skips(first: DNA, child: DNA) -> list[str]:
    """Skip edges of the fused ``child`` through which B's channels reach A's: a skip whose source
    was widened and whose destination has more of A's channels than its source.  In A the skip
    is zero-padded up to the destination's channels; in the child those positions carry B's
    channels instead, so there the child is not exactly A's function (a DNA sums a skip into the
    first channels of its destination: it cannot route B's channels past A's)."""
    a_ch, c_ch = first.vertex_channels(), child.vertex_channels()
    return [e.id for e in child.edges
            if e.skip and c_ch[e.src] > a_ch[e.src] and a_ch[e.dst] > a_ch[e.src]]


def fuse(first: DNA, first_id: str, second: DNA, second_id: str) -> tuple[DNA, Provenance]:
    """The fused child DNA and where each of its tensors comes from (module docstring)."""
    if len(second.conv_edges()) > len(first.conv_edges()):
        first, first_id, second, second_id = second, second_id, first, first_id
    a_convs, b_convs = first.conv_edges(), second.conv_edges()
    widened: dict[str, dict] = {}
    for ea, eb in zip(a_convs, b_convs):
        (ha, wa), (hb, wb) = ea.kernel(), eb.kernel()
        widened[ea.id] = {"out_channels": float(ea.channels() + eb.channels()),
                          "filter_h": float(max(ha, hb)), "filter_w": float(max(wa, wb))}
    data = first.model_dump(mode="python")
    data["edges"] = [{**e, **widened.get(e["id"], {})} for e in data["edges"]]
    child = DNA.model_validate(data)

    # Where parent B's channels sit in the child's activations: after A's, at each vertex a
    # fused convolution feeds (identity backbone edges pass the layout on).
    sources: dict[str, TensorSource | tuple[TensorSource, ...]] = {}
    zero: list[str] = []  # tensors whose uncovered parts (cross blocks, new taps) start at zero
    a_ch = first.vertex_channels()
    child_ch = child.vertex_channels()
    b_at: dict[str, int] = {first.input_id: 0}  # child vertex -> offset of B's channels (input: shared)
    k = 0
    for e in first.backbone_edges():
        if e.kind != "conv":
            if e.src in b_at:
                b_at[e.dst] = b_at[e.src]
            continue
        name = f"edges.{e.id}."
        c_out = child.edge(e.id).channels()
        if k < len(b_convs):
            eb = b_convs[k]
            ca, cb = e.channels(), eb.channels()
            rows_a, rows_b = tuple(range(ca)), tuple(range(cb))
            into_b = tuple(range(ca, ca + cb))
            b_cols = b_at.get(e.src, 0)
            sources[name + "weight"] = (
                TensorSource(first_id, name + "weight", rows_a, rows_a, centred=True),
                TensorSource(second_id, f"edges.{eb.id}.weight", rows_b, into_b, cols_at=b_cols, centred=True),
            )
            zero.append(name + "weight")
            sources[name + "bias"] = (
                TensorSource(first_id, name + "bias", rows_a, rows_a),
                TensorSource(second_id, f"edges.{eb.id}.bias", rows_b, into_b),
            )
            for t in ("weight", "bias", "running_mean", "running_var"):
                sources[f"vertices.{e.dst}.bn.{t}"] = (
                    TensorSource(first_id, f"vertices.{e.dst}.bn.{t}", rows_a, rows_a),
                    TensorSource(second_id, f"vertices.{eb.dst}.bn.{t}", rows_b, into_b),
                )
            b_at[e.dst] = ca
        else:
            # A's own deeper layer: its filters, reading A's channels; B's channels reach it
            # through the fresh part of its fan-in.
            rows = tuple(range(c_out))
            sources[name + "weight"] = TensorSource(first_id, name + "weight", rows, rows)
            zero.append(name + "weight")
        k += 1
    # A batch norm downstream of a fused convolution (behind identity edges) normalises a
    # widened vertex too: A's statistics for A's channels; B's channels keep fresh ones there
    for v in child.vertices:
        if v.activation == "bn_relu" and child_ch[v.id] > a_ch[v.id]:
            rows = tuple(range(a_ch[v.id]))
            for t in ("weight", "bias", "running_mean", "running_var"):
                sources.setdefault(f"vertices.{v.id}.bn.{t}", TensorSource(first_id, f"vertices.{v.id}.bn.{t}", rows, rows))
    out = first.output_id
    if b_at.get(out, 0) and child_ch[out] > a_ch[out]:
        # every row (class) reads A's features as in A; B's features get columns of zeros, so
        # the child's logits are A's until training moves them (B's classifier is not used)
        sources["classifier.weight"] = TensorSource(first_id, "classifier.weight", cols_at=0, centred=True)
        zero.append("classifier.weight")
    return child, Provenance(default=first_id, sources=sources, zero_rest=tuple(zero))

