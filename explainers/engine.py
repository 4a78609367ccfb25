"""The explanation engine: one shared forward pass, then every requested method and target.

The plan for a request:
1. one forward pass of the batch, with a tap on the layer (and guided gates on the ReLUs when a
   guided method is asked for); when no method needs input gradients, the graph starts at the layer;
2. one batched backward pass from all targets' scores to the layer (gradient-weighted CAMs);
3. one batched backward pass to the input with the guided gates on (guided backprop, fusions),
   and one without (plain gradient), each only when asked for;
4. the perturbation methods: Score-CAM's masked batches and Ablation-CAM's ablated batches, each
   serving all targets at once; SmoothGrad and Integrated Gradients batch their samples;
5. every map is upsampled to the input size and normalised to [0, 1]; the raw map is kept.
"""
from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import cam_formulas as formulas
from .errors import ExplainerError
from .gradients import batched_grad, target_directions
from .input_gradients import gradient_magnitude, integrated_gradients, smoothgrad
from .methods import MethodInfo, fused_cam, method_info, uses_guided_backprop
from .perturbation import ablation_scores, is_out_of_memory, score_cam_scores
from .taps import GuidedSwitch, eval_mode, guided_relus, layer_tap
from .validation import check_counterfactual, check_guided, linear_head_weights

ProgressCallback = Callable[[float, str], None]


@dataclass
class SaliencyMap:
    """One explanation: a method's map of one target class for one image."""

    image: int
    method: str
    target: int
    counterfactual: bool
    map: np.ndarray  # float32 [H, W] in [0, 1]
    raw: np.ndarray  # float32 [H, W], unnormalised
    probability: float
    seconds: float
    label: str | None = None


@dataclass
class Explanation:
    """All maps of one request, with the predictions of the shared forward pass."""

    maps: list[SaliencyMap]
    probabilities: np.ndarray  # [B, num_classes]
    layer: str | None
    device: str
    targets: list[list[int]] = field(default_factory=list)  # per image

    def get(self, method: str, target: int, image: int = 0) -> SaliencyMap:
        """The map of `method` for class `target` of image `image`."""
        for item in self.maps:
            if (item.method, item.target, item.image) == (method, target, image):
                return item
        raise KeyError(f"no map for method={method!r}, target={target}, image={image}")

    def top(self, k: int, image: int = 0) -> list[tuple[int, float]]:
        """The k most probable classes of `image` as (class index, probability)."""
        order = np.argsort(-self.probabilities[image])[:k]
        return [(int(c), float(self.probabilities[image, c])) for c in order]


@dataclass
class Options:
    """Tuning knobs with the papers' defaults."""

    eigen_component: int = 0
    batch_size: int | None = None  # perturbation batch; None: 64 on CUDA, 32 on the CPU
    smoothgrad_samples: int = 25
    smoothgrad_noise: float = 0.15
    ig_steps: int = 32
    seed: int = 0


