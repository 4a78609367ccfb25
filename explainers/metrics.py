"""Faithfulness metrics of saliency maps: deletion / insertion curves and Average Drop / Increase.

Pure PyTorch and batched: every perturbed copy of every image goes through the model in a few
large batches. Maps are the engine's [H, W] maps at the input resolution (SaliencyMap.map or .raw),
images are preprocessed tensors in the model's normalised input space.

- Deletion and insertion (Petsiuk et al., RISE, BMVC 2018): the pixels are ranked by saliency
  (stable sort: equal values keep raster order) and removed (deletion: replaced by the zero
  baseline x * 0 of the normalised space, i.e. the dataset's mean colour) or put back into a
  blurred copy (insertion: Gaussian blur, kernel 11, sigma 5, zero padding, as in RISE's code), an
  equal share of the pixels per step; the curve follows the target's softmax probability and its
  area is taken by the trapezoid rule over the fraction of pixels in [0, 1].
- Average Drop and Increase in Confidence (Chattopadhay et al., Grad-CAM++, WACV 2018): the
  explanation map E = x * saliency; with Y the target's probability on x and O on E,
  Average Drop = mean(max(0, Y - O) / Y) * 100 and Increase = share of images with O > Y * 100.
- Counterfactual check of "why not" maps (implied by Selvaraju et al., Grad-CAM, ICCV 2017: a
  counterfactual map shows the regions that, removed, would make the model more confident of the
  class): the region of a map (its top COUNTERFACTUAL_SHARE of the pixels, positive ones only) is
  removed as deletion removes pixels (zero baseline; or blurred), and the class's log-probability
  gain is compared with the gain from removing shifted copies of the same region (the same pixels
  moved cyclically by half the height, half the width and both: same area, elsewhere). A faithful
  "why not" map's region raises the class more than its shifted copies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .taps import eval_mode

DEFAULT_STEPS = 50
BLUR_KERNEL, BLUR_SIGMA = 11, 5.0
DELETION_BASELINE = "zero (x * 0 in the normalised input space)"


def module_of(model) -> nn.Module:
    """The torch module of a models.Classifier, or the module itself."""
    return model if isinstance(model, nn.Module) else model.module


def as_maps(maps, device: torch.device) -> torch.Tensor:
    """Saliency maps as a float32 tensor [N, H, W] on `device` (from arrays, tensors or a list)."""
    if isinstance(maps, (list, tuple)):
        maps = np.stack([np.asarray(m, dtype=np.float32) for m in maps])
    maps = torch.as_tensor(np.asarray(maps, dtype=np.float32) if not torch.is_tensor(maps) else maps)
    return (maps[None] if maps.dim() == 2 else maps).float().to(device)


def gaussian_blur(x: torch.Tensor, kernel_size: int = BLUR_KERNEL, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """Channel-wise Gaussian blur of [B, C, H, W] with zero padding (RISE's insertion baseline)."""
    radius = kernel_size // 2
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32, device=x.device)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    rows = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    columns = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    x = F.conv2d(x.float(), rows, padding=(radius, 0), groups=channels)
    return F.conv2d(x, columns, padding=(0, radius), groups=channels)


