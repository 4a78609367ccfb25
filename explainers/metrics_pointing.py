"""The grid pointing game (Böhle et al., CVPR 2022; Rao et al., 2022).

Four images of four different classes are shrunk to half the side and tiled in a 2 x 2 grid the size
of the model's input: cell 0 top left, 1 top right, 2 bottom left, 3 bottom right. Each of the four
classes is explained on the grid, and the score of a map is the share of its positive attribution
(the sum of its positive values) that falls in the cell of the explained class: 1.0 is perfect
localisation, 0.25 is chance (a uniform map).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

CELLS = 4


def cell_box(cell: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of grid cell 0..3 in an image of `size` (H, W); row-major cells."""
    if not 0 <= cell < CELLS:
        raise ValueError(f"cell must be 0..3, got {cell}")
    height, width = size
    row, column = divmod(cell, 2)
    top, left = (0, height // 2)[row], (0, width // 2)[column]
    bottom, right = (height // 2, height)[row], (width // 2, width)[column]
    return top, bottom, left, right


def pointing_grid(images: torch.Tensor) -> torch.Tensor:
    """A 2 x 2 grid [1, 3, H, W] of four preprocessed images [4, 3, H, W], each resized (bilinear,
    antialiased) to its cell, so that the grid has the model's input size."""
    if images.dim() != 4 or images.shape[0] != CELLS:
        raise ValueError(f"the grid needs 4 images [4, 3, H, W], not {list(images.shape)}")
    size = (images.shape[-2], images.shape[-1])
    grid = torch.zeros_like(images[:1], dtype=torch.float32)
    for cell in range(CELLS):
        top, bottom, left, right = cell_box(cell, size)
        grid[0, :, top:bottom, left:right] = F.interpolate(
            images[cell : cell + 1].float(),
            size=(bottom - top, right - left),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )[0]
    return grid


def pointing_score(saliency, cell: int) -> float:
    """Share of the map's positive attribution inside `cell` (0..3); NaN when nothing is positive.

    saliency: [H, W] array or tensor at the grid's resolution (SaliencyMap.raw keeps the scale;
    .map works as well since both are non-negative for the engine's methods).
    """
    positive = torch.as_tensor(np.asarray(saliency, dtype=np.float64)).clamp(min=0)
    total = float(positive.sum())
    if total <= 0:
        return float("nan")
    top, bottom, left, right = cell_box(cell, (positive.shape[-2], positive.shape[-1]))
    return float(positive[top:bottom, left:right].sum()) / total
