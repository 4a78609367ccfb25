"""The registry of explanation methods: each method is one unit that declares what it needs from
the shared passes (`Needs`) and computes raw maps from them (`Method.compute`).

The engine reads only this interface: it records the union of the requested methods' needs in one
forward pass (and one backward pass per kind of gradient), then calls each unit. A new method is a
`Method` passed to `register` (see the README's "Extending"); `unregister` removes it again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import TypeVar

import torch
from torch import nn

from .cam_formulas import upsample
from .errors import ExplainerError
from .input_gradients import gradient_magnitude
from .options import Options
from .targets import TargetSet


@dataclass(frozen=True)
class Needs:
    """What a method reads from the shared passes of a request."""

    layer: bool = False  # the layer's activations A [B, C, h, w]
    layer_gradient: bool = False  # d(target score)/dA for every target [T, B, C, h, w]
    input_gradient: bool = False  # d(target score)/dx [T, B, 3, H, W]
    guided_gradient: bool = False  # the same with guided backpropagation's ReLU gates
    attention: bool = False  # the attention probabilities of every transformer block
    attention_gradient: bool = False  # d(target score)/d(attention) of every block

    def __or__(self, other: Needs) -> Needs:
        return Needs(**{f.name: getattr(self, f.name) or getattr(other, f.name) for f in fields(self)})

    @property
    def input_graph(self) -> bool:
        """Whether the forward pass must record the graph from the input (not only from the layer)."""
        return self.input_gradient or self.guided_gradient or self.attention_gradient


@dataclass(frozen=True)
class MethodInfo:
    """What a person (and the engine) needs to know about one method."""

    name: str
    title: str
    kind: str  # "cam" | "perturbation" | "input-gradient" | "fusion" | "attention"
    paper: str
    summary: str
    counterfactual: bool  # has a "why not this class" form
    slow: bool = False  # worth a progress bar
    needs: Needs = Needs(layer=True)

    @property
    def needs_layer(self) -> bool:
        """Reads a layer's activations."""
        return self.needs.layer

    @property
    def needs_layer_gradient(self) -> bool:
        """Needs d(score)/d(layer)."""
        return self.needs.layer_gradient

    @property
    def needs_input_gradient(self) -> bool:
        """Needs d(score)/d(input) from the shared forward pass (plain or guided)."""
        return self.needs.input_gradient or self.needs.guided_gradient


@dataclass
class Recording:
    """What the shared passes of a request recorded (None where no requested method needs it)."""

    logits: torch.Tensor  # [B, K]
    activations: torch.Tensor | None = None
    layer_grads: torch.Tensor | None = None
    input_grads: torch.Tensor | None = None
    guided_grads: torch.Tensor | None = None
    attentions: list[torch.Tensor] | None = None  # per block [B, heads, N, N]
    attention_grads: list[torch.Tensor] | None = None  # per block [T, B, heads, N, N]


T = TypeVar("T")


def recorded(value: T | None, need: str) -> T:
    """`value`, something the shared passes record when a method's Needs ask for it (the Needs
    flag `need`); an error naming that flag when they did not record it."""
    if value is None:
        raise RuntimeError(
            f"The shared passes did not record what this method reads: its Needs must ask for it (Needs({need}=True))."
        )
    return value


Progress = Callable[[float], None]
BACKWARD = 2.0  # a backward pass costs about two forward passes (the cost estimate's unit)


@dataclass
class Context:
    """One request as a method sees it: the model, the images, the targets, the options and the
    shared recording. `sign` is -1 for counterfactual maps (the gradients are already negated)."""

    module: nn.Module
    x: torch.Tensor
    layer: str | None
    targets: TargetSet
    sign: float
    options: Options
    recording: Recording
    _maps: dict[str, torch.Tensor] = field(default_factory=dict)

    def maps_of(self, name: str, progress: Progress) -> torch.Tensor:
        """The raw maps [T or 1, B, h, w] of method `name` for this request, computed once (a
        guided fusion reuses its CAM's low-resolution maps this way)."""
        if name not in self._maps:
            self._maps[name] = get_method(name).compute(self, progress)
        return self._maps[name]


