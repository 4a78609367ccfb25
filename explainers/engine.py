"""The explanation engine: one shared recording, then every requested method and target.

The plan for a request, built from what the requested methods need (`explainers.registry.Needs`);
no method is known here by name:
1. one forward pass of the batch, with a tap on the layer, the guided gates on the ReLUs and the
   attention recorded, each only when a method needs it; when no method needs gradients from
   before the layer, the graph starts at the layer;
2. one batched backward pass from all targets' scores to each needed place: the layer, the input
   with the guided gates on, the input without, the attention maps;
3. each method's own computation from that recording (perturbation methods run their own batched
   passes, each serving all targets at once);
4. every map is upsampled to the input size and normalised to [0, 1]; the raw map is kept.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import reduce

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import methods as _builtin_methods  # noqa: F401  (registers the built-in methods)
from .attention import recording_attention
from .cam_formulas import upsample
from .errors import ExplainerError
from .gradients import batched_grad, batched_grads, target_directions
from .options import Options
from .perturbation import is_out_of_memory
from .registry import DEFAULT_METHOD, Context, Method, Needs, Recording, get_method, recorded
from .taps import GuidedSwitch, eval_mode, guided_relus, layer_tap
from .targets import Target, TargetSet, check_targets
from .validation import method_problem

ProgressCallback = Callable[[float, str], None]

__all__ = ["Explanation", "Options", "SaliencyMap", "explain", "normalise", "saliency"]


@dataclass
class SaliencyMap:
    """One explanation: a method's map of one target for one image.

    target: the class index, or the Contrast / ClassSet object; label: its name for a person
    ("tabby", "tabby rather than espresso", "dog"); settings: how the map was made where a tile
    may show it (RISE: {"masks": 1000}).
    """

    image: int
    method: str
    target: Target
    counterfactual: bool
    map: np.ndarray  # float32 [H, W] in [0, 1]
    raw: np.ndarray  # float32 [H, W], unnormalised
    probability: float
    seconds: float
    label: str | None = None
    settings: dict = field(default_factory=dict)


@dataclass
class Explanation:
    """All maps of one request, with the predictions of the shared forward pass."""

    maps: list[SaliencyMap]
    probabilities: np.ndarray  # [B, num_classes]
    layer: str | None
    device: str
    targets: list[list[Target]] = field(default_factory=list)  # per image

    def get(self, method: str, target: Target, image: int = 0) -> SaliencyMap:
        """The map of `method` for `target` of image `image`."""
        for item in self.maps:
            if (item.method, item.image) == (method, image) and item.target == target:
                return item
        raise KeyError(f"no map for method={method!r}, target={target}, image={image}")

    def top(self, k: int, image: int = 0) -> list[tuple[int, float]]:
        """The k most probable classes of `image` as (class index, probability)."""
        order = np.argsort(-self.probabilities[image])[:k]
        return [(int(c), float(self.probabilities[image, c])) for c in order]


def explain(
    model,
    x: torch.Tensor,
    methods: Sequence[str],
    targets: Sequence[Target] | Target | None = None,
    top_k: int | None = None,
    layer: str | None = None,
    counterfactual: bool = False,
    device: str | torch.device | None = None,
    progress: ProgressCallback | None = None,
    options: Options | None = None,
) -> Explanation:
    """Explains the classes of `x` with every method in `methods`, sharing all work between them.

    model: a models.Classifier, or a plain torch.nn.Module returning logits (then `layer` is
    required by the layer-based methods). x: [B, 3, H, W] (or [3, H, W]) preprocessed images.
    targets: what is explained for every image: class indices, `Contrast(a, b)` ("a rather than
    b") or `ClassSet(classes, name)` objects; top_k: the k most probable classes of each image
    (top-1 when neither is given); with both, each image's top-k and then the given targets.
    counterfactual: explain the evidence against each target ("why not"). device: moves the model
    there first. progress(fraction, message): called as the work advances. Running out of memory
    makes the perturbation methods retry with smaller batches, and then an ExplainerError.
    """
    try:
        return _explain(
            model, x, methods, targets, top_k, layer, counterfactual, device, progress, options or Options()
        )
    except (torch.OutOfMemoryError, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise ExplainerError(
            "Out of memory: choose fewer methods or classes, a smaller model or image batch, or run on the CPU."
        ) from error


def _explain(
    model,
    x: torch.Tensor,
    methods: Sequence[str],
    targets,
    top_k: int | None,
    layer: str | None,
    counterfactual: bool,
    device,
    progress: ProgressCallback | None,
    options: Options,
) -> Explanation:
    module, labels, layer = _resolve_model(model, layer, device)
    units = _resolve_methods(methods, counterfactual, layer, module)
    dev = _module_device(module)
    x = _check_input(x).to(dev)
    report = _Progress(progress, units)
    with eval_mode(module):
        shared = _SharedPass(module, x, layer, units, counterfactual)
        target_set = _resolve_targets(shared.probabilities, targets, top_k)
        shared.backward(target_set)
        report.done_shared()
        context = Context(module, x, layer, target_set, shared.sign, options, shared.recording)
        raw, seconds = {}, {}
        for unit in units:
            start = time.perf_counter()
            maps = context.maps_of(unit.info.name, report.for_method(unit))
            raw[unit.info.name] = upsample(maps, x.shape[-2:]).expand(target_set.count, -1, -1, -1)
            seconds[unit.info.name] = time.perf_counter() - start + shared.cost_of(unit)
    report.finish()
    settings = {u.info.name: u.settings(options, dev) if u.settings else {} for u in units}
    return _assemble(raw, seconds, settings, shared, target_set, labels, counterfactual, layer, dev)


def saliency(
    model,
    x: torch.Tensor,
    target: Target,
    method: str = DEFAULT_METHOD,
    layer: str | None = None,
    counterfactual: bool = False,
) -> np.ndarray:
    """One normalised map: float32 [H, W] in [0, 1] for `target` (a class index, Contrast or
    ClassSet) of the single image `x`."""
    result = explain(model, x, [method], targets=[target], layer=layer, counterfactual=counterfactual)
    return result.maps[0].map


# ----------------------------------------------------------------------------- request checking


def _resolve_model(model, layer: str | None, device) -> tuple[nn.Module, list[str] | None, str | None]:
    """(the nn.Module, the class labels if known, the layer name to use)."""
    if device is not None:
        model = model.to(device)
    if isinstance(model, nn.Module):
        return model, None, layer
    module = getattr(model, "module", None)
    if not isinstance(module, nn.Module):
        raise ExplainerError("model must be a models.Classifier or a torch.nn.Module")
    return module, list(model.labels), layer or model.default_layer


def _resolve_methods(
    methods: Sequence[str], counterfactual: bool, layer: str | None, module: nn.Module
) -> list[Method]:
    """The registered unit of each distinct requested method, after checking that it can run."""
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",")]
    names = list(dict.fromkeys(m for m in methods if m))
    if not names:
        raise ExplainerError("Choose at least one method.")
    units = [get_method(n) for n in names]
    for unit in units:
        reason = method_problem(unit, module, counterfactual)
        if reason:
            raise ExplainerError(reason)
        if unit.info.needs.layer and layer is None:
            raise ExplainerError(
                f"{unit.info.title} reads a layer's activations: give layer=... "
                "(models.discover_layers lists the candidates)."
            )
    return units


def _check_input(x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ExplainerError("x must be a tensor [B, 3, H, W] (use model.preprocess(image)).")
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[0] == 0:
        raise ExplainerError(f"x must have shape [B, 3, H, W], not {list(x.shape)}.")
    return x.detach().float()


def _module_device(module: nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _resolve_targets(probabilities: torch.Tensor, targets, top_k: int | None) -> TargetSet:
    """Targets per image: each image's top-k classes, then the explicit targets not among them."""
    batch, classes = probabilities.shape
    explicit = check_targets(targets, classes)
    k = int(top_k) if top_k is not None else (0 if explicit else 1)
    if not 0 <= k <= classes or (k == 0 and not explicit):
        raise ExplainerError(f"top_k must be between 1 and {classes}.")
    top = probabilities.topk(k, dim=1).indices.tolist() if k else [[] for _ in range(batch)]
    return TargetSet([list(dict.fromkeys(top[b] + explicit)) for b in range(batch)])


# ----------------------------------------------------------------------------- the shared pass

_GRADIENT_NEEDS = ("layer_gradient", "guided_gradient", "input_gradient", "attention_gradient")


class _SharedPass:
    """The forward pass and the backward passes that every method of a request shares."""

    def __init__(
        self, module: nn.Module, x: torch.Tensor, layer: str | None, units: list[Method], counterfactual: bool
    ) -> None:
        self.module, self.x = module, x
        self.sign = -1.0 if counterfactual else 1.0
        self.units = units
        needs = self.needs = _union(u.info.needs for u in units)
        detach = needs.layer_gradient and not needs.input_graph
        tap = layer_tap(module, layer, "detach" if detach else "keep") if needs.layer and layer is not None else None
        self.switch = GuidedSwitch()
        self.costs: dict[str, float] = {}
        start = time.perf_counter()
        with ExitStack() as stack:
            if tap:
                stack.enter_context(tap.attached())
            if needs.guided_gradient:
                stack.enter_context(guided_relus(module, self.switch))
            attentions = stack.enter_context(recording_attention(module)) if needs.attention else None
            graph_x = x.clone().requires_grad_(True) if needs.input_graph else x
            with torch.set_grad_enabled(needs.input_graph):  # else the tap turns it on at the layer
                logits = module(graph_x)
        self.graph_x, self.tap = graph_x, tap
        if logits.dim() != 2:
            raise ExplainerError(f"The model must return logits [B, classes], not {list(logits.shape)}.")
        self.probabilities = F.softmax(logits.detach().float(), dim=1)
        self.recording = Recording(
            logits,
            activations=tap.activations().detach() if tap else None,
            attentions=[a.detach() for a in attentions] if attentions is not None else None,
        )
        self._attention_graph = attentions
        self.costs["forward"] = time.perf_counter() - start

    def backward(self, targets: TargetSet) -> None:
        """The backward passes the requested methods need, for every target at once."""
        logits, record, needs = self.recording.logits, self.recording, self.needs
        if not any(getattr(needs, n) for n in _GRADIENT_NEEDS):
            return
        directions = (
            target_directions(logits.shape[1], targets.indices(logits.device), self.sign)
            if targets.plain
            else targets.directions(logits.detach(), self.sign)
        )
        if needs.layer_gradient:
            record.layer_grads = self._timed(
                "layer_gradient", batched_grad, logits, recorded(self.tap, "layer").activations(), directions
            )
        if needs.guided_gradient:
            with self.switch.active():
                record.guided_grads = self._timed("guided_gradient", batched_grad, logits, self.graph_x, directions)
        if needs.input_gradient:
            record.input_grads = self._timed("input_gradient", batched_grad, logits, self.graph_x, directions)
        if needs.attention_gradient:
            record.attention_grads = self._timed(
                "attention_gradient", batched_grads, logits, self._attention_graph, directions
            )

    def _timed(self, need: str, function: Callable, *args):
        start = time.perf_counter()
        result = function(*args)
        self.costs[need] = time.perf_counter() - start
        return result

    def cost_of(self, unit: Method) -> float:
        """This method's share of the shared passes' time."""
        share = self.costs["forward"] / len(self.units)
        for need, seconds in self.costs.items():
            if need != "forward" and getattr(unit.info.needs, need):
                share += seconds / sum(getattr(u.info.needs, need) for u in self.units)
        return share


def _union(needs: Iterable[Needs]) -> Needs:
    return reduce(operator.or_, needs, Needs())


def normalise(raw: np.ndarray) -> np.ndarray:
    """Min-max normalisation to [0, 1]; a constant map becomes all zeros."""
    low, high = float(raw.min()), float(raw.max())
    if high - low <= 1e-12 * max(abs(high), 1.0):
        return np.zeros_like(raw, dtype=np.float32)
    return ((raw - low) / (high - low)).astype(np.float32)


def _assemble(
    raw: dict[str, torch.Tensor],
    seconds: dict[str, float],
    settings: dict[str, dict],
    shared: _SharedPass,
    targets: TargetSet,
    labels: list[str] | None,
    counterfactual: bool,
    layer: str | None,
    dev: torch.device,
) -> Explanation:
    """SaliencyMap objects in image, target, method order."""
    logits = shared.recording.logits.detach().float()
    arrays = {name: maps.detach().float().cpu().numpy() for name, maps in raw.items()}
    items = []
    for b, image_targets in enumerate(targets.per_image):
        for t, target in enumerate(image_targets):
            probability, label = targets.probability(b, t, logits), targets.label(b, t, labels)
            for name, maps in arrays.items():
                raw_map = np.ascontiguousarray(maps[t, b], dtype=np.float32)
                items.append(
                    SaliencyMap(
                        image=b,
                        method=name,
                        target=target,
                        counterfactual=counterfactual,
                        map=normalise(raw_map),
                        raw=raw_map,
                        probability=probability,
                        seconds=seconds[name] / len(image_targets),
                        label=label,
                        settings=dict(settings[name]),
                    )
                )
    uses_layer = any(u.info.needs.layer for u in shared.units)
    return Explanation(
        items, shared.probabilities.cpu().numpy(), layer if uses_layer else None, str(dev), targets.per_image
    )


class _Progress:
    """Splits [0, 1] between the shared passes and the methods, slow methods weighing more."""

    def __init__(self, callback: ProgressCallback | None, units: list[Method]) -> None:
        self.callback = callback
        self.weights = {u.info.name: (10.0 if u.info.slow else 1.0) for u in units}
        self.total = 1.0 + sum(self.weights.values())
        self.done = 0.0
        self._emit(0.0, "Running the model")

    def _emit(self, fraction: float, message: str) -> None:
        if self.callback:
            self.callback(min(1.0, fraction), message)

    def done_shared(self) -> None:
        """The forward and backward passes are done."""
        self.done = 1.0
        self._emit(self.done / self.total, "Computing the maps")

    def for_method(self, unit: Method) -> Callable[[float], None]:
        """A callback for one method's own progress in [0, 1]."""
        info = unit.info
        start, weight = self.done, self.weights[info.name]
        self.done += weight
        self._emit(start / self.total, info.title)
        return lambda f: self._emit((start + weight * f) / self.total, info.title)

    def finish(self) -> None:
        """Everything is computed."""
        self._emit(1.0, "Done")