def explain(model, x: torch.Tensor, methods: Sequence[str], targets: Sequence[int] | None = None,
            top_k: int | None = None, layer: str | None = None, counterfactual: bool = False,
            device: str | torch.device | None = None, progress: ProgressCallback | None = None,
            options: Options | None = None) -> Explanation:
    """Explains the classes of `x` with every method in `methods`, sharing all work between them.

    model: a models.Classifier, or a plain torch.nn.Module returning logits (then `layer` is
    required by the layer-based methods). x: [B, 3, H, W] (or [3, H, W]) preprocessed images.
    targets: class indices explained for every image; top_k: the k most probable classes of each
    image (top-1 when neither is given); with both, each image's top-k and then the given classes.
    counterfactual: explain the evidence against each class ("why not"). device: moves the model
    there first. progress(fraction, message): called as the work advances. Running out of memory
    makes the perturbation methods retry with smaller batches, and then an ExplainerError.
    """
    try:
        return _explain(model, x, methods, targets, top_k, layer, counterfactual, device, progress,
                        options or Options())
    except (torch.OutOfMemoryError, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise ExplainerError("Out of memory: choose fewer methods or classes, a smaller model or "
                             "image batch, or run on the CPU.") from error


def _explain(model, x: torch.Tensor, methods: Sequence[str], targets: Sequence[int] | None,
             top_k: int | None, layer: str | None, counterfactual: bool, device,
             progress: ProgressCallback | None, options: Options) -> Explanation:
    module, labels, layer = _resolve_model(model, layer, device)
    infos = _resolve_methods(methods, counterfactual, layer, module)
    dev = _module_device(module)
    x = _check_input(x).to(dev)
    report = _Progress(progress, infos)
    with eval_mode(module):
        shared = _SharedPass(module, x, layer, infos, counterfactual)
        target_index, target_lists = _resolve_targets(shared.probabilities, targets, top_k)
        shared.backward(target_index)
        report.done_shared()
        raw, seconds = {}, {}
        for info in infos:
            start = time.perf_counter()
            raw[info.name] = _method_maps(info, shared, target_index, options,
                                          report.for_method(info))
            seconds[info.name] = time.perf_counter() - start + shared.cost_of(info)
    report.finish()
    return _assemble(raw, seconds, shared, target_lists, labels, counterfactual, layer, dev)


def saliency(model, x: torch.Tensor, target: int, method: str = "gradcam", layer: str | None = None,
             counterfactual: bool = False) -> np.ndarray:
    """One normalised map: float32 [H, W] in [0, 1] for class `target` of the single image `x`."""
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


def _resolve_methods(methods: Sequence[str], counterfactual: bool, layer: str | None,
                     module: nn.Module) -> list[MethodInfo]:
    """The MethodInfo of each distinct requested method, after checking that it can run."""
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",")]
    names = list(dict.fromkeys(m for m in methods if m))
    if not names:
        raise ExplainerError("Choose at least one method.")
    infos = [method_info(n) for n in names]
    for info in infos:
        if counterfactual:
            check_counterfactual(info)
        if info.needs_layer and layer is None:
            raise ExplainerError(f"{info.title} reads a layer's activations: give layer=... "
                                 "(models.discover_layers lists the candidates).")
        if uses_guided_backprop(info):
            check_guided(module)
    return infos


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


def _resolve_targets(probabilities: torch.Tensor, targets: Sequence[int] | None,
                     top_k: int | None) -> tuple[torch.Tensor, list[list[int]]]:
    """Target classes per image: each image's top-k classes, then the explicit ones not among them.

    Returns ([B, T] padded by repeating an image's last target, the distinct targets per image).
    """
    batch, classes = probabilities.shape
    explicit = [] if targets is None else list(dict.fromkeys(int(t) for t in np.atleast_1d(targets)))
    bad = [t for t in explicit if not 0 <= t < classes]
    if bad or (targets is not None and not explicit):
        raise ExplainerError(f"Target classes must be between 0 and {classes - 1}; got {bad or 'none'}.")
    k = int(top_k) if top_k is not None else (0 if explicit else 1)
    if not 0 <= k <= classes or (k == 0 and not explicit):
        raise ExplainerError(f"top_k must be between 1 and {classes}.")
    top = probabilities.topk(k, dim=1).indices.tolist() if k else [[] for _ in range(batch)]
    per_image = [list(dict.fromkeys(top[b] + explicit)) for b in range(batch)]
    width = max(len(chosen) for chosen in per_image)
    padded = [chosen + chosen[-1:] * (width - len(chosen)) for chosen in per_image]
    return torch.tensor(padded, device=probabilities.device), per_image


# ----------------------------------------------------------------------------- the shared pass

