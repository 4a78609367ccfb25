"""Which layer? One image explained by CAM-family methods at several layers, with one forward pass
(a tap on every layer) and one backward pass to all of them, then a faithfulness score per layer.

- The target is a class or a class set (`explainers.ClassSet`: its score is log sum_S exp(y_c),
  its probability sum_S p_c, as in `explainers.explain`); a contrast is not swept.
- The taps run in "keep" mode with the graph recorded from the input: the gradient of the target's
  score with respect to each layer is then its exact total derivative whatever the architecture
  (a "detach" tap at the earliest layer would also be exact on a chain, but cuts the gradient of a
  parallel branch computed from tensors before it).
- The maps are the registry's own units (`explainers.registry.get_method(...).compute`) read from
  a per-layer `Recording`, so each equals `explainers.explain` at that layer alone.
- Score of a layer: insertion AUC - deletion AUC (`explainers.metrics.deletion_insertion`, each
  method's maps at all layers in one batched run, `steps` steps); the recommended layer has the
  best score. A class set is scored by its probability sum_S p_c (its log for the counterfactual
  check): the metrics read the model with the set's classes merged into one class.
- "Why not" sweeps (`counterfactual=True`: the evidence against the target, the negated score's
  gradient, as `explain(..., counterfactual=True)`) are scored by the counterfactual check
  (`explainers.metrics.counterfactual_check`): the target's log-probability gain when the map's
  region is removed minus the gain when shifted copies of it are; an empty map has no score and is
  never recommended.
- Layers whose maps correlate at Pearson r >= SAME_MAP_R are noted as giving the same map.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from .cam_formulas import upsample
from .engine import normalise
from .errors import ExplainerError
from .export import target_key
from .gradients import batched_grads
from .metrics import counterfactual_check, deletion_insertion, module_of
from .options import Options
from .registry import Context, Method, Recording, get_method
from .taps import eval_mode, layer_tap
from .targets import ClassSet, Contrast, TargetSet, check_targets
from .validation import method_problem

DEFAULT_LAYER_COUNT = 8
DEFAULT_STEPS = 20
SAME_MAP_R = 0.99
SCORE_MEANING = {
    False: "insertion AUC - deletion AUC (higher is better)",
    True: "log-probability gain when the map's region is removed - the gain for shifted copies (higher is better)",
}
Progress = Callable[[float, str], None]  # (fraction done, what is running); raising stops the sweep


@dataclass(frozen=True)
class LayerScore:
    """Deletion and insertion AUC of one map (lower deletion, higher insertion is better)."""

    deletion: float
    insertion: float

    @property
    def score(self) -> float:
        """insertion - deletion: the sweep's faithfulness score (higher is better)."""
        return self.insertion - self.deletion


@dataclass(frozen=True)
class WhyNotScore:
    """The counterfactual check of one "why not" map: the target's log-probability gains when its
    region, or shifted copies of it, are removed (NaN for an empty map: nothing to remove)."""

    region_gain: float
    shifted_gain: float

    @property
    def score(self) -> float:
        """region gain - shifted gain: the "why not" sweep's score (higher is better; NaN when empty)."""
        return self.region_gain - self.shifted_gain


@dataclass(frozen=True)
class SameMap:
    """Two layers whose maps of one method correlate at Pearson r >= SAME_MAP_R."""

    method: str
    layers: tuple[str, str]
    r: float


@dataclass
class Sweep:
    """Maps of one image's target per method and layer, with their scores and a recommendation.

    target: the class index or the ClassSet; probability: the target's (a set's: the sum of its
    classes'); label: its name ("tabby", a set's name), None for a class without labels."""

    target: int | ClassSet
    probability: float
    label: str | None
    methods: list[str]
    layers: list[str]
    maps: dict[str, dict[str, np.ndarray]]  # method -> layer -> float32 [H, W] in [0, 1]
    raw: dict[str, dict[str, np.ndarray]]  # method -> layer -> float32 [H, W], unnormalised
    scores: dict[str, dict[str, LayerScore | WhyNotScore]] = field(default_factory=dict)  # empty: not scored
    same_maps: list[SameMap] = field(default_factory=list)
    counterfactual: bool = False  # "why not" maps (WhyNotScore), else LayerScore

    def recommended(self, method: str | None = None) -> str | None:
        """The layer with the best score for `method` (all methods: the best mean score; a "why
        not" layer whose map is empty for one of them does not count); None when the sweep was not
        scored or no layer has a score."""
        if not self.scores:
            return None
        names = [method] if method else self.methods
        mean = {layer: float(np.mean([self.scores[m][layer].score for m in names])) for layer in self.layers}
        scored = [layer for layer in self.layers if not math.isnan(mean[layer])]
        return max(scored, key=lambda layer: mean[layer]) if scored else None

    def to_json(self) -> dict:
        """The scores, the recommendation and the same-map notes as plain JSON values."""
        target = self.target
        return {
            "target": target_key(target) if isinstance(target, ClassSet) else target,
            "label": self.label,
            **({"kind": "class set", "classes": list(target.classes)} if isinstance(target, ClassSet) else {}),
            "probability": self.probability,
            "methods": self.methods,
            "layers": self.layers,
            "counterfactual": self.counterfactual,
            "score": SCORE_MEANING[self.counterfactual],
            "scores": {
                m: {layer: {**asdict(s), "score": s.score} for layer, s in per_layer.items()}
                for m, per_layer in self.scores.items()
            },
            "recommended": self.recommended(),
            "recommended_per_method": {m: self.recommended(m) for m in self.methods} if self.scores else {},
            "same_maps": [{"method": s.method, "layers": list(s.layers), "r": s.r} for s in self.same_maps],
        }


