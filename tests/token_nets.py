"""Small token networks whose CAMs are known in closed form, and tiny random timm transformers."""

from __future__ import annotations

import torch
from torch import nn


class PatchTokenNet(nn.Module):
    """Patchify conv -> tokens [B, P + h*w, C] (P learned prefix tokens; or a channels-last map
    [B, h, w, C]) -> `mixer`, a per-token linear map (the layer to explain) -> logits
    W (mean of the patch tokens + the first prefix token) + b.

    With A the mixer's output read as a grid [C, h, w] (N = h*w positions), d y_c / d A[k, i] =
    W[c, k] / N, so Grad-CAM = HiResCAM = ReLU(sum_k W[c, k] A[k] / N), and zeroing channel k
    lowers y_c by W[c, k] mean_i A[k, i] (Ablation-CAM's score drop).
    """

    def __init__(
        self, channels: int = 6, classes: int = 5, patch: int = 4, prefix: int = 1, channels_last: bool = False
    ) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, channels, patch, stride=patch)
        self.prefix_tokens = nn.Parameter(torch.randn(1, prefix, channels)) if prefix else None
        self.mixer = nn.Linear(channels, channels)
        self.head = nn.Linear(channels, classes)
        self.prefix, self.channels_last = prefix, channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = self.patch(x)
        if self.channels_last:
            return self.head(self.mixer(grid.permute(0, 2, 3, 1)).mean(dim=(1, 2)))
        tokens = grid.flatten(2).transpose(1, 2)
        if self.prefix:
            tokens = torch.cat([self.prefix_tokens.expand(len(x), -1, -1), tokens], dim=1)
        tokens = self.mixer(tokens)
        pooled = tokens[:, self.prefix :].mean(dim=1)
        return self.head(pooled + tokens[:, 0] if self.prefix else pooled)

    def mixer_grid(self, x: torch.Tensor) -> torch.Tensor:
        """The mixer's output as a grid [B, C, h, w], computed directly."""
        grid = self.patch(x)
        return self.mixer(grid.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def gradcam(self, x: torch.Tensor, target: int) -> torch.Tensor:
        """Grad-CAM of class `target` at the mixer in closed form: [B, h, w]."""
        grid = self.mixer_grid(x)
        weights = self.head.weight[target] / grid[0, 0].numel()
        return torch.einsum("k,bkhw->bhw", weights, grid).clamp(min=0)

    def ablation_drops(self, x: torch.Tensor, target: int) -> torch.Tensor:
        """y_c - y_c^k for every channel k of the mixer, in closed form: [B, C]."""
        return self.head.weight[target] * self.mixer_grid(x).mean(dim=(2, 3))


def tiny_vit(distilled: bool = False, relu: bool = False, **kwargs) -> nn.Module:
    """A random 2-block timm ViT on 96 x 96 inputs (6 x 6 patches); DeiT-distilled: 2 prefix tokens."""
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    cls = VisionTransformerDistilled if distilled else VisionTransformer
    options = dict(img_size=96, patch_size=16, embed_dim=48, depth=2, num_heads=2, num_classes=10)
    if relu:
        options["act_layer"] = nn.ReLU
    return cls(**{**options, **kwargs}).eval()


def tiny_swin() -> nn.Module:
    """A random 2-stage timm Swin on 64 x 64 inputs (16 x 16 patches, then 8 x 8), shifted windows."""
    from timm.models.swin_transformer import SwinTransformer

    torch.manual_seed(0)
    return SwinTransformer(
        img_size=64, patch_size=4, window_size=4, embed_dim=24, depths=(2, 2), num_heads=(2, 4), num_classes=10
    ).eval()
