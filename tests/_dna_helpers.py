"""DNA fixtures shared by the tests of the evolutionary core (mutations, inheritance)."""

from __future__ import annotations

from lse.core.dna import DNA


def rich() -> DNA:
    """v0 -C3x3/1x16-> v3(bn_relu) -C3x3/2x32-> v5 -I-> v1, skip v3 -> v1.
    Built model's state: edges.e2.{weight,bias}, edges.e4.{weight,bias}, vertices.v3.bn.* (5),
    classifier.* (2) = 11 tensors."""
    return DNA.model_validate({
        "vertices": [{"id": "v0"}, {"id": "v3", "activation": "bn_relu"}, {"id": "v5"}, {"id": "v1"}],
        "edges": [
            {"id": "e2", "src": "v0", "dst": "v3", "kind": "conv", "filter_h": 3.0, "filter_w": 3.0, "stride_log2": 0.0, "out_channels": 16.0},
            {"id": "e4", "src": "v3", "dst": "v5", "kind": "conv", "filter_h": 3.0, "filter_w": 3.0, "stride_log2": 1.0, "out_channels": 32.0},
            {"id": "e6", "src": "v5", "dst": "v1", "kind": "identity"},
            {"id": "e7", "src": "v3", "dst": "v1", "kind": "identity", "skip": True},
        ],
        "learning_rate": 0.1, "input_id": "v0", "output_id": "v1", "next_id": 8,
    })