def default_layers(classifier, count: int = DEFAULT_LAYER_COUNT) -> list[str]:
    """`count` layers spread evenly over the classifier's non-pooled layers (first and last included)."""
    names = [info.name for info in classifier.layers if not info.pooled]
    if not names:
        raise ExplainerError(f"{getattr(classifier, 'name', 'The model')} has no spatial layer to sweep.")
    picks = np.linspace(0, len(names) - 1, min(count, len(names))).round().astype(int)
    return [names[i] for i in dict.fromkeys(picks.tolist())]


def sweep(
    model,
    x: torch.Tensor,
    methods: Sequence[str] = ("gradcam",),
    layers: Sequence[str] | None = None,
    target: int | ClassSet | None = None,
    steps: int = DEFAULT_STEPS,
    score: bool = True,
    options: Options | None = None,
    batch_size: int = 64,
    counterfactual: bool = False,
    progress: Progress | None = None,
) -> Sweep:
    """Explains `target` (a class index or a ClassSet; default: the top class) of the single image
    `x` with every method at every layer: one forward pass, one backward pass to all layers, then
    (with `score`) deletion and insertion with `steps` steps for each method's maps in one batched run.

    model: a models.Classifier (layers default to `default_layers`) or a torch.nn.Module (layers
    required). methods: CAM-family methods reading only a layer and its gradient (gradcam,
    gradcam++, xgradcam, hirescam, layercam, eigengradcam, eigencam, cam). counterfactual: the
    "why not" maps instead, scored by the counterfactual check. progress(fraction, message) is
    called after the maps and after each method's scores; an exception it raises stops the sweep.
    """
    module = module_of(model)
    units = _check_methods(methods, module, counterfactual)
    names = _check_layers(model, layers)
    x = _single_image(x, module)
    taps = [layer_tap(module, name, "keep") for name in names]
    with eval_mode(module), ExitStack() as stack:
        for tap in taps:
            stack.enter_context(tap.attached())
        with torch.enable_grad():
            logits = module(x)
        activations = [tap.activations() for tap in taps]
    if logits.dim() != 2:
        raise ExplainerError(f"The model must return logits [B, classes], not {list(logits.shape)}.")
    chosen = _check_target(target, logits.detach())
    targets = TargetSet([[chosen]])
    sign = -1.0 if counterfactual else 1.0
    grads = batched_grads(logits, activations, targets.directions(logits.detach(), sign))
    per_layer = []  # [methods, H, W] per layer, on the model's device
    for name, activation, grad in zip(names, activations, grads):
        recording = Recording(logits.detach(), activations=activation.detach(), layer_grads=grad)
        context = Context(module, x, name, targets, sign, options or Options(), recording)
        low = torch.cat([context.maps_of(unit.info.name, lambda fraction: None)[:1, :1].float() for unit in units])
        per_layer.append(upsample(low, x.shape[-2:])[:, 0])
    every = torch.stack(per_layer).detach().cpu().numpy()  # [layers, methods, H, W]: one copy to the host
    raw = {unit.info.name: {name: every[i, j] for i, name in enumerate(names)} for j, unit in enumerate(units)}
    result = Sweep(
        target=chosen,
        probability=targets.probability(0, 0, logits.detach()),
        label=targets.label(0, 0, getattr(model, "labels", None)),
        methods=list(raw),
        layers=names,
        maps={m: {layer: normalise(r) for layer, r in per_layer.items()} for m, per_layer in raw.items()},
        raw=raw,
        same_maps=same_maps(raw),
        counterfactual=counterfactual,
    )
    if progress:
        progress(0.0 if score else 1.0, "Maps done; scoring them…" if score else "Maps done")
    if score:
        with eval_mode(module):  # the scoring model of a class set wraps the module: one mode for both
            result.scores = _scores(model, x, result, steps, batch_size, progress)
    return result


def same_maps(raw: dict[str, dict[str, np.ndarray]], threshold: float = SAME_MAP_R) -> list[SameMap]:
    """Every pair of layers whose maps of one method correlate at Pearson r >= threshold (two
    constant maps count as the same, r = 1)."""
    found = []
    for method, per_layer in raw.items():
        layers = list(per_layer)
        r = pearson_matrix(np.stack([per_layer[layer].ravel() for layer in layers]))
        for i, j in zip(*np.triu_indices(len(layers), k=1)):
            if r[i, j] >= threshold:
                found.append(SameMap(method, (layers[i], layers[j]), float(r[i, j])))
    return found


