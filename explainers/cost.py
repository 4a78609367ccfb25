"""How much work a request is, before running it: counted in single-image forward passes of the
model, so that a caller can turn it into seconds on its device and refuse what is too slow.

The counts follow the engine's plan (engine.py): one shared forward pass, one backward pass per
target for the gradient methods, and the perturbation methods' own passes. They are estimates
for deciding, not measurements.
"""

from __future__ import annotations

import time
from typing import Sequence

import torch
from torch import nn

from .engine import Options
from .methods import fused_cam, method_info
from .taps import eval_mode

BACKWARD = 2.0              # a backward pass costs about two forward passes
MIN_AFTER_LAYER_SHARE = 0.05


def method_passes(method: str, targets: int, channels: int, options: Options | None = None,
                  after_layer: float = 0.5) -> float:
    """Forward-pass equivalents one method adds to the shared passes, for one image: an upper
    bound (Score-CAM skips constant and duplicate masks, which only the forward pass shows).

    ``channels``: the layer's channel count (Score-CAM and Ablation-CAM run one masked or ablated
    copy per channel, shared by every target); ``targets``: classes explained; ``after_layer``:
    the share of the network after the layer, which is all Ablation-CAM runs.
    """
    options = options or Options()
    base = fused_cam(method)
    if base is not None:
        return method_passes(base, targets, channels, options, after_layer)
    if method == "scorecam":
        return float(channels)
    if method == "ablationcam":
        return channels * max(MIN_AFTER_LAYER_SHARE, after_layer)
    if method == "smoothgrad":
        return options.smoothgrad_samples * targets * (1 + BACKWARD)
    if method == "integrated_gradients":
        return options.ig_steps * targets * (1 + BACKWARD)
    method_info(method)  # unknown names raise
    return 0.0


def request_passes(methods: Sequence[str], targets: int, channels: int,
                   options: Options | None = None, after_layer: float = 0.5) -> float:
    """Forward-pass equivalents of one engine call: the shared passes plus every method's own."""
    shared = 1.0 + BACKWARD * targets
    return shared + sum(method_passes(m, targets, channels, options, after_layer)
                        for m in dict.fromkeys(methods))


def seconds_per_pass(module: nn.Module, input_size: tuple[int, int], batch: int = 16,
                     device: torch.device | str | None = None) -> float:
    """Seconds of one image's forward pass in the perturbation methods' regime (batches of 16,
    channels-last): the faster of two timed batches after a warm-up pass, in eval mode (each
    module's own flag restored after)."""
    device = device or next(module.parameters()).device
    x = torch.zeros(batch, 3, *input_size, device=device).contiguous(
        memory_format=torch.channels_last)
    timings = []
    with eval_mode(module), torch.no_grad():
        module(x[:2])
        for _ in range(2):
            _synchronize(device)
            start = time.perf_counter()
            module(x)
            _synchronize(device)
            timings.append((time.perf_counter() - start) / batch)
    return min(timings)


def _synchronize(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
