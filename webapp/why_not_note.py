"""Empty "why not" maps, explained: why a counterfactual map can come out (near) empty, and the
earlier layer where a quick "why not" sweep finds the evidence against the class.

At the last layer of a network that average-pools it and applies one linear layer, the gradient
of a class's score is that class's weights at every location, so its counterfactual Grad-CAM is
minus the class's CAM: for a class the model favours, that is below zero almost everywhere and the
final ReLU leaves nothing (EfficientNet-Lite0 at `bn2`: the top class's map was empty on 13 of 20
ImageNet images, and on none at `blocks.5` or `blocks.4`).
"""

from __future__ import annotations

import html

import numpy as np

import explainers
import models
from explainers import evidence
from explainers import sweep as layer_sweep
from explainers.targets import ClassSet, Contrast

from . import sweep_view
from .errors import UserError
from .state import Result

PROXY_METHOD = "gradcam"  # sweeps the "why not" layers when no empty map's method can be swept
POOLED_HEAD = (
    "That layer is average-pooled straight into the classifier's linear layer, so there the gradient "
    "of a class is its weights at every location: the “why not” map is minus the class's CAM, which "
    "for a class the model favours is below zero almost everywhere and cut to zero."
)
LITTLE_AGAINST = "The image holds little evidence against the class at that layer."
OPEN_SWEEP = "Open “Which layer?” with “Why not?” ticked to see the evidence against it at other layers."


def empty_why_not_maps(result: Result) -> list[tuple[str, int | ClassSet]]:
    """(method, class or class set) of each "why not" map of ``result`` that is empty or near-empty
    (explainers.evidence, its peak against the normal map's of the same class and method)."""
    empty = []
    for (method, target, counterfactual), tile in result.tiles.items():
        if not counterfactual:
            continue
        normal = result.tiles.get((method, target, False))
        reference = float(np.max(normal.raw)) if normal is not None and normal.raw.size else None
        if not isinstance(target, Contrast) and evidence.assess_evidence(tile.raw, reference).near_empty:
            empty.append((method, target))
    return empty


def pooled_into_linear(classifier: models.Classifier, layer: str | None) -> bool:
    """True when ``layer`` feeds the classifier through global average pooling and one linear
    layer (where CAM applies: explainers.availability)."""
    return explainers.availability(classifier, layer).get("cam") is None


def best_earlier_layer(
    classifier: models.Classifier, result: Result, methods: list[str], target: int | ClassSet
) -> tuple[str, float, list[str], int] | None:
    """(layer, its mean "why not" score, the methods swept, the layers swept) from a quick "why
    not" sweep (no deletion / insertion: the counterfactual check) of ``target`` over the default
    sweep's layers before ``result.layer``; None when there is no earlier layer or no map there has
    evidence. Swept: the sweepable ones of ``methods``, else Grad-CAM."""
    names = [info.name for info in classifier.layers]
    if result.layer not in names or result.inputs is None:
        return None
    position = names.index(result.layer)
    spread = layer_sweep.default_layers(classifier, sweep_view.MAX_LAYERS)
    layers = [name for name in spread if names.index(name) < position]
    if not layers:
        return None
    swept = [m for m in methods if sweep_view.skip_reason(m, True) is None] or [PROXY_METHOD]
    plan = sweep_view.Plan(classifier, swept, [], layers, sweep_view.STEP_CHOICES[-1], 0.0)
    found = sweep_view.run_sweep(plan, result.inputs, target, counterfactual=True)
    best = found.recommended()
    if best is None:
        return None
    return best, float(np.mean([found.scores[m][best].score for m in swept])), swept, len(layers)


def empty_why_not_note(result: Result | None) -> str | None:
    """A note (Markdown) for a result whose "why not" maps are (near) empty: which ones, why
    (explained for the last layer of a pooled + linear network), and the earlier layer where a quick
    "why not" sweep finds the evidence against the class, or to open "Which layer?". None when every
    "why not" map shows evidence (or there are none).

    The quick sweep takes an engine slot (state.ENGINE_SLOTS): call this after the explanation's
    run has released its own, not inside it."""
    if result is None or not result.counterfactual:
        return None
    empty = empty_why_not_maps(result)
    if not empty:
        return None
    classifier = models.load(result.model)
    target = empty[0][1]  # the first class with an empty map (the rows' order: the top class first)
    methods = [method for method, of in empty if of == target]
    label = html.escape(result.labels[target])
    titles = ", ".join(explainers.method_info(m).title for m in methods)
    layer = f"`{result.layer}`" if result.layer else "this layer"
    reason = POOLED_HEAD if pooled_into_linear(classifier, result.layer) else LITTLE_AGAINST
    maps_are = "map of {} is" if len(methods) == 1 else "maps of {} are"
    opening = f"ℹ️ The “why not” {maps_are.format(titles)} (almost) empty at {layer} for **{label}**. {reason}"
    try:
        found = best_earlier_layer(classifier, result, methods, target)
    except (UserError, explainers.ExplainerError):  # out of time, or the sweep cannot run here
        found = None
    if found is None:
        return f"{opening} {OPEN_SWEEP}"
    best, score, swept, count = found
    swept_titles = ", ".join(explainers.method_info(m).title for m in swept)
    return (
        f"{opening} A quick “why not” sweep of {swept_titles} over {count} earlier layers finds the "
        f"evidence against {label} best at **`{best}`** (score {score:+.2f}: how much more removing "
        f"its region raises the log-probability of {label} than removing shifted copies of it): pick "
        f"that layer, or open “Which layer?” to compare them."
    )