@dataclass(frozen=True)
class PassQuery:
    """What the cost estimate knows about a request, for a method's own forward passes."""

    targets: int
    channels: int
    options: Options
    after_layer: float
    device: torch.device


@dataclass(frozen=True)
class Method:
    """One explanation method.

    compute(context, progress) -> raw maps [T, B, h, w] (or [1, B, h, w] when class-agnostic) at any
    resolution (the engine upsamples them to the input), already through the method's final ReLU.
    check(module): why it cannot explain this model, or None; check_layer(module, activations,
    logits): the same from a dry run's layer output. passes(query): forward-pass equivalents of its
    own work for one image (the cost estimate). settings(options, device): what a tile may show
    about how the map was made (e.g. RISE's mask count). no_counterfactual: why it has no "why
    not" form (when info.counterfactual is False).
    """

    info: MethodInfo
    compute: Callable[[Context, Progress], torch.Tensor]
    check: Callable[[nn.Module], str | None] | None = None
    check_layer: Callable[[nn.Module, torch.Tensor, torch.Tensor], str | None] | None = None
    passes: Callable[[PassQuery], float] | None = None
    settings: Callable[[Options, torch.device], dict] | None = None
    no_counterfactual: str = ""

    @property
    def fusable(self) -> bool:
        """Whether `guided_<name>` exists: a CAM-family map at the layer's resolution."""
        return self.info.needs.layer and self.info.kind in ("cam", "perturbation")


METHODS: dict[str, MethodInfo] = {}
_UNITS: dict[str, Method] = {}
FUSION_PREFIX = "guided_"
DEFAULT_METHOD = "gradcam"  # what explainers.saliency uses when no method is named


def register(method: Method) -> Method:
    """Adds a method to the registry (METHODS, the app, the CLI and the engine see it)."""
    name = method.info.name
    if name in _UNITS:
        raise ExplainerError(f"A method named {name!r} is registered already.")
    _UNITS[name] = method
    METHODS[name] = method.info
    return method


def unregister(name: str) -> None:
    """Removes a registered method."""
    _UNITS.pop(name, None)
    METHODS.pop(name, None)


def get_method(name: str) -> Method:
    """The registered unit for `name`, also for guided fusions such as "guided_scorecam"."""
    if name in _UNITS:
        return _UNITS[name]
    base = _UNITS.get(name[len(FUSION_PREFIX) :]) if name.startswith(FUSION_PREFIX) else None
    if base is not None and base.fusable:
        return guided_fusion(base, name)
    known = ", ".join(METHODS)
    raise ExplainerError(
        f"Unknown method {name!r}. Known methods: {known} (and guided_<cam method> fusions such as guided_scorecam)."
    )


def method_info(name: str) -> MethodInfo:
    """The MethodInfo for `name`, also for guided fusions such as "guided_scorecam"."""
    return get_method(name).info


def fused_cam(name: str) -> str | None:
    """The CAM a fusion method multiplies with guided backprop, or None for other methods."""
    return name[len(FUSION_PREFIX) :] if get_method(name).info.kind == "fusion" else None


def guided_fusion(
    base: Method,
    name: str | None = None,
    title: str | None = None,
    paper: str | None = None,
    summary: str | None = None,
) -> Method:
    """Guided Backprop x the upsampled low-resolution map of `base` (Selvaraju et al.'s fusion)."""
    cam = base.info
    info = MethodInfo(
        name or FUSION_PREFIX + cam.name,
        title or f"Guided {cam.title}",
        "fusion",
        paper or f"{cam.paper} + Springenberg et al.",
        summary or f"Guided Backprop x upsampled {cam.title}.",
        counterfactual=cam.counterfactual,
        slow=cam.slow,
        needs=cam.needs | Needs(guided_gradient=True),
    )

    def compute(context: Context, progress: Progress) -> torch.Tensor:
        maps = context.maps_of(cam.name, progress)
        guided = gradient_magnitude(recorded(context.recording.guided_grads, "guided_gradient"))
        return guided * upsample(maps, context.x.shape[-2:])

    return replace(base, info=info, compute=compute)
