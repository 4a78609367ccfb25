"""Layer discovery: one dry run with forward hooks on every named module, and the default layer.

A layer qualifies when its output reads as a spatial grid [B, C, h, w] with h, w > 1: a
convolutional feature map, or a vision transformer's tokens [B, P + h*w, C] or channels-last map
[B, h, w, C], read as models.tokens reads them (the same rules the explanation taps use).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from .errors import ModelError
from .tokens import GRID, TOKENS, layout_of


@dataclass(frozen=True)
class LayerInfo:
    """A module whose output is a spatial grid, or tokens / a channels-last map read as one."""

    name: str  # dotted module path: "layer4", "features.29", "blocks.11.norm1"
    shape: tuple[int, int, int]  # (C, h, w) of the grid the methods read, at the model's input size
    kind: str  # module class name: "Sequential", "ReLU", "LayerNorm", ...
    pooled: bool = False  # a pooling layer, or returns a pooling layer's output tensor
    layout: str = GRID  # "grid" [B, C, h, w] | "tokens" [B, P + h*w, C] | "channels_last" [B, h, w, C]
    prefix_tokens: int = 0  # P: class, distillation and register tokens before the patches

    @property
    def is_token_layer(self) -> bool:
        """True for a transformer's tokens or channels-last map, False for a convolutional map."""
        return self.layout != GRID


def _is_pool(module: torch.nn.Module) -> bool:
    return "Pool" in type(module).__name__


_NO_OP_NAMES = ("Identity", "DropPath", "DropBlock2d")


def _is_no_op(module: torch.nn.Module, inputs: tuple, output: object) -> bool:
    """Identity, dropout and drop-path modules in eval mode: they hand their input on unchanged,
    so listing them would only repeat the layer before."""
    passes_through = bool(inputs) and output is inputs[0]
    no_op_kind = isinstance(module, torch.nn.modules.dropout._DropoutNd) or type(module).__name__ in _NO_OP_NAMES
    return passes_through and no_op_kind


def discover_layers(module: torch.nn.Module, input_size: tuple[int, int] = (224, 224)) -> list[LayerInfo]:
    """Spatial and token layers in the order their forward finished, from one batch-1 dry run.

    Modules called more than once per forward (shared activations) are left out as ambiguous, and
    so are no-op modules (identity, dropout, drop-path) that only repeat their input, and outputs
    whose first dimension is not the batch (Swin's attention windows).
    """
    calls: list[tuple[str, torch.nn.Module, object]] = []

    def hook_for(name: str):
        def hook(mod: torch.nn.Module, inputs, output) -> None:
            if not _is_no_op(mod, inputs, output):
                calls.append((name, mod, output))

        return hook

    handles = [sub.register_forward_hook(hook_for(name)) for name, sub in module.named_modules() if name]
    was_training = {sub: sub.training for sub in module.modules()}
    parameter = next(module.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    try:
        module.eval()
        with torch.no_grad():
            module(torch.zeros(1, 3, *input_size, device=device))
    except Exception as exc:
        raise ModelError(
            f"Layer discovery failed: the model does not run on a 1x3x{input_size[0]}x"
            f"{input_size[1]} input ({type(exc).__name__}: {exc})."
        ) from exc
    finally:
        for handle in handles:
            handle.remove()
        for sub, training in was_training.items():  # each module's own flag, as it was
            sub.training = training
    return _spatial_layers(calls, module, (int(input_size[0]), int(input_size[1])))


def _spatial_layers(
    calls: list[tuple[str, torch.nn.Module, object]], root: torch.nn.Module, input_size: tuple[int, int]
) -> list[LayerInfo]:
    counts: dict[str, int] = {}
    for name, _, _ in calls:
        counts[name] = counts.get(name, 0) + 1
    pooled_outputs = [output for _, mod, output in calls if _is_pool(mod)]
    layers = []
    for name, mod, output in calls:
        if counts[name] != 1 or not isinstance(output, torch.Tensor) or output.shape[0] != 1:
            continue
        layout = layout_of(root, name, output.shape, input_size)
        if layout is None or (
            layout.kind == TOKENS and output.shape[1] != layout.prefix + layout.height * layout.width
        ):
            continue
        channels, height, width = layout.grid_shape(output.shape)
        if height > 1 and width > 1:
            pooled = _is_pool(mod) or any(output is other for other in pooled_outputs)
            layers.append(
                LayerInfo(
                    name,
                    (channels, height, width),
                    type(mod).__name__,
                    pooled,
                    layout.kind,
                    layout.prefix if layout.kind == TOKENS else 0,
                )
            )
    return layers


_BLOCK_NORM = re.compile(r"\.\d+\.norm\d*$")  # a norm inside a numbered block: "blocks.11.norm1"

_REASON_CNN = (
    "{name}: the last spatial layer before pooling, the most abstract features that still "
    "have a spatial layout (the Grad-CAM paper's choice)."
)
_REASON_PREFIXED = (
    "{name}: the last transformer block's first norm. The class token reads the patch "
    "tokens only through attention, and after this block's attention the patches no "
    "longer reach the class score, so later layers have no gradient on them; this is "
    "the layer pytorch-grad-cam's documentation recommends for ViT."
)
_REASON_POOLED_TOKENS = (
    "{name}: the last norm of the last transformer block, the last per-location "
    "features before the tokens are averaged ({h} x {w} grid); the layer "
    "pytorch-grad-cam's Swin example uses."
)
_REASON_LAST_TOKENS = (
    "{name}: the last token layer before pooling (no norm inside a numbered transformer block was found)."
)


def default_layer_choice(layers: list[LayerInfo]) -> tuple[str, str]:
    """(the default layer for the CAM family, a one-sentence reason a person can read).

    A convolutional network: the last spatial layer before pooling. A transformer (its last
    unpooled layer is a token layer): with prefix tokens (a class token, ViT, DeiT, BEiT, EVA) the
    last block's first norm ("blocks.11.norm1"); without (Swin, averaged tokens) the last block's
    last norm ("layers.3.blocks.1.norm2").
    """
    candidates = [layer for layer in layers if not layer.pooled]
    if not candidates:
        raise ModelError(
            "The model has no spatial feature map or token layer; the CAM methods need a layer with a spatial layout."
        )
    last = candidates[-1]
    if not last.is_token_layer:
        return last.name, _REASON_CNN.format(name=last.name)
    norms = [layer for layer in candidates if layer.is_token_layer and _BLOCK_NORM.search(layer.name)]
    if last.prefix_tokens > 0:
        first_norms = [layer for layer in norms if layer.name.endswith("norm1")]
        if first_norms:
            return first_norms[-1].name, _REASON_PREFIXED.format(name=first_norms[-1].name)
    elif norms:
        _, height, width = norms[-1].shape
        return norms[-1].name, _REASON_POOLED_TOKENS.format(name=norms[-1].name, h=height, w=width)
    return last.name, _REASON_LAST_TOKENS.format(name=last.name)


def default_layer(layers: list[LayerInfo]) -> str:
    """The default layer's name (see default_layer_choice); ModelError when there is none."""
    return default_layer_choice(layers)[0]


def default_layer_reason(layers: list[LayerInfo]) -> str:
    """Why the default layer was chosen, one or two sentences for the app and the CLI."""
    return default_layer_choice(layers)[1]
