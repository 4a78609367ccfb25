"""Whether a method applies to a model and layer, and why not when it does not."""

from __future__ import annotations

import weakref

import torch
from torch import nn

from .attention import attention_problem
from .errors import ExplainerError
from .registry import METHODS, Method, get_method
from .taps import RELU_FAMILY, eval_mode, layer_tap


def guided_problem(module: nn.Module) -> str | None:
    """Why guided backpropagation cannot act on the model (no ReLU-family module), or None."""
    if not any(isinstance(m, RELU_FAMILY) for m in module.modules()):
        return (
            "Guided backpropagation needs ReLU or ReLU6 modules; this model has none (it uses "
            "other activations), so it would be the plain gradient."
        )
    return None


def method_problem(method: Method, module: nn.Module, counterfactual: bool = False) -> str | None:
    """Why `method` cannot explain with `module` (or has no counterfactual form when asked for
    one), from what it needs and its own check; None when it can. Layer checks are apart."""
    info = method.info
    if counterfactual and not info.counterfactual:
        return method.no_counterfactual or f"{info.title} has no counterfactual form."
    if info.needs.guided_gradient and (reason := guided_problem(module)):
        return reason
    if info.needs.attention and (reason := attention_problem(module)):
        return reason
    return method.check(module) if method.check else None


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
        raise ExplainerError(
            f"CAM needs the layer to feed the classifier through global average pooling: "
            f"this layer has {activations.shape[1]} channels, the classifier reads "
            f"{head.in_features} features."
        )
    weight = head.weight.detach().float()
    bias = head.bias.detach().float() if head.bias is not None else 0.0
    predicted = activations.float().mean(dim=(2, 3)) @ weight.T + bias
    tolerance = 1e-3 * float(logits.abs().max().clamp(min=1.0))
    if float((predicted - logits.float()).abs().max()) > tolerance:
        raise ExplainerError(
            "CAM needs global average pooling followed by one linear layer right after "
            "this layer; here something else sits between them (another layer, an "
            "activation or normalisation), so CAM does not apply. Use Grad-CAM, which "
            "equals CAM where CAM applies."
        )
    return weight


_layer_reasons: weakref.WeakKeyDictionary[nn.Module, dict] = weakref.WeakKeyDictionary()


def availability(model, layer: str | None = None, counterfactual: bool = False) -> dict[str, str | None]:
    """For every method: None when it can explain with this model and layer, else the reason why not.

    model: a models.Classifier or an nn.Module; layer: None means the model's default layer.
    """
    module = model if isinstance(model, nn.Module) else model.module
    if layer is None and not isinstance(model, nn.Module):
        layer = model.default_layer
    size = tuple(getattr(model, "input_size", (224, 224)))
    result = {}
    for name in METHODS:
        method = get_method(name)
        reason = method_problem(method, module, counterfactual)
        if reason is None and method.info.needs.layer:
            reason = _layer_reasons_of(module, layer, size).get(name)
        result[name] = reason
    return result


def _layer_reasons_of(module: nn.Module, layer: str | None, size: tuple[int, int]) -> dict[str, str | None]:
    """Why each registered layer method cannot use this layer, from one cached dry run."""
    if layer is None:
        return dict.fromkeys(METHODS, "This method reads a layer's activations: choose a layer.")
    cache = _layer_reasons.setdefault(module, {})
    reasons = cache.get((layer, size), {})
    if any(name not in reasons for name in METHODS):
        reasons = cache[(layer, size)] = _dry_run(module, layer, size)
    return reasons


def _dry_run(module: nn.Module, layer: str, size: tuple[int, int]) -> dict[str, str | None]:
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
        return dict.fromkeys(METHODS, str(error))
    checks = {name: get_method(name).check_layer for name in METHODS}
    return {name: check(module, activations, logits) if check else None for name, check in checks.items()}
