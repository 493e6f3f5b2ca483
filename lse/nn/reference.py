"""The hand-designed anchor of the reports (`lse reference`): a textbook small CNN.

Two 5x5 convolutions (32 and 64 channels, "same" padding), each followed by ReLU and a 2x2
max-pool, then a 256-wide hidden layer and the classifier -- the convolutional net of the
classic TensorFlow/PyTorch MNIST tutorials, with a narrower hidden layer so that it trains at a
few hundred steps a minute on one CPU core.  No batch norm and no skip connections: it is what
a user would write by hand in five minutes, not a tuned model.

On 28x28x1 inputs: conv 1->32 (832 parameters), conv 32->64 (51,264), 7*7*64 -> 256
(803,072), 256 -> 10 (2,570): 857,738 parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: the recipe the anchor is trained with (`lse reference` options default to these)
REFERENCE_LEARNING_RATE = 0.02


class ReferenceCNN(nn.Module):
    """conv5x5(32) ReLU pool2, conv5x5(64) ReLU pool2, FC(256) ReLU, FC(classes); logits out."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, hidden: int = 256) -> None:
        super().__init__()
        c, h, w = input_shape
        if h < 4 or w < 4:
            raise ValueError(f"the reference CNN pools twice by 2: inputs of at least 4x4, got {h}x{w}")
        self.conv1 = nn.Conv2d(c, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc1 = nn.Linear(64 * (h // 4) * (w // 4), hidden)  # (N, 64, H/4, W/4) flattened
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))
