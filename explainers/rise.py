"""RISE (Petsiuk et al., BMVC 2018): randomized input sampling for explanation, as the authors' code
runs it.

N binary grids of s x s cells, each cell kept with probability p, are upsampled bilinearly to
(s + 1) x cell size and cropped to the input at a random shift of less than one cell; the saliency
of a pixel is sum_n score_n * M_n(pixel) / (N p), with score_n the target's probability on the
image times mask n. The authors resize with skimage (border mirrored); here torch's bilinear
interpolation (half-pixel centres, border clamped), a difference confined to the outer half cell
of the upsampled grid, which the crop mostly removes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ExplainerError
from .options import Options
from .perturbation import in_batches, part_progress, reduced_precision

RISE_MASKS_CUDA = 8000  # the paper's count for ImageNet
RISE_MASKS_CPU = 1000


def mask_count(options: Options, device: torch.device | str) -> int:
    """The number of masks RISE uses on this device (Options.rise_masks, else 8000 on CUDA, 1000 on the CPU)."""
    if options.rise_masks is not None:
        return int(options.rise_masks)
    return RISE_MASKS_CUDA if torch.device(device).type == "cuda" else RISE_MASKS_CPU


class MaskSampler:
    """The N random masks of one explanation, drawn once from `seed` and upsampled batch by batch."""

    def __init__(
        self,
        count: int,
        size: tuple[int, int],
        cells: int = 7,
        probability: float = 0.5,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        self.size, self.count = (int(size[0]), int(size[1])), count
        self.cell = (math.ceil(self.size[0] / cells), math.ceil(self.size[1] / cells))
        self.upsampled = ((cells + 1) * self.cell[0], (cells + 1) * self.cell[1])
        grids = torch.rand(count, cells, cells, generator=torch.Generator().manual_seed(seed))
        self.grids = (grids < probability).float().to(device)
        # one draw per mask, from its own stream: the first n masks of any count are the same
        shift = torch.randint(
            0, self.cell[0] * self.cell[1], (count,), generator=torch.Generator().manual_seed(seed + 1)
        )
        self.shifts = torch.stack([shift // self.cell[1], shift % self.cell[1]], 1).to(device)

    def masks(self, start: int, stop: int) -> torch.Tensor:
        """Masks start..stop-1 as [n, H, W] in [0, 1]."""
        up = F.interpolate(self.grids[start:stop, None], size=self.upsampled, mode="bilinear", align_corners=False)[
            :, 0
        ]
        rows = self.shifts[start:stop, 0, None] + torch.arange(self.size[0], device=up.device)
        cols = self.shifts[start:stop, 1, None] + torch.arange(self.size[1], device=up.device)
        index = torch.arange(stop - start, device=up.device)[:, None, None]
        return up[index, rows[:, :, None], cols[:, None, :]]


def rise_saliency(
    model: nn.Module,
    x: torch.Tensor,
    scores_of: Callable[[int, torch.Tensor], torch.Tensor],
    count: int,
    cells: int = 7,
    probability: float = 0.5,
    seed: int = 0,
    batch_size: int = 16,
    progress: Callable[[float], None] = lambda f: None,
) -> torch.Tensor:
    """RISE maps [T, B, H, W] of every target of every image, from the same masked passes.

    scores_of(b, logits [n, K]) -> [T, n]: image b's target probabilities on n masked copies.
    The same masks serve every image of the batch (as in the authors' code).
    """
    batch, _, height, width = x.shape
    sampler = MaskSampler(count, (height, width), cells, probability, seed, x.device)
    saliency: torch.Tensor | None = None
    with torch.no_grad(), reduced_precision(x.device):
        for b in range(batch):
            total: torch.Tensor | None = None

            def run(start: int, stop: int, b: int = b) -> None:
                nonlocal total
                masks = sampler.masks(start, stop)
                masked = (x[b] * masks[:, None]).contiguous(memory_format=torch.channels_last)
                scores = scores_of(b, model(masked).float())  # [T, n]
                part = scores @ masks.float().flatten(1)  # [T, H * W]
                total = part if total is None else total + part

            in_batches(count, batch_size, run, part_progress(progress, b, batch))
            if total is None:
                raise ExplainerError("RISE needs at least one mask.")
            image = (total / (count * probability)).reshape(-1, height, width)
            if saliency is None:
                saliency = torch.zeros(image.shape[0], batch, height, width, device=x.device)
            saliency[:, b] = image
    if saliency is None:
        raise ExplainerError("RISE needs at least one image.")
    return saliency