class _SharedPass:
    """The forward pass and the backward passes that every method of a request shares."""

    def __init__(self, module: nn.Module, x: torch.Tensor, layer: str | None,
                 infos: list[MethodInfo], counterfactual: bool) -> None:
        self.module, self.x, self.layer = module, x, layer
        self.sign = -1.0 if counterfactual else 1.0
        self.infos = infos
        self.needs_layer_gradient = any(i.needs_layer_gradient for i in infos)
        self.needs_guided = any(uses_guided_backprop(i) for i in infos)
        self.needs_plain_gradient = any(i.name == "gradient" for i in infos)
        needs_input_graph = self.needs_guided or self.needs_plain_gradient
        needs_layer = any(i.needs_layer for i in infos)
        detach = self.needs_layer_gradient and not needs_input_graph
        self.tap = (layer_tap(module, layer, "detach" if detach else "keep")
                    if needs_layer else None)
        self.layer_maps: dict[str, torch.Tensor] = {}  # low-resolution CAMs, shared with fusions
        self.switch = GuidedSwitch()
        self.costs: dict[str, float] = {}
        start = time.perf_counter()
        with ExitStack() as stack:
            if self.tap:
                stack.enter_context(self.tap.attached())
            if self.needs_guided:
                stack.enter_context(guided_relus(module, self.switch))
            graph_x = x.clone().requires_grad_(True) if needs_input_graph else x
            with torch.set_grad_enabled(needs_input_graph):  # else the tap turns it on at the layer
                self.logits = module(graph_x)
        self.graph_x = graph_x
        if self.logits.dim() != 2:
            raise ExplainerError(f"The model must return logits [B, classes], not {list(self.logits.shape)}.")
        self.probabilities = F.softmax(self.logits.detach().float(), dim=1)
        self.activations = self.tap.activations().detach() if self.tap else None
        self.costs["forward"] = time.perf_counter() - start
        self.layer_grads = self.guided_grads = self.input_grads = None

    def backward(self, targets: torch.Tensor) -> None:
        """The backward passes the requested methods need, for every target at once."""
        directions = target_directions(self.logits.shape[1], targets, self.sign)
        start = time.perf_counter()
        if self.needs_layer_gradient:
            self.layer_grads = batched_grad(self.logits, self.tap.activations(), directions)
        self.costs["layer_gradient"] = time.perf_counter() - start
        start = time.perf_counter()
        if self.needs_guided:
            with self.switch.active():
                self.guided_grads = batched_grad(self.logits, self.graph_x, directions)
        self.costs["guided"] = time.perf_counter() - start
        if self.needs_plain_gradient:
            self.input_grads = batched_grad(self.logits, self.graph_x, directions)
        self.directions = directions

    def cost_of(self, info: MethodInfo) -> float:
        """This method's share of the shared passes' time."""
        share = self.costs["forward"] / len(self.infos)
        if info.needs_layer_gradient:
            share += self.costs["layer_gradient"] / sum(i.needs_layer_gradient for i in self.infos)
        if uses_guided_backprop(info):
            share += self.costs["guided"] / sum(uses_guided_backprop(i) for i in self.infos)
        return share


# ----------------------------------------------------------------------------- the methods

def _method_maps(info: MethodInfo, shared: _SharedPass, targets: torch.Tensor, options: Options,
                 progress: Callable[[float], None]) -> torch.Tensor:
    """Raw maps [T, B, H, W] (non-negative) of one method."""
    size = shared.x.shape[-2:]
    base = fused_cam(info.name)
    if base is not None:
        cam = _layer_maps(method_info(base), shared, targets, options, progress)
        return gradient_magnitude(shared.guided_grads) * _upsample(cam, size)
    if info.name == "guided_backprop":
        return gradient_magnitude(shared.guided_grads)
    if info.name == "gradient":
        return gradient_magnitude(shared.input_grads)
    if info.name == "smoothgrad":
        grads = smoothgrad(shared.module, shared.x, shared.directions, options.smoothgrad_samples,
                           options.smoothgrad_noise, seed=options.seed, progress=progress)
        return gradient_magnitude(grads)
    if info.name == "integrated_gradients":
        attributions = integrated_gradients(shared.module, shared.x, shared.directions,
                                            options.ig_steps, progress=progress)
        return attributions.sum(dim=-3).clamp(min=0)
    return _upsample(_layer_maps(info, shared, targets, options, progress), size)


def _layer_maps(info: MethodInfo, shared: _SharedPass, targets: torch.Tensor, options: Options,
                progress: Callable[[float], None]) -> torch.Tensor:
    """Low-resolution CAM-family maps [T, B, h, w] after the final ReLU, computed once a request."""
    if info.name not in shared.layer_maps:
        shared.layer_maps[info.name] = _compute_layer_maps(info, shared, targets, options, progress)
    return shared.layer_maps[info.name]


