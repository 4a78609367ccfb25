"""Attributions at the input: SmoothGrad and Integrated Gradients, batched over samples and targets."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .gradients import batched_grad

ProgressFn = Callable[[float], None]


def gradient_magnitude(grads: torch.Tensor) -> torch.Tensor:
    """Saliency of an input gradient [..., 3, H, W]: max over colour channels of |grad| (Simonyan)."""
    return grads.abs().amax(dim=-3)


def _mean_gradient(model: nn.Module, samples: torch.Tensor, directions: torch.Tensor,
                   batch_size: int, progress: ProgressFn) -> torch.Tensor:
    """Mean over the samples [N, 3, H, W] of d(direction . logits)/d(input): [T, 3, H, W]."""
    total = torch.zeros(directions.shape[0], *samples.shape[1:], device=samples.device)
    chunks = samples.split(batch_size)
    for step, chunk in enumerate(chunks):
        chunk = chunk.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(chunk)
            grads = batched_grad(logits, chunk, directions[:, None, :].expand(-1, len(chunk), -1),
                                 retain_graph=False)
        total += grads.sum(dim=1)
        progress((step + 1) / len(chunks))
    return total / len(samples)


def smoothgrad(model: nn.Module, x: torch.Tensor, directions: torch.Tensor, samples: int = 25,
               noise_level: float = 0.15, batch_size: int = 16, seed: int = 0,
               progress: ProgressFn = lambda f: None) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017): gradients averaged over ``samples`` noisy copies.

    The noise is Gaussian with sigma = noise_level * (max(x) - min(x)) per image, drawn from a
    generator seeded with ``seed`` so that the same call gives the same map. directions: [T, B, K];
    returns the mean gradients [T, B, 3, H, W].
    """
    generator = torch.Generator(device=x.device).manual_seed(seed)
    result = []
    for b in range(x.shape[0]):
        image = x[b].detach()
        sigma = noise_level * (image.max() - image.min())
        noise = torch.randn((samples, *image.shape), generator=generator, device=x.device)
        result.append(_mean_gradient(model, image + sigma * noise, directions[:, b], batch_size,
                                     lambda f, b=b: progress((b + f) / x.shape[0])))
    return torch.stack(result, dim=1)


def integrated_gradients(model: nn.Module, x: torch.Tensor, directions: torch.Tensor,
                         steps: int = 32, batch_size: int = 16,
                         progress: ProgressFn = lambda f: None) -> torch.Tensor:
    """Integrated Gradients (Sundararajan et al. 2017) from the zero baseline.

    (x - x') * integral_0^1 grad f(x' + a (x - x')) da, with the integral by the midpoint rule on
    ``steps`` points. directions: [T, B, K]; returns attributions [T, B, 3, H, W] whose sum
    approximates f(x) - f(x') along each direction (completeness).
    """
    alphas = (torch.arange(steps, device=x.device, dtype=x.dtype) + 0.5) / steps
    result = []
    for b in range(x.shape[0]):
        image = x[b].detach()
        path = alphas[:, None, None, None] * image
        mean = _mean_gradient(model, path, directions[:, b], batch_size,
                              lambda f, b=b: progress((b + f) / x.shape[0]))
        result.append(image * mean)
    return torch.stack(result, dim=1)