def pearson_matrix(rows: np.ndarray) -> np.ndarray:
    """Pearson r between every two rows of [N, P] (one product of centred unit rows); a constant
    row has r = 1 with another constant row and 0 with the rest."""
    centred = rows.astype(np.float64) - rows.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1)
    constant = norms == 0
    unit = centred / np.where(constant, 1.0, norms)[:, None]
    r = unit @ unit.T
    return np.where(constant[:, None] & constant[None, :], 1.0, r)


def _scores(
    model, x: torch.Tensor, result: Sweep, steps: int, batch_size: int, progress: Progress | None
) -> dict[str, dict[str, LayerScore | WhyNotScore]]:
    """Each method's maps at every layer scored in one batched run (deletion and insertion, or the
    counterfactual check of "why not" maps), reporting progress after each method."""
    scores: dict[str, dict[str, LayerScore | WhyNotScore]] = {}
    scored, index = _as_one_class(model, result.target)
    targets = [index] * len(result.layers)
    for done, method in enumerate(result.methods, start=1):
        if result.counterfactual:
            maps = np.stack([result.raw[method][layer] for layer in result.layers])
            check = counterfactual_check(scored, x, maps, targets, batch_size=batch_size)
            pairs = zip(check.region_gain, check.shifted_gain)
            scores[method] = {layer: WhyNotScore(float(a), float(b)) for layer, (a, b) in zip(result.layers, pairs)}
        else:
            maps = np.stack([result.maps[method][layer] for layer in result.layers])
            curves = deletion_insertion(scored, x, maps, targets, steps=steps, batch_size=batch_size)
            pairs = zip(curves.deletion_auc, curves.insertion_auc)
            scores[method] = {layer: LayerScore(float(d), float(i)) for layer, (d, i) in zip(result.layers, pairs)}
        if progress:
            progress(done / len(result.methods), f"Scored {done} of {len(result.methods)} methods")
    return scores


class MergedClassSet(nn.Module):
    """A model with a class set's classes merged into one class, index 0 (logit: the set's,
    log sum_S exp(y_c); then the other classes' logits): its softmax gives the set the sum of its
    classes' probabilities and every other class its own, so a metric that reads one class's
    probability scores the set."""

    def __init__(self, module: nn.Module, class_set: ClassSet) -> None:
        super().__init__()
        self.module, self.class_set = module, class_set

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The merged logits [N, K - |S| + 1]."""
        logits = self.module(x)
        others = torch.ones(logits.shape[1], dtype=torch.bool, device=logits.device)
        others[list(self.class_set.classes)] = False
        return torch.cat([self.class_set.logit(logits)[:, None], logits[:, others].float()], dim=1)


def _as_one_class(model, target: int | ClassSet) -> tuple[nn.Module, int]:
    """(the model the metrics score, the target's class there): a class set merged into class 0."""
    if isinstance(target, ClassSet):
        return MergedClassSet(module_of(model), target), 0
    return module_of(model), target


def _check_target(target: int | ClassSet | None, logits: torch.Tensor) -> int | ClassSet:
    """The target to sweep: the top class for None, else the class or class set, checked."""
    if target is None:
        return int(logits[0].argmax())
    if isinstance(target, Contrast):
        raise ExplainerError("The sweep explains a class or a class set, not a contrast (“a rather than b”).")
    check_targets(target, logits.shape[1])  # every class in range
    return target if isinstance(target, ClassSet) else int(target)


def _check_methods(methods: Sequence[str], module, counterfactual: bool = False) -> list[Method]:
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",")]
    units = [get_method(name) for name in dict.fromkeys(m for m in methods if m)]
    if not units:
        raise ExplainerError("Choose at least one method.")
    for unit in units:
        needs = unit.info.needs
        if unit.info.kind != "cam" or needs.input_graph or needs.attention or needs.input_gradient:
            raise ExplainerError(
                f"{unit.info.title} cannot be swept over layers: the sweep takes the CAM family "
                "(methods that read only a layer and its gradient)."
            )
        reason = method_problem(unit, module, counterfactual)
        if reason:
            raise ExplainerError(reason)
    return units


def _check_layers(model, layers: Sequence[str] | None) -> list[str]:
    if layers is None:
        if not hasattr(model, "layers"):
            raise ExplainerError("Give layers=[...] for a plain torch module.")
        return default_layers(model)
    if isinstance(layers, str):
        layers = [name.strip() for name in layers.split(",")]
    names = list(dict.fromkeys(name for name in layers if name))
    if not names:
        raise ExplainerError("Choose at least one layer.")
    return names


def _single_image(x: torch.Tensor, module) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ExplainerError("x must be a tensor [1, 3, H, W] (use model.preprocess(image)).")
    x = x[None] if x.dim() == 3 else x
    if x.dim() != 4 or x.shape[0] != 1:
        raise ExplainerError(f"The sweep explains one image [1, 3, H, W], not {list(x.shape)}.")
    parameter = next(module.parameters(), None)
    return x.detach().float().to(parameter.device if parameter is not None else "cpu")
