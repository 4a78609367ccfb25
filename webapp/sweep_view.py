"""The "Which layer?" view: the chosen gradient-family CAMs at several layers of the model in one
forward and one backward pass (explainers.sweep), one row per method and one column per layer, each
map with its faithfulness scores under it, the recommended layer marked and why, and the layers that
give the same map.

The sweep explains one target: the first class or class set ("all dogs (118 classes)", scored by
the sum of its classes' probabilities) picked in the inputs column, else the top class; with "Why
not?" ticked, the evidence against it (scored by the counterfactual check). Its time is
estimated before it runs (refused when over the server's limit) and checked while it runs; it takes
an engine slot (state.ENGINE_SLOTS) like an explanation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import gradio as gr

import explainers
import models
from explainers import sweep as layer_sweep

from . import budget, config, files, memory, state, sweep_table, values
from .errors import UserError, friendly_errors
from .inputs import Inputs

MAX_LAYERS = 8
STEP_CHOICES = (20, 10, 5)  # deletion / insertion steps: the most that keeps the run comfortable
COMFORTABLE_SECONDS = 30  # ... fewer steps when the scores would take longer than this
MAP_PASSES = 10  # the maps (one image's forward + backward with taps), in measured passes (about 4-6)
SCORE_PASS_COST = 1.5  # a perturbed image's pass, in measured passes (building the batches: about 1.4)
CHECK_PASSES = 5  # the counterfactual check: the image, without the region, without 3 shifted copies
INTRO = (
    "Which layer should a CAM read? **Sweep layers** explains the top class (or the first class or "
    "class set picked) with the ticked gradient-family CAMs at each layer: one row per method, one "
    "column per layer. Under each map: its deletion (**del**, lower is better) and insertion "
    "(**ins**, higher is better) areas and the score ins − del; ★ marks the layer with the best "
    "mean score. With “Why not?” ticked: the evidence against it, scored by the counterfactual check."
)


@dataclass
class SweepView:
    """The view's components."""

    layers: gr.Dropdown
    run: gr.Button
    estimate: gr.Markdown
    status: gr.Markdown
    maps: gr.HTML


def build(classifier: models.Classifier) -> SweepView:
    """The view's components (inside the current Blocks) for ``classifier`` loaded."""
    gr.Markdown(INTRO, elem_id="sweep-intro")
    layers = gr.Dropdown(**layer_picker(classifier))
    with gr.Row(equal_height=True):
        run = gr.Button("Sweep layers", variant="primary", elem_id="sweep-run", scale=1)
        estimate = gr.Markdown(elem_id="sweep-estimate")
    status = gr.Markdown(elem_id="sweep-status")
    maps = gr.HTML(sweep_table.PLACEHOLDER, elem_id="sweep-results", css_template=sweep_table.CSS, padding=False)
    return SweepView(layers, run, estimate, status, maps)


def wire(view: SweepView, ins: Inputs, web: Callable) -> None:
    """The view's events; its image, model and methods are the inputs column's."""
    view.run.click(
        web(sweep_layers),
        [ins.image, ins.model, ins.methods, ins.classes, ins.counterfactual, view.layers],
        [view.maps, view.status],
        api_name="sweep_layers",
        preprocess=False,
        concurrency_id="sweep",
        concurrency_limit=config.ENGINE_CONCURRENCY,
        show_progress_on=[view.status],
    )
    ins.loaded.change(
        lambda loaded: gr.Dropdown(**layer_picker(models.load(loaded))),
        [ins.loaded],
        [view.layers],
        api_visibility="private",
        concurrency_id="models",
        show_progress="hidden",
    )
    for control in (ins.image, ins.methods, ins.counterfactual, view.layers):
        control.change(
            sweep_estimate,
            [ins.model, ins.methods, view.layers, ins.counterfactual],
            [view.estimate],
            queue=False,
            api_visibility="private",
            show_progress="hidden",
        )


def layer_picker(classifier: models.Classifier) -> dict[str, Any]:
    """The layer multiselect's settings for ``classifier``: its spatial layers, the default sweep's."""
    choices = [(f"{i.name} — {'×'.join(map(str, i.shape))}", i.name) for i in classifier.layers if not i.pooled]
    return dict(
        choices=choices,
        value=layer_sweep.default_layers(classifier, MAX_LAYERS) if choices else [],
        multiselect=True,
        max_choices=MAX_LAYERS,
        filterable=True,
        label=f"Layers (up to {MAX_LAYERS}; by default spread evenly from input to output)",
        elem_id="sweep-layers",
    )


