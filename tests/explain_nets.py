"""Small networks for the registry, target, RISE and rollout tests, with answers known in closed form."""

from __future__ import annotations

import torch
from torch import nn


class LinearProbability(nn.Module):
    """Two classes whose softmax is exactly linear in the input: p_1(x) = 0.5 + w . x, p_0 = 1 - p_1.

    The logits are (log(1 - g), log(g)) with g = 0.5 + w . flatten(x); |w| sums to 0.45, so g stays
    in (0, 1) for inputs in [-1, 1] (masked copies included)."""

    def __init__(self, size: int = 16, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        pattern = 0.05 * torch.randn(3, size, size, generator=generator)
        quarter = size // 4
        pattern[:, quarter : 2 * quarter, quarter : 2 * quarter] += 1.0  # a block that supports class 1
        pattern[:, 2 * quarter : 3 * quarter, 2 * quarter :] -= 0.5  # and one that opposes it
        self.register_buffer("w", 0.45 * pattern.flatten() / pattern.abs().sum())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = 0.5 + x.flatten(1) @ self.w
        return torch.stack([torch.log1p(-g), torch.log(g)], dim=1)


def tiny_vit(classes: int = 5, image: int = 32, patch: int = 8, depth: int = 2, **kwargs) -> nn.Module:
    """A timm VisionTransformer small enough for exact checks: 16 patches + prefix tokens."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(
        img_size=image, patch_size=patch, embed_dim=16, depth=depth, num_heads=2, num_classes=classes, **kwargs
    ).eval()
