"""Spatial-layer discovery: one dry run with forward hooks on every named module."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import ModelError


@dataclass(frozen=True)
class LayerInfo:
    """A module whose output is a spatial feature map [B, C, H, W] with H, W > 1."""

    name: str                      # dotted module path: "layer4", "features.29", "bn2"
    shape: tuple[int, int, int]    # (C, H, W) at the model's input size
    kind: str                      # module class name: "Sequential", "ReLU", ...
    pooled: bool = False           # a pooling layer, or returns a pooling layer's output tensor


def _is_pool(module: torch.nn.Module) -> bool:
    return "Pool" in type(module).__name__


_NO_OP_NAMES = ("Identity", "DropPath", "DropBlock2d")


def _is_no_op(module: torch.nn.Module, inputs: tuple, output: object) -> bool:
    """Identity, dropout and drop-path modules in eval mode: they hand their input on unchanged,
    so listing them would only repeat the layer before."""
    passes_through = bool(inputs) and output is inputs[0]
    no_op_kind = (isinstance(module, torch.nn.modules.dropout._DropoutNd)
                  or type(module).__name__ in _NO_OP_NAMES)
    return passes_through and no_op_kind


def discover_layers(module: torch.nn.Module, input_size: tuple[int, int] = (224, 224)) -> list[LayerInfo]:
    """Spatial layers in the order their forward finished, from one batch-1 dry run.

    Modules called more than once per forward (shared activations) are left out as ambiguous, and
    so are no-op modules (identity, dropout, drop-path) that only repeat their input.
    """
    calls: list[tuple[str, torch.nn.Module, object]] = []

    def hook_for(name: str):
        def hook(mod: torch.nn.Module, inputs, output) -> None:
            if not _is_no_op(mod, inputs, output):
                calls.append((name, mod, output))
        return hook

    handles = [sub.register_forward_hook(hook_for(name))
               for name, sub in module.named_modules() if name]
    was_training = {sub: sub.training for sub in module.modules()}
    parameter = next(module.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    try:
        module.eval()
        with torch.no_grad():
            module(torch.zeros(1, 3, *input_size, device=device))
    except Exception as exc:
        raise ModelError(f"Layer discovery failed: the model does not run on a 1x3x{input_size[0]}x"
                         f"{input_size[1]} input ({type(exc).__name__}: {exc}).") from exc
    finally:
        for handle in handles:
            handle.remove()
        for sub, training in was_training.items():  # each module's own flag, as it was
            sub.training = training
    return _spatial_layers(calls)


def _spatial_layers(calls: list[tuple[str, torch.nn.Module, object]]) -> list[LayerInfo]:
    counts: dict[str, int] = {}
    for name, _, _ in calls:
        counts[name] = counts.get(name, 0) + 1
    pooled_outputs = [output for _, mod, output in calls if _is_pool(mod)]
    layers = []
    for name, mod, output in calls:
        if counts[name] != 1 or not isinstance(output, torch.Tensor) or output.dim() != 4:
            continue
        _, channels, height, width = output.shape
        if height > 1 and width > 1:
            pooled = _is_pool(mod) or any(output is other for other in pooled_outputs)
            layers.append(LayerInfo(name, (channels, height, width), type(mod).__name__, pooled))
    return layers


def default_layer(layers: list[LayerInfo]) -> str:
    """The last spatial layer before pooling (pooling layers and their outputs are skipped)."""
    candidates = [layer for layer in layers if not layer.pooled]
    if not candidates:
        raise ModelError("The model has no spatial feature map (e.g. a vision transformer); "
                         "CAM methods need a convolutional layer.")
    return candidates[-1].name