# ---------------------------------------------------------------------------- what runs


def skip_reason(method: str, counterfactual: bool) -> str | None:
    """Why ``method`` is left out of a sweep (None: it is swept): only the gradient-family CAMs,
    which read a layer and the class's gradient there, cost nothing more per extra layer."""
    info = explainers.method_info(method)
    if info.kind == "cam" and info.needs.layer_gradient:
        return "has no “why not” form" if counterfactual and not info.counterfactual else None
    if info.kind == "cam" and not info.counterfactual:  # class-agnostic: Eigen-CAM
        return "reads no gradient: the same map for every class"
    if info.kind == "cam":  # CAM: the classifier's weights of the pooled layer
        return "reads the classifier's weights, so it exists at the last layer only"
    if info.kind == "perturbation" and info.needs.layer:
        return "runs the network once per channel: too slow to repeat at every layer"
    if info.kind == "fusion":
        return "multiplies a CAM with pixel gradients: sweep its CAM instead"
    return "reads no layer"


class Plan(NamedTuple):
    """A checked sweep request: what runs, what was skipped, and its estimate."""

    classifier: models.Classifier
    methods: list[str]
    skipped: list[str]  # "Score-CAM (runs the network once per channel: …)"
    layers: list[str]  # in the model's order
    steps: int  # deletion / insertion steps (unused by a "why not" sweep)
    seconds: float


def checked_layers(classifier: models.Classifier, layers: Any) -> list[str]:
    """The chosen layers in the model's order (none chosen: the default sweep's); UserError for a
    layer the model does not have, a pooled one, or more than MAX_LAYERS."""
    names = [str(name) for name in ([layers] if isinstance(layers, str) else list(layers or []))]
    if not names:
        return layer_sweep.default_layers(classifier, MAX_LAYERS)
    order = {info.name: index for index, info in enumerate(classifier.layers) if not info.pooled}
    unknown = [name for name in names if name not in order]
    if unknown:
        raise UserError(
            f"{classifier.name} has no spatial layer {values.quoted(unknown[0])}. Pick layers from the list."
        )
    names = list(dict.fromkeys(names))
    if len(names) > MAX_LAYERS:
        raise UserError(f"That is {len(names)} layers; at most {MAX_LAYERS} per sweep.")
    return sorted(names, key=order.__getitem__)


def estimated_seconds(classifier: models.Classifier, n_maps: int, steps: int, counterfactual: bool) -> float:
    """The sweep's estimated seconds: its maps and scores in passes, times this model's measured pass."""
    per_map = CHECK_PASSES if counterfactual else 2 * (steps + 1)
    return (MAP_PASSES + SCORE_PASS_COST * n_maps * per_map) * state.PASS_TIMES.seconds(classifier)


def plan_sweep(model: Any, methods: Any, layers: Any, counterfactual: bool) -> Plan:
    """The checked request: the model, the methods swept (the others with the reason), the layers,
    the most deletion / insertion steps that keep it under COMFORTABLE_SECONDS (at least the
    fewest), and its estimate; UserError when nothing can be swept or it would take too long."""
    classifier = models.load(model or config.DEFAULT_MODEL)
    names = values.method_names(methods)
    unknown = [m for m in names if m not in explainers.METHODS]
    if unknown:
        raise UserError(f"Unknown method {values.quoted(unknown[0])}. Choose from: {', '.join(explainers.METHODS)}.")
    reasons = {m: skip_reason(m, counterfactual) for m in names}
    swept = [m for m in names if reasons[m] is None]
    skipped = [f"{explainers.METHODS[m].title} ({reasons[m]})" for m in names if reasons[m]]
    if not swept:
        gradient_family = ", ".join(info.title for m, info in explainers.METHODS.items() if not skip_reason(m, False))
        raise UserError(
            "None of the ticked methods can be swept over layers"
            + (f": {'; '.join(skipped)}" if skipped else "")
            + f". Tick one of {gradient_family}."
        )
    chosen = checked_layers(classifier, layers)
    n_maps = len(swept) * len(chosen)
    steps = next(
        (s for s in STEP_CHOICES if estimated_seconds(classifier, n_maps, s, counterfactual) <= COMFORTABLE_SECONDS),
        STEP_CHOICES[-1],
    )
    seconds = estimated_seconds(classifier, n_maps, steps, counterfactual)
    budget.check_estimate(
        seconds,
        config.MAX_REQUEST_SECONDS,
        f"Sweeping {len(swept)} method(s) over {len(chosen)} layers on {classifier.name}",
        "Pick fewer methods or layers, or a smaller model.",
    )
    return Plan(classifier, swept, skipped, chosen, steps, seconds)


