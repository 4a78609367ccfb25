"""Attributions at the input: SmoothGrad and Integrated Gradients, batched over samples and targets."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .errors import ExplainerError
from .gradients import batched_grad
from .perturbation import part_progress

ProgressFn = Callable[[float], None]
DirectionsFn = Callable[[int, torch.Tensor], torch.Tensor]
"""(image b, logits [N, K] of N variants of it) -> the target directions [T, N, K] at those logits."""


def gradient_magnitude(grads: torch.Tensor) -> torch.Tensor:
    """Saliency of an input gradient [..., 3, H, W]: max over colour channels of |grad| (Simonyan)."""
    return grads.abs().amax(dim=-3)


def _mean_gradient(
    model: nn.Module, samples: torch.Tensor, b: int, directions_of: DirectionsFn, batch_size: int, progress: ProgressFn
) -> torch.Tensor:
    """Mean over the samples [N, 3, H, W] of image b of d(target score)/d(input): [T, 3, H, W]."""
    total: torch.Tensor | None = None
    chunks = samples.split(batch_size)
    for step, chunk in enumerate(chunks):
        chunk = chunk.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(chunk)
            grads = batched_grad(logits, chunk, directions_of(b, logits.detach()), retain_graph=False)
        total = grads.sum(dim=1) if total is None else total + grads.sum(dim=1)
        progress((step + 1) / len(chunks))
    if total is None:
        raise ExplainerError("The gradients need at least one sample (or step) per image.")
    return total / len(samples)


def smoothgrad(
    model: nn.Module,
    x: torch.Tensor,
    directions_of: DirectionsFn,
    samples: int = 25,
    noise_level: float = 0.15,
    batch_size: int = 16,
    seed: int = 0,
    progress: ProgressFn = lambda f: None,
) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017): gradients averaged over ``samples`` noisy copies.

    The noise is Gaussian with sigma = noise_level * (max(x) - min(x)) per image, drawn from a
    generator seeded with ``seed`` so that the same call gives the same map. directions_of gives
    each sample's target directions; returns the mean gradients [T, B, 3, H, W].
    """
    generator = torch.Generator(device=x.device).manual_seed(seed)
    result = []
    for b in range(x.shape[0]):
        image = x[b].detach()
        sigma = noise_level * (image.max() - image.min())
        noise = torch.randn((samples, *image.shape), generator=generator, device=x.device)
        result.append(
            _mean_gradient(
                model, image + sigma * noise, b, directions_of, batch_size, part_progress(progress, b, x.shape[0])
            )
        )
    return torch.stack(result, dim=1)


def integrated_gradients(
    model: nn.Module,
    x: torch.Tensor,
    directions_of: DirectionsFn,
    steps: int = 32,
    batch_size: int = 16,
    progress: ProgressFn = lambda f: None,
) -> torch.Tensor:
    """Integrated Gradients (Sundararajan et al. 2017) from the zero baseline.

    (x - x') * integral_0^1 grad f(x' + a (x - x')) da, with the integral by the midpoint rule on
    ``steps`` points, each with the target directions at its own logits (directions_of); returns
    attributions [T, B, 3, H, W] whose sum approximates f(x) - f(x') for each target (completeness).
    """
    alphas = (torch.arange(steps, device=x.device, dtype=x.dtype) + 0.5) / steps
    result = []
    for b in range(x.shape[0]):
        image = x[b].detach()
        path = alphas[:, None, None, None] * image
        mean = _mean_gradient(model, path, b, directions_of, batch_size, part_progress(progress, b, x.shape[0]))
        result.append(image * mean)
    return torch.stack(result, dim=1)
