"""How much work a request is, before running it: counted in single-image forward passes of the
model, so that a caller can turn it into seconds on its device and refuse what is too slow.

The counts follow the engine's plan (engine.py): one shared forward pass, one backward pass per
target for the gradient methods, and the perturbation methods' own passes. They are estimates
for deciding, not measurements.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import nn

from .options import Options
from .registry import BACKWARD, PassQuery, get_method
from .taps import eval_mode

__all__ = ["BACKWARD", "method_passes", "request_passes", "seconds_per_pass"]


def method_passes(
    method: str,
    targets: int,
    channels: int,
    options: Options | None = None,
    after_layer: float = 0.5,
    device: torch.device | str = "cpu",
) -> float:
    """Forward-pass equivalents one method adds to the shared passes, for one image: an upper
    bound (Score-CAM skips constant and duplicate masks, which only the forward pass shows).

    Each method declares its own count (`Method.passes`): Score-CAM one masked copy per channel
    and Ablation-CAM one ablated copy (through the network after the layer) per channel, shared by
    every target; RISE one masked copy per mask (its count depends on the device); SmoothGrad and
    Integrated Gradients a forward and a backward pass per sample and target; the others (the
    gradient CAMs, the rollouts, the input gradients) only share the common passes.
    ``channels``: the layer's channel count; ``targets``: targets explained; ``after_layer``: the
    share of the network after the layer.
    """
    unit = get_method(method)  # unknown names raise
    if unit.passes is None:
        return 0.0
    query = PassQuery(targets, channels, options or Options(), after_layer, torch.device(device))
    return float(unit.passes(query))


def request_passes(
    methods: Sequence[str],
    targets: int,
    channels: int,
    options: Options | None = None,
    after_layer: float = 0.5,
    device: torch.device | str = "cpu",
) -> float:
    """Forward-pass equivalents of one engine call: the shared passes plus every method's own."""
    shared = 1.0 + BACKWARD * targets
    return shared + sum(
        method_passes(m, targets, channels, options, after_layer, device) for m in dict.fromkeys(methods)
    )


def seconds_per_pass(
    module: nn.Module, input_size: tuple[int, int], batch: int = 16, device: torch.device | str | None = None
) -> float:
    """Seconds of one image's forward pass in the perturbation methods' regime (batches of 16,
    channels-last): the faster of two timed batches after a warm-up pass, in eval mode (each
    module's own flag restored after)."""
    device = device or next(module.parameters()).device
    x = torch.zeros(batch, 3, *input_size, device=device).contiguous(memory_format=torch.channels_last)
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
