"""Small networks whose explanations are known in closed form."""

from __future__ import annotations

import torch
from torch import nn


class GapLinearNet(nn.Module):
    """conv -> ReLU -> [layer "features"] -> global average pooling -> one linear layer."""

    def __init__(self, channels: int = 6, classes: int = 4, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, channels, 3, stride=2, padding=1)
        self.features = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(self.conv(x))).flatten(1))


class TwoLayerHead(nn.Module):
    """Features -> [layer "features"] -> 1x1 conv -> ReLU -> GAP -> linear: CAM does not apply."""

    def __init__(self, channels: int = 5, classes: int = 3, seed: int = 1) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, channels, 3, stride=2, padding=1)
        self.features = nn.ReLU6(inplace=True)
        self.mix = nn.Conv2d(channels, channels, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.features(self.conv(x))
        return self.fc(self.act(self.mix(a)).mean(dim=(2, 3)))


class FixedFeatures(nn.Module):
    """Returns a fixed activation tensor (times a learnable scalar so gradients flow) as its layer
    "features", then GAP + linear. For testing formulas on activations of known structure."""

    def __init__(self, activations: torch.Tensor, classes: int = 3, seed: int = 2) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.register_buffer("fixed", activations)
        self.scale = nn.Parameter(torch.ones(1))
        self.features = nn.Identity()
        self.fc = nn.Linear(activations.shape[1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.features(self.fixed.expand(x.shape[0], -1, -1, -1) * self.scale + 0 * x.mean())
        return self.fc(a.mean(dim=(2, 3)))


class LinearPixels(nn.Module):
    """logits = W . flatten(x) + b: every input-gradient attribution is known exactly."""

    def __init__(self, size: int = 8, classes: int = 3, seed: int = 3) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(3 * size * size, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))
