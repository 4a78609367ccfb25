"""Token layers as spatial grids: the pure conversions between a layer's output and [B, C, h, w].

A vision transformer's layers output tokens [B, P + h*w, C] (P prefix tokens: a class token,
distillation or register tokens, then the patches in row-major order) or, in timm's Swin family,
channels-last maps [B, h, w, C]. The CAM family reads a grid [B, C, h, w]; `TokenLayout` says how
one layer's output maps to that grid, `to_grid` / `from_grid` convert, `patch_grid` finds (P, h, w)
for a model, an input size and a token count, and `layout_of` decides the layout of any output.

An explicit layout for a layer that the rules below get wrong: `declare_layout(model, layer, ...)`.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

GRID, TOKENS, CHANNELS_LAST = "grid", "tokens", "channels_last"
_HIERARCHY_SCALES = (1, 2, 4, 8, 16, 32)  # patch-merging stages (Swin: 1/4 .. 1/32 of the image)


@dataclass(frozen=True)
class TokenLayout:
    """How a layer's output maps to a spatial grid [B, C, h, w].

    kind: "grid" ([B, C, h, w] already), "tokens" ([B, prefix + h*w, C], patches in row-major
    order after `prefix` leading tokens) or "channels_last" ([B, h, w, C]).
    height, width: the patch grid of a "tokens" layout (ignored by the others, which carry it).
    """

    kind: str = GRID
    prefix: int = 0
    height: int = 0
    width: int = 0

    def __post_init__(self) -> None:
        if self.kind not in (GRID, TOKENS, CHANNELS_LAST):
            raise ValueError(f"Unknown token layout {self.kind!r}; use 'grid', 'tokens' or 'channels_last'.")
        if self.kind == TOKENS and (self.height < 1 or self.width < 1 or self.prefix < 0):
            raise ValueError("A 'tokens' layout needs height, width >= 1 and prefix >= 0.")

    def grid_shape(self, output_shape: Sequence[int]) -> tuple[int, int, int]:
        """(C, h, w) of the grid made from an output of `output_shape`."""
        if self.kind == TOKENS:
            return int(output_shape[-1]), self.height, self.width
        if self.kind == CHANNELS_LAST:
            return int(output_shape[3]), int(output_shape[1]), int(output_shape[2])
        return int(output_shape[1]), int(output_shape[2]), int(output_shape[3])


LayoutRule = Callable[[tuple[int, int] | None, tuple[int, ...]], TokenLayout]
"""(input (H, W) or None, the layer output's shape) -> its TokenLayout: a layout for dynamic sizes."""


def to_grid(output: torch.Tensor, layout: TokenLayout) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(the grid [B, C, h, w], the prefix tokens [B, P, C] or None) of one layer output."""
    if layout.kind == CHANNELS_LAST:
        return output.permute(0, 3, 1, 2), None
    if layout.kind == GRID:
        return output, None
    batch, count, channels = output.shape
    expected = layout.prefix + layout.height * layout.width
    if count != expected:
        raise ValueError(
            f"{count} tokens do not fit the layout: {layout.prefix} prefix tokens + "
            f"{layout.height} x {layout.width} patches = {expected}."
        )
    patches = output[:, layout.prefix :].transpose(1, 2).reshape(batch, channels, layout.height, layout.width)
    return patches, (output[:, : layout.prefix] if layout.prefix else None)


def from_grid(grid: torch.Tensor, layout: TokenLayout, prefix: torch.Tensor | None = None) -> torch.Tensor:
    """The layer output rebuilt from a grid [B', C, h, w] (inverse of to_grid), contiguous.

    `prefix` [1 or B', P, C] is put back before the patch tokens, expanded to the grid's batch
    (a batch of modified grids of one image shares that image's prefix tokens).
    """
    if layout.kind == CHANNELS_LAST:
        return grid.permute(0, 2, 3, 1).contiguous()
    if layout.kind == GRID:
        return grid
    patches = grid.flatten(2).transpose(1, 2)
    if prefix is None or prefix.shape[1] == 0:
        return patches.contiguous()
    prefix = prefix.to(patches.dtype).expand(patches.shape[0], -1, -1)
    return torch.cat([prefix, patches], dim=1)


def patch_grid(model: nn.Module, input_hw: tuple[int, int] | None, num_tokens: int) -> tuple[int, int, int]:
    """(prefix tokens, h, w) of a layer with `num_tokens` tokens in `model` for an input of `input_hw`.

    A timm model (one with `patch_embed`): the patch grid for this input size (dynamic image sizes
    too) and `num_prefix_tokens` (class, distillation and register tokens); a hierarchical model's
    later stages (Swin) have that grid downsampled by 2, 4, 8... and no prefix. Any other model, or
    a count that matches none of these: the largest grid that is the input downsampled by an
    integer stride (the largest square without an input size) and fits in the count, the rest
    being prefix tokens. A guess for unusual layouts (many prefix tokens, a grid that is not a
    downsampled input): declare those (`declare_layout`).
    """
    embed = getattr(model, "patch_embed", None)
    grid = _timm_patch_grid(embed, input_hw) if embed is not None else None
    if grid is not None:
        prefix = int(getattr(model, "num_prefix_tokens", 0) or 0)
        for scale in _HIERARCHY_SCALES:
            height, width = math.ceil(grid[0] / scale), math.ceil(grid[1] / scale)
            if scale == 1 and prefix + height * width == num_tokens:
                return prefix, height, width
            if height * width == num_tokens:
                return 0, height, width
    height, width = _largest_grid(input_hw, num_tokens)
    return num_tokens - height * width, height, width


def _largest_grid(input_hw: tuple[int, int] | None, num_tokens: int) -> tuple[int, int]:
    """The largest (h, w) = the input downsampled by an integer stride (rounded either way) with
    h * w <= num_tokens; without an input size, the largest square."""
    side = math.isqrt(num_tokens)
    if input_hw is None:
        return side, side
    full_h, full_w = input_hw
    grids = [
        (round_(full_h / stride), round_(full_w / stride))
        for stride in range(1, max(full_h, full_w) + 1)
        for round_ in (math.floor, math.ceil)
    ]
    fitting = [(h * w, h, w) for h, w in grids if 0 < h * w <= num_tokens]
    if not fitting:
        return side, side
    _, height, width = max(fitting)
    return height, width


def _timm_patch_grid(embed: nn.Module, input_hw: tuple[int, int] | None) -> tuple[int, int] | None:
    """A timm patch embedding's (h, w) for this input: dynamic_feat_size, else its fixed grid_size."""
    feat_size = getattr(embed, "dynamic_feat_size", None)
    if input_hw is not None and callable(feat_size):
        try:
            height, width = feat_size(tuple(input_hw))
            return int(height), int(width)
        except (AttributeError, TypeError, ValueError):
            pass
    grid = getattr(embed, "grid_size", None)
    return (int(grid[0]), int(grid[1])) if grid is not None else None


def looks_channels_last(shape: Sequence[int], input_hw: tuple[int, int] | None) -> bool:
    """Whether a 4-d output [B, d1, d2, d3] is channels-last: (d1, d2) is the input downsampled by
    an integer stride and (d2, d3) is not. Ties (e.g. [B, 7, 7, 7]) and unknown sizes: channels-first."""
    if input_hw is None or len(shape) != 4:
        return False
    return _is_downsampled(shape[1], shape[2], input_hw) and not _is_downsampled(shape[2], shape[3], input_hw)


def _is_downsampled(height: int, width: int, input_hw: tuple[int, int]) -> bool:
    """Whether (height, width) is (H/s, W/s) for some integer stride s, within one pixel (padding)."""
    full_h, full_w = input_hw
    if height < 1 or width < 1 or height > full_h + 1:
        return False
    strides = {max(1, math.floor(full_h / height)), max(1, math.ceil(full_h / height))}
    return any(abs(height - full_h / s) <= 1 and abs(width - full_w / s) <= 1 for s in strides)


_declared: weakref.WeakKeyDictionary[nn.Module, dict[str, TokenLayout | LayoutRule]] = weakref.WeakKeyDictionary()


def declare_layout(model, layer: str, layout: TokenLayout | LayoutRule) -> None:
    """Fixes how `layer` of `model` (an nn.Module or a models.Classifier) maps to a grid.

    `layout` is a TokenLayout, or a function (input (H, W), output shape) -> TokenLayout for models
    whose grid depends on the input size. Every tap, layer listing and explanation of this model
    object then uses it instead of the rules of `layout_of`; the model itself is not changed.
    """
    module = model if isinstance(model, nn.Module) else model.module
    _declared.setdefault(module, {})[layer] = layout


def declared_layout(model: nn.Module, layer: str) -> TokenLayout | LayoutRule | None:
    """The layout declared for `layer` of `model`, or None."""
    return _declared.get(model, {}).get(layer)


def layout_of(
    model: nn.Module, layer: str, shape: Sequence[int], input_hw: tuple[int, int] | None
) -> TokenLayout | None:
    """How the output of `layer` (of `shape`, for an input of `input_hw`) maps to a grid; None when
    it has no spatial reading (not 3-d or 4-d).

    A declared layout first; else 4-d: channels-last when `looks_channels_last`, else a grid;
    3-d [B, N, C]: tokens with (prefix, h, w) from `patch_grid`.
    """
    shape = tuple(int(s) for s in shape)
    declared = declared_layout(model, layer)
    if declared is not None:
        return declared if isinstance(declared, TokenLayout) else declared(input_hw, shape)
    if len(shape) == 4:
        return TokenLayout(CHANNELS_LAST if looks_channels_last(shape, input_hw) else GRID)
    if len(shape) == 3:
        prefix, height, width = patch_grid(model, input_hw, shape[1])
        return TokenLayout(TOKENS, prefix, height, width)
    return None