def sweep_estimate(model: str, methods: list[str] | None, layers: list[str] | None, counterfactual: bool) -> str:
    """What the next sweep will do and cost, or why it will be refused."""
    try:
        plan = plan_sweep(model, methods, layers, values.as_bool(counterfactual, "“Why not?”"))
    except UserError as err:
        return f"⚠️ {err}"
    except Exception:  # noqa: BLE001 - no estimate for a request the run itself will report
        return ""
    scoring = "“why not” check" if counterfactual else f"scores with {plan.steps} steps"
    skipped = f" Skipped: {'; '.join(plan.skipped)}." if plan.skipped else ""
    return (
        f"⏱ About **{max(1, round(plan.seconds))} s**: {len(plan.methods)} method(s) × "
        f"{len(plan.layers)} layers, {scoring}.{skipped}"
    )


def run_sweep(
    plan: Plan,
    x: Any,
    target: int | explainers.ClassSet | None,
    counterfactual: bool,
    report: Callable[[float, str], None] | None = None,
) -> layer_sweep.Sweep:
    """The planned sweep of ``target`` (a class or class set; None: the top class) of the
    preprocessed image ``x``, in an engine slot, its time checked at each progress report
    (MAX_REQUEST_SECONDS; a visitor who has gone stops it)."""
    deadline = budget.Deadline(config.MAX_REQUEST_SECONDS)

    def checked(fraction: float, message: str) -> None:
        state.checkpoint(deadline)
        if report:
            report(fraction, message)

    with state.ENGINE_SLOTS:
        return layer_sweep.sweep(
            plan.classifier,
            x,
            plan.methods,
            plan.layers,
            target=target,
            steps=plan.steps,
            counterfactual=counterfactual,
            progress=checked,
        )


@friendly_errors("sweep the layers")
def sweep_layers(
    image: Any,
    model: str = config.DEFAULT_MODEL,
    methods: list[str] | None = None,
    classes: list[str] | str | None = None,
    counterfactual: bool = False,
    layers: list[str] | None = None,
    progress: gr.Progress = gr.Progress(),
) -> tuple[str, str]:
    """Explain one class or class set at several layers with the gradient-family CAMs among ``methods``.

    Args:
        image: the picture (an upload, a path or a Gradio payload).
        model: one of the app's models.
        methods: method names; those that cannot be swept are skipped (the maps' notes say why).
        classes: the first class ("281: tabby") or class set ("all dogs (118 classes)") is swept; none: the top class.
        counterfactual: the "why not" maps (evidence against it) instead.
        layers: up to MAX_LAYERS layer names; none: spread evenly over the model.

    Returns:
        (the maps as HTML: one row per method, one column per layer, scores under each map, the
        recommended layer marked; the status line).
    """
    img = values.load_image(image)
    counterfactual = values.as_bool(counterfactual, "“Why not?”")
    progress(0, desc="Checking the request…")
    plan = plan_sweep(model, methods, layers, counterfactual)
    chosen = values.parse_targets(plan.classifier, classes)  # classes and class sets
    crop = plan.classifier.crop(img)
    start = time.perf_counter()
    try:
        result = run_sweep(
            plan,
            plan.classifier.preprocessing.tensor(crop),
            chosen[0] if chosen else None,
            counterfactual,
            lambda fraction, message: progress(fraction, desc=message),
        )
        seconds = time.perf_counter() - start
        shapes = {info.name: info.shape for info in plan.classifier.layers}
        tiles = sweep_table.write_tiles(result, crop)
        page = sweep_table.sweep_html(result, tiles, shapes, plan.skipped)
    finally:
        memory.release_memory()
    files.tidy()
    return page, sweep_table.status_line(result, plan.classifier.name, plan.steps, seconds)