def _compute_layer_maps(info: MethodInfo, shared: _SharedPass, targets: torch.Tensor,
                        options: Options, progress: Callable[[float], None]) -> torch.Tensor:
    activations = shared.activations
    count = targets.shape[1]
    batch_size = options.batch_size or (64 if activations.is_cuda else 16)
    if info.name == "cam":
        weights = linear_head_weights(shared.module, activations, shared.logits.detach())
        maps = formulas.cam(activations, shared.sign * weights[targets].transpose(0, 1))
    elif info.name == "eigencam":
        maps = formulas.eigencam(activations, options.eigen_component).expand(count, -1, -1, -1)
    elif info.name == "eigengradcam":
        maps = formulas.eigengradcam(activations, shared.layer_grads, options.eigen_component)
    elif info.name in formulas.GRADIENT_CAMS:
        maps = formulas.GRADIENT_CAMS[info.name](activations, shared.layer_grads)
    elif info.name == "scorecam":
        scores = score_cam_scores(shared.module, shared.x, activations, targets, batch_size, progress)
        maps = formulas.score_weighted(activations, shared.sign * scores)
    elif info.name == "ablationcam":
        tap = layer_tap(shared.module, shared.layer, "keep")
        with tap.attached():
            scores = ablation_scores(shared.module, tap, shared.x, activations,
                                     shared.logits.detach(), targets, batch_size * 8, progress)
        maps = formulas.score_weighted(activations, shared.sign * scores)
    else:
        raise ExplainerError(f"{info.title} is not a layer method.")
    return maps.clamp(min=0)


def _upsample(maps: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """[T, B, h, w] -> [T, B, H, W] by bilinear interpolation (half-pixel centres)."""
    if maps.shape[-2:] == size:
        return maps
    count, batch = maps.shape[:2]
    flat = maps.reshape(count * batch, 1, *maps.shape[-2:]).float()
    return F.interpolate(flat, size=size, mode="bilinear", align_corners=False).reshape(
        count, batch, *size)


def normalise(raw: np.ndarray) -> np.ndarray:
    """Min-max normalisation to [0, 1]; a constant map becomes all zeros."""
    low, high = float(raw.min()), float(raw.max())
    if high - low <= 1e-12 * max(abs(high), 1.0):
        return np.zeros_like(raw, dtype=np.float32)
    return ((raw - low) / (high - low)).astype(np.float32)


def _assemble(raw: dict[str, torch.Tensor], seconds: dict[str, float], shared: _SharedPass,
              target_lists: list[list[int]], labels: list[str] | None, counterfactual: bool,
              layer: str | None, dev: torch.device) -> Explanation:
    """SaliencyMap objects in image, target, method order."""
    probabilities = shared.probabilities.cpu().numpy()
    arrays = {name: maps.detach().float().cpu().numpy() for name, maps in raw.items()}
    items = []
    for b, image_targets in enumerate(target_lists):
        for t, target in enumerate(image_targets):
            for name, maps in arrays.items():
                raw_map = np.ascontiguousarray(maps[t, b], dtype=np.float32)
                items.append(SaliencyMap(
                    image=b, method=name, target=target, counterfactual=counterfactual,
                    map=normalise(raw_map), raw=raw_map,
                    probability=float(probabilities[b, target]),
                    seconds=seconds[name] / len(image_targets),
                    label=labels[target] if labels and target < len(labels) else None))
    return Explanation(items, probabilities, layer if any(i.needs_layer for i in shared.infos) else None,
                       str(dev), target_lists)


class _Progress:
    """Splits [0, 1] between the shared passes and the methods, slow methods weighing more."""

    def __init__(self, callback: ProgressCallback | None, infos: list[MethodInfo]) -> None:
        self.callback = callback
        self.weights = {i.name: (10.0 if i.slow else 1.0) for i in infos}
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

    def for_method(self, info: MethodInfo) -> Callable[[float], None]:
        """A callback for one method's own progress in [0, 1]."""
        start, weight = self.done, self.weights[info.name]
        self.done += weight
        self._emit(start / self.total, info.title)
        return lambda f: self._emit((start + weight * f) / self.total, info.title)

    def finish(self) -> None:
        """Everything is computed."""
        self._emit(1.0, "Done")
