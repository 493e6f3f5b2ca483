"""Seed 000's final model: the chosen encoder followed by the best classifier of stage 2.

    raw image (0-255) -> standardise (raw training statistics) -> encoder -> quantise to the
    codes' uint8 levels (lse.nn.encoded) -> standardise (code training statistics) -> classifier

so it computes exactly what the classifier saw during stage 2, from the original images.  Its
FLOPs are the encoder's plus the classifier's (lse.reports.twostep.final_model).
"""

from __future__ import annotations

import torch
from torch import nn

from lse.nn.autoencoder import Encoder, encoder_state
from lse.nn.build import build_model


class Composed(nn.Module):
    def __init__(self, encoder: nn.Module, quant_scale, raw_norm, code_norm, classifier: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.classifier = classifier
        self.register_buffer("q", torch.as_tensor(quant_scale, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("raw_scale", raw_norm[0].detach().clone())
        self.register_buffer("raw_shift", raw_norm[1].detach().clone())
        self.register_buffer("code_scale", code_norm[0].detach().clone())
        self.register_buffer("code_shift", code_norm[1].detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, C, H, W) float on the 0-255 scale
        z = self.encoder(x * self.raw_scale + self.raw_shift)
        codes = torch.clamp(torch.round(z * self.q), 0, 255)
        return self.classifier(codes * self.code_scale + self.code_shift)


def composed_model(genome, encoder_weights: dict, quant_scale, raw_ds, code_ds, classifier_dna, classifier_state) -> Composed:
    enc = Encoder(genome)
    enc.load_state_dict(encoder_state(encoder_weights), strict=True)
    clf = build_model(classifier_dna, code_ds.input_shape, code_ds.num_classes)
    clf.load_state_dict(classifier_state, strict=True)
    return Composed(enc, quant_scale, raw_ds.normalization("cpu"), code_ds.normalization("cpu"), clf).eval()