def saliency_ranks(maps: torch.Tensor) -> torch.Tensor:
    """Rank of every pixel [N, H, W] (0 = most salient); ties keep raster order (stable sort)."""
    flat = maps.flatten(1)
    order = torch.argsort(-flat, dim=1, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return ranks.view_as(maps)


def batched_probabilities(
    model,
    count: int,
    make_batch: Callable[[torch.Tensor], torch.Tensor],
    targets: torch.Tensor,
    batch_size: int,
    log: bool = False,
) -> torch.Tensor:
    """Softmax probabilities [count] of `targets[i]` on the images make_batch(indices) builds (their
    logarithms, computed as log-softmax, with `log`)."""
    module = module_of(model)
    normalise = F.log_softmax if log else F.softmax
    out = torch.empty(count, device=targets.device)
    with torch.no_grad(), eval_mode(module):
        for chunk in torch.arange(count, device=targets.device).split(batch_size):
            images = make_batch(chunk).contiguous(memory_format=torch.channels_last)
            probabilities = normalise(module(images).float(), dim=1)
            out[chunk] = probabilities.gather(1, targets[chunk, None])[:, 0]
    return out


def _device(model) -> torch.device:
    parameter = next(module_of(model).parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _inputs(model, x: torch.Tensor, maps, targets: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x [N, 3, H, W], maps [N, H, W], targets [N]) on the model's device, checked."""
    device = _device(model)
    maps = as_maps(maps, device)
    x = x.detach().float().to(device)
    if x.dim() == 3:
        x = x[None]
    if x.shape[0] == 1 and len(maps) > 1:
        x = x.expand(len(maps), -1, -1, -1)
    target_ids = torch.as_tensor(np.asarray(targets, dtype=np.int64).reshape(-1), device=device)
    if not (len(x) == len(maps) == len(target_ids)) or maps.shape[-2:] != x.shape[-2:]:
        raise ValueError(
            f"x {list(x.shape)}, maps {list(maps.shape)} and {len(target_ids)} targets do not "
            "match: one image, one [H, W] map at the input size and one target per map"
        )
    return x, maps, target_ids


@dataclass
class Curves:
    """Deletion and insertion curves of N maps: probabilities of the target after each step."""

    fractions: np.ndarray  # [steps + 1] fraction of the pixels removed / inserted, 0 .. 1
    deletion: np.ndarray  # [N, steps + 1]
    insertion: np.ndarray  # [N, steps + 1]
    deletion_auc: np.ndarray  # [N], lower is better
    insertion_auc: np.ndarray  # [N], higher is better
    deletion_baseline: str = DELETION_BASELINE
    insertion_baseline: str = f"Gaussian blur, kernel {BLUR_KERNEL}, sigma {BLUR_SIGMA}"

    @property
    def step_fraction(self) -> float:
        """The share of the pixels changed per step (1 / steps)."""
        return float(self.fractions[1] - self.fractions[0])


def area(fractions: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """Area under each curve [N, S] over `fractions` [S] by the trapezoid rule."""
    widths = np.diff(fractions)
    return ((curves[..., 1:] + curves[..., :-1]) / 2 * widths).sum(axis=-1)


def deletion_insertion(
    model,
    x: torch.Tensor,
    maps,
    targets: Sequence[int],
    steps: int = DEFAULT_STEPS,
    batch_size: int = 64,
    blur_kernel: int = BLUR_KERNEL,
    blur_sigma: float = BLUR_SIGMA,
) -> Curves:
    """Deletion and insertion curves (Petsiuk et al. 2018) of N maps, all steps batched.

    x: [N, 3, H, W] (or one image [1, 3, H, W] shared by all maps), preprocessed; maps: N saliency
    maps [H, W] at the input size; targets: N class indices. Step i of `steps` changes the
    round(i / steps * H * W) most salient pixels (all channels): deletion sets them to the zero
    baseline, insertion copies them from x into the blurred x (kernel `blur_kernel`, sigma
    `blur_sigma`). The N * (steps + 1) * 2 perturbed images run in batches of `batch_size`.
    """
    x, maps, target_ids = _inputs(model, x, maps, targets)
    count, pixels = len(maps), maps[0].numel()
    ranks = saliency_ranks(maps)
    blurred = gaussian_blur(x, blur_kernel, blur_sigma)
    changed_per_step = torch.round(torch.linspace(0, pixels, steps + 1, device=x.device)).long()
    per_curve = steps + 1

    def make_batch(indices: torch.Tensor) -> torch.Tensor:
        kind, rest = indices // (count * per_curve), indices % (count * per_curve)
        item, step = rest // per_curve, rest % per_curve
        changed = (ranks[item] < changed_per_step[step, None, None])[:, None]  # [n, 1, H, W]
        deleted = x[item].masked_fill(changed, 0.0)
        inserted = torch.where(changed, x[item], blurred[item])
        return torch.where((kind == 0)[:, None, None, None], deleted, inserted)

    total = 2 * count * per_curve
    every_target = target_ids.repeat_interleave(per_curve).repeat(2)  # (kind, item, step) order
    probabilities = batched_probabilities(model, total, make_batch, every_target, batch_size)
    curves = probabilities.view(2, count, per_curve).cpu().double().numpy()
    fractions = (changed_per_step.double() / pixels).cpu().numpy()
    return Curves(
        fractions,
        curves[0],
        curves[1],
        area(fractions, curves[0]),
        area(fractions, curves[1]),
        insertion_baseline=f"Gaussian blur, kernel {blur_kernel}, sigma {blur_sigma}",
    )


@dataclass
class ConfidenceChange:
    """Target probabilities on the images (Y) and on their explanation maps x * saliency (O)."""

    original: np.ndarray  # Y [N]
    explained: np.ndarray  # O [N]

    @property
    def average_drop(self) -> float:
        """Average Drop in %: mean of max(0, Y - O) / Y (lower is better)."""
        return float(np.mean(np.maximum(0.0, self.original - self.explained) / self.original) * 100)

    @property
    def increase_in_confidence(self) -> float:
        """Increase in Confidence in %: share of the maps with O > Y (higher is better)."""
        return float(np.mean(self.explained > self.original) * 100)

    @staticmethod
    def concatenate(parts: Sequence[ConfidenceChange]) -> ConfidenceChange:
        """One ConfidenceChange over all the maps of `parts`."""
        return ConfidenceChange(
            np.concatenate([p.original for p in parts]), np.concatenate([p.explained for p in parts])
        )


def confidence_change(model, x: torch.Tensor, maps, targets: Sequence[int], batch_size: int = 64) -> ConfidenceChange:
    """Y and O of N maps (Chattopadhay et al. 2018), batched: O on E = x * map, element-wise in the
    normalised input space, with the map in [0, 1] (SaliencyMap.map) broadcast over the channels.

    x: [N, 3, H, W] or one image [1, 3, H, W] shared by all maps; targets: N class indices.
    """
    x, maps, target_ids = _inputs(model, x, maps, targets)
    count = len(maps)

    def make_batch(indices: torch.Tensor) -> torch.Tensor:
        item = indices % count
        scale = torch.where((indices < count)[:, None, None], torch.ones_like(maps[item]), maps[item])
        return x[item] * scale[:, None]

    probabilities = batched_probabilities(model, 2 * count, make_batch, target_ids.repeat(2), batch_size)
    values = probabilities.view(2, count).cpu().double().numpy()
    return ConfidenceChange(values[0], values[1])


COUNTERFACTUAL_SHARE = 0.1
COUNTERFACTUAL_BASELINES = ("zero", "blur")


def region_and_shifts(maps: torch.Tensor, share: float = COUNTERFACTUAL_SHARE) -> tuple[torch.Tensor, torch.Tensor]:
    """(regions [N, H, W], shifted [N, 3, H, W]) boolean masks: each map's top `share` of the pixels
    (stable ranks, as deletion) where it is positive, and that region rolled cyclically by half the
    height, half the width and both (the same number of pixels, elsewhere)."""
    height, width = maps.shape[-2:]
    count = int(round(share * height * width))
    regions = (saliency_ranks(maps) < count) & (maps > 0)
    shifts = [(height // 2, 0), (0, width // 2), (height // 2, width // 2)]
    shifted = torch.stack([torch.roll(regions, shifts=s, dims=(-2, -1)) for s in shifts], dim=1)
    return regions, shifted


@dataclass
class CounterfactualCheck:
    """Log-probability gains of the class when the "why not" region, or a shifted copy, is removed."""

    original: np.ndarray  # [N] log-probability of the class on x
    region_gain: np.ndarray  # [N] log p(x without the region) - log p(x); NaN: no positive pixel
    shifted_gain: np.ndarray  # [N] the same for the shifted copies (mean of 3); NaN: no positive pixel
    area: np.ndarray  # [N] share of the pixels removed (0 for an empty map)

    @property
    def separation(self) -> np.ndarray:
        """region_gain - shifted_gain [N]: positive when the map's region matters more."""
        return self.region_gain - self.shifted_gain

    @property
    def checked(self) -> int:
        """How many maps had a region to remove."""
        return int(np.isfinite(self.separation).sum())

    @property
    def win_rate(self) -> float:
        """Share of the maps with a region whose removal raised the class more than the shifted
        copies' removal (NaN when no map had a region)."""
        separation = self.separation[np.isfinite(self.separation)]
        return float(np.mean(separation > 0)) if len(separation) else float("nan")

    def pick(self, index: int) -> CounterfactualCheck:
        """The check of map `index` alone."""
        return CounterfactualCheck(*(getattr(self, f.name)[index : index + 1] for f in fields(self)))

    @staticmethod
    def concatenate(parts: Sequence[CounterfactualCheck]) -> CounterfactualCheck:
        """One CounterfactualCheck over all the maps of `parts`."""
        return CounterfactualCheck(
            *(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(CounterfactualCheck))
        )


def counterfactual_check(
    model,
    x: torch.Tensor,
    maps,
    targets: Sequence[int],
    share: float = COUNTERFACTUAL_SHARE,
    baseline: str = "zero",
    batch_size: int = 64,
) -> CounterfactualCheck:
    """The counterfactual check of N "why not" maps, batched: per map, x, x without the region and x
    without each of 3 shifted copies go through the model in batches of `batch_size`.

    x: [N, 3, H, W] or one image [1, 3, H, W] shared by all maps; maps: N maps [H, W] at the input
    size (SaliencyMap.raw or .map); targets: N class indices. baseline: "zero" sets the removed
    pixels to the zero baseline of the normalised space (as deletion), "blur" to the Gaussian-blurred
    image (RISE's insertion baseline).
    """
    if baseline not in COUNTERFACTUAL_BASELINES:
        raise ValueError(f"baseline must be one of {COUNTERFACTUAL_BASELINES}, not {baseline!r}")
    x, maps, target_ids = _inputs(model, x, maps, targets)
    count = len(maps)
    regions, shifted = region_and_shifts(maps, share)
    removed = torch.cat([torch.zeros_like(regions)[:, None], regions[:, None], shifted], dim=1)  # [N, 5, H, W]
    per_map = removed.shape[1]
    filler = torch.zeros_like(x) if baseline == "zero" else gaussian_blur(x)

    def make_batch(indices: torch.Tensor) -> torch.Tensor:
        item, kind = indices // per_map, indices % per_map
        return torch.where(removed[item, kind][:, None], filler[item], x[item])

    scores = (
        batched_probabilities(
            model, count * per_map, make_batch, target_ids.repeat_interleave(per_map), batch_size, log=True
        )
        .view(count, per_map)
        .cpu()
        .double()
        .numpy()
    )
    has_region = regions.flatten(1).any(dim=1).cpu().numpy()
    gains = np.where(has_region[:, None], scores[:, 1:] - scores[:, :1], np.nan)
    area_removed = regions.flatten(1).double().mean(dim=1).cpu().numpy()
    return CounterfactualCheck(scores[:, 0], gains[:, 0], gains[:, 1:].mean(axis=1), area_removed)
