"""Whether a method applies to a model and layer, and why not when it does not."""
from __future__ import annotations

import weakref

import torch
from torch import nn

from .errors import ExplainerError
from .methods import METHODS, MethodInfo, method_info, uses_guided_backprop
from .taps import RELU_FAMILY, eval_mode, layer_tap

_NO_SIGN = {
    "eigencam": "Eigen-CAM does not depend on the class, so it has no counterfactual form.",
    "gradient": "The gradient map shows a magnitude, which has no sign to flip: no counterfactual form.",
    "smoothgrad": "SmoothGrad shows a magnitude, which has no sign to flip: no counterfactual form.",
}


def check_counterfactual(info: MethodInfo) -> None:
    """Raises when `info` has no "why not this class" form."""
    if not info.counterfactual:
        raise ExplainerError(_NO_SIGN.get(info.name, f"{info.title} has no counterfactual form."))


def check_guided(module: nn.Module) -> None:
    """Raises when the model has no ReLU-family module for guided backpropagation to act on."""
    if not any(isinstance(m, RELU_FAMILY) for m in module.modules()):
        raise ExplainerError("Guided backpropagation needs ReLU or ReLU6 modules; this model has "
                             "none (it uses other activations), so it would be the plain gradient.")


def linear_head(module: nn.Module, num_classes: int) -> nn.Linear | None:
    """The last nn.Linear with one output per class, the candidate CAM classifier."""
    heads = [m for m in module.modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    return heads[-1] if heads else None


def linear_head_weights(module: nn.Module, activations: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The class weights [K, C] that CAM needs, after checking that the network really computes
    logits = W . GAP(activations) + b from this layer (Zhou et al.'s architecture condition)."""
    head = linear_head(module, logits.shape[1])
    if head is None:
        raise ExplainerError("CAM needs a final linear layer with one output per class; this model has none.")
    if head.in_features != activations.shape[1]:
        raise ExplainerError(f"CAM needs the layer to feed the classifier through global average pooling: "
                             f"this layer has {activations.shape[1]} channels, the classifier reads "
                             f"{head.in_features} features.")
    weight = head.weight.detach().float()
    bias = head.bias.detach().float() if head.bias is not None else 0.0
    predicted = activations.float().mean(dim=(2, 3)) @ weight.T + bias
    tolerance = 1e-3 * float(logits.abs().max().clamp(min=1.0))
    if float((predicted - logits.float()).abs().max()) > tolerance:
        raise ExplainerError("CAM needs global average pooling followed by one linear layer right after "
                             "this layer; here something else sits between them (another layer, an "
                             "activation or normalisation), so CAM does not apply. Use Grad-CAM, which "
                             "equals CAM where CAM applies.")
    return weight


_layer_reasons: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def availability(model, layer: str | None = None, counterfactual: bool = False) -> dict[str, str | None]:
    """For every method: None when it can explain with this model and layer, else the reason why not.

    model: a models.Classifier or an nn.Module; layer: None means the model's default layer.
    """
    module = model if isinstance(model, nn.Module) else model.module
    if layer is None and not isinstance(model, nn.Module):
        layer = model.default_layer
    size = tuple(getattr(model, "input_size", (224, 224)))
    layer_reason, cam_reason = _layer_check(module, layer, size)
    result = {}
    for name in METHODS:
        info = method_info(name)
        try:
            if counterfactual:
                check_counterfactual(info)
            if uses_guided_backprop(info):
                check_guided(module)
            reason = layer_reason if info.needs_layer else None
            result[name] = reason or (cam_reason if name == "cam" else None)
        except ExplainerError as error:
            result[name] = str(error)
    return result


def _layer_check(module: nn.Module, layer: str | None, size: tuple[int, int]) -> tuple[str | None, str | None]:
    """(why the layer cannot be used, why CAM cannot be used), from one cached dry run."""
    if layer is None:
        return "This method reads a layer's activations: choose a layer.", None
    cache = _layer_reasons.setdefault(module, {})
    if (layer, size) not in cache:
        cache[(layer, size)] = _dry_run(module, layer, size)
    return cache[(layer, size)]


def _dry_run(module: nn.Module, layer: str, size: tuple[int, int]) -> tuple[str | None, str | None]:
    try:
        tap = layer_tap(module, layer, "keep")
        parameter = next(module.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(1, 3, *size, generator=generator).to(device)
        with eval_mode(module), tap.attached(), torch.no_grad():
            logits = module(x)
        activations = tap.activations()
    except ExplainerError as error:
        return str(error), None
    try:
        linear_head_weights(module, activations, logits)
        return None, None
    except ExplainerError as error:
        return None, str(error)
