"""Perturbation passes: Score-CAM and Ablation-CAM channel scores, batched so that one pass serves every
target, with the out-of-memory retry that every perturbation method shares."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from .taps import LayerTap
from .targets import TargetSet

ProgressFn = Callable[[float], None]


def reduced_precision(device: torch.device) -> AbstractContextManager:
    """fp16 autocast on CUDA for the many perturbed forward passes (the maps keep their shape; the
    softmax and the channel weighting run in float32); full precision on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return nullcontext()


def distinct_masks(activations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The channels of one image's activations [C, h, w] that give distinct Score-CAM masks.

    Returns (representative channel indices [U], for each channel the position of its
    representative in that list or -1 for a constant channel [C]). Constant channels have no mask.
    Channels that are positive affine transforms of each other (common after ReLU6: a single
    active location, or saturated binary patterns) give exactly the same upsampled, min-max
    normalised mask, so one masked forward pass serves them all.
    """
    flat = activations.flatten(1).float()
    low, high = flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)
    varying = (high > low).flatten().nonzero().flatten()
    slot = torch.full((len(flat),), -1, dtype=torch.long, device=flat.device)
    if len(varying) == 0:
        return varying, slot
    normalised = (flat[varying] - low[varying]) / (high[varying] - low[varying])
    # Compare at 2^-20 resolution: float rounding of the normalisation must not hide a duplicate,
    # and masks that differ by less change the forward pass by less than float32 noise.
    unique, inverse = torch.unique(torch.round(normalised * 2.0**20), dim=0, return_inverse=True)
    first = torch.full((len(unique),), len(varying), dtype=torch.long, device=flat.device)
    first = first.scatter_reduce(0, inverse, torch.arange(len(varying), device=flat.device), "amin")
    slot[varying] = inverse
    return varying[first], slot


def in_batches(
    count: int, batch_size: int, run: Callable[[int, int], None], progress: ProgressFn = lambda f: None
) -> None:
    """Calls run(start, stop) over range(count) in batches of at most ``batch_size``.

    On running out of memory (GPU or CPU) the batch is retried at half the size, down to one
    item; only then is the error passed on.
    """
    start = 0
    while start < count:
        stop = min(start + batch_size, count)
        try:
            run(start, stop)
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not is_out_of_memory(error) or batch_size == 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            batch_size = max(1, batch_size // 2)
            continue
        start = stop
        progress(start / count)


def part_progress(progress: ProgressFn, part: int, parts: int) -> ProgressFn:
    """The progress callback of part `part` (0-based) of `parts` equal parts of a task that reports to `progress`."""
    return lambda f: progress((part + f) / parts)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is the allocator running out of GPU or CPU memory."""
    message = str(error).lower()
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in message or "can't allocate memory" in message


def score_cam_scores(
    model: nn.Module,
    x: torch.Tensor,
    activations: torch.Tensor,
    targets: TargetSet,
    batch_size: int,
    baseline: bool = False,
    progress: ProgressFn = lambda f: None,
) -> torch.Tensor:
    """Score-CAM's channel weights (Wang et al. 2020): [T, B, C].

    Each varying channel A_k is upsampled to the input size and min-max normalised into a mask
    H_k; the weight is p_c(X * H_k), the softmax probability of the target on the masked image, as
    the authors' code computes it. With ``baseline``, the paper's increase in confidence
    p_c(X * H_k) - p_c(X_b) with X_b = X * 0 (eq. 4-5). Constant channels (no mask) get weight 0.
    One masked batch yields the probabilities of all targets at once, and channels with identical
    masks share one forward pass.
    """
    batch, channels = activations.shape[:2]
    size = x.shape[-2:]
    scores = torch.zeros(targets.count, batch, channels, device=x.device)
    with torch.no_grad(), reduced_precision(x.device):
        blank = model(torch.zeros_like(x[:1])).float() if baseline else None
        for b in range(batch):
            representatives, slot = distinct_masks(activations[b])
            gains = torch.zeros(len(representatives), targets.count, device=x.device)
            offset = targets.image_probabilities(b, blank)[:, 0] if blank is not None else 0.0

            def run(
                start: int, stop: int, b: int = b, offset=offset, representatives=representatives, gains=gains
            ) -> None:
                chunk = representatives[start:stop]
                masks = F.interpolate(
                    activations[b, chunk][None].float(), size=size, mode="bilinear", align_corners=False
                )[0]
                low = masks.flatten(1).amin(dim=1)[:, None, None]
                high = masks.flatten(1).amax(dim=1)[:, None, None]
                masks = (masks - low) / (high - low)
                masked = (x[b] * masks[:, None]).contiguous(memory_format=torch.channels_last)
                probabilities = targets.image_probabilities(b, model(masked).float())  # [T, n]
                gains[start:stop] = probabilities.T - offset

            in_batches(len(representatives), batch_size, run, part_progress(progress, b, batch))
            varying = slot >= 0
            scores[:, b, varying] = gains[slot[varying]].T
    return scores


def ablation_scores(
    model: nn.Module,
    tap: LayerTap,
    x: torch.Tensor,
    activations: torch.Tensor,
    logits: torch.Tensor,
    targets: TargetSet,
    batch_size: int,
    progress: ProgressFn = lambda f: None,
) -> torch.Tensor:
    """Ablation-CAM's channel weights: w_k = (y_c - y_c^k) / |y_c|, [T, B, C].

    y_c^k is the target's score (its logit) with channel k of the layer set to zero. The paper
    (Desai & Ramaswamy 2020, eq. 3) and pytorch-grad-cam divide by y_c; dividing by |y_c| keeps
    the sign meaning "this channel supports the class" when the logit is negative (a "why not" or
    low-ranked class), where theirs flips every weight. The network before the layer runs once per
    batch; the ablated copies enter at the layer, so only the part after it runs on the whole batch
    (when that part mixes in a tensor from before the layer with a batch-size-sensitive operation,
    the image is repeated instead).
    """
    batch, channels = activations.shape[:2]
    scores = torch.zeros(targets.count, batch, channels, device=x.device)
    with torch.no_grad(), reduced_precision(x.device):
        for b in range(batch):
            original = targets.image_logits(b, logits[b : b + 1].float())  # [T, 1]
            scale = original.abs().clamp(min=torch.finfo(torch.float32).tiny)

            def run(start: int, stop: int, b: int = b, original=original, scale=scale) -> None:
                ablated = activations[b].expand(stop - start, -1, -1, -1).clone()
                ablated[torch.arange(stop - start, device=x.device), torch.arange(start, stop, device=x.device)] = 0
                changed = targets.image_logits(b, _run_with_layer_output(model, tap, x[b : b + 1], ablated).float())
                scores[:, b, start:stop] = (original - changed) / scale  # [T, n]

            in_batches(channels, batch_size, run, part_progress(progress, b, batch))
    return scores


def _run_with_layer_output(
    model: nn.Module, tap: LayerTap, image: torch.Tensor, layer_output: torch.Tensor
) -> torch.Tensor:
    """The model's logits when the tapped layer outputs ``layer_output`` (a batch) for ``image``."""
    tap.replace = lambda output: layer_output.to(output.dtype)
    try:
        tap.reset()
        try:
            return model(image)
        except RuntimeError as error:
            if is_out_of_memory(error):
                raise
            tap.reset()
            return model(image.expand(len(layer_output), -1, -1, -1))
    finally:
        tap.replace = None
