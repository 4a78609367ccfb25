"""The "How faithful is this?" panel: deletion / insertion curves, Average Drop and the sanity
check of the maps shown, measured on request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np
import torch

import explainers
import models
from explainers import metrics, metrics_sanity

from . import budget, choices, config, memory, state
from .errors import UserError, friendly_errors
from .state import Result

FAITHFULNESS_STEPS = 50
FAITHFULNESS_PASSES = 2 * (FAITHFULNESS_STEPS + 1) + 2  # per map: deletion, insertion, drop
SANITY_STAGES = 6
FAITHFULNESS_HEADERS = [
    "method",
    "class",
    "deletion AUC ↓",
    "insertion AUC ↑",
    "drop in confidence % ↓",
    "confidence increases",
]
EXPLANATION = (
    "**Deletion** removes the most salient pixels first (set to the zero baseline, the mean "
    "colour) and follows the class probability: a faithful map makes it fall fast (small area). "
    "**Insertion** puts them back into a blurred image: it should rise fast (large area). "
    "**Drop in confidence**: how much the probability falls when the image is multiplied by the "
    "map (Grad-CAM++ paper's Average Drop). The **sanity check** randomises the model's weights "
    "from the top layer down: the map should change, and stay no more like the trained map than "
    "controls that know nothing of the image (the other examples' maps, noise, a centred blob). "
    "For **why not** maps, the counterfactual check removes the map's region (its top 10 % pixels) "
    "and, apart, shifted copies of it of the same area: if the map is right, removing its region "
    "raises the class's probability more."
)
COUNTERFACTUAL_PASSES = 5  # per map: the image, without the region, without 3 shifted copies
COUNTERFACTUAL_HEADERS = [
    "method",
    "class",
    "log-prob. gain without the region",
    "… without shifted copies",
    "region matters more",
]


def _plots() -> Any:
    """explainers.plots, imported on the panel's first use (matplotlib's figures take a second
    to import: the page starts without them)."""
    from explainers import plots

    return plots


def _explained(result: Result | str | None) -> Result:
    result = state.stored(result)
    if result is None:
        raise UserError("Explain an image first: the metrics measure the maps shown.")
    return result


def measured_classes(result: Result) -> list[int]:
    """The result's class rows: the metrics measure evidence for a class, so contrast rows
    ("tabby rather than espresso") are left out."""
    return [t for t in result.targets if isinstance(t, int)]


@friendly_errors("measure faithfulness")
def measure_faithfulness(result: Result | str | None, progress: gr.Progress = gr.Progress()) -> tuple:
    """For every map of the current result: deletion and insertion curves (one plot per method
    family) and a table of the areas, Average Drop and Increase in Confidence of the class rows;
    the counterfactual check of the "why not" rows in a second table (hidden without them)."""
    result = _explained(result)
    classifier = models.load(result.model)
    keys = [(m, t) for t in measured_classes(result) for m in result.methods if (m, t, False) in result.tiles]
    why_not = [(m, t) for t in measured_classes(result) for m in result.methods if (m, t, True) in result.tiles]
    passes = len(keys) * FAITHFULNESS_PASSES + len(why_not) * COUNTERFACTUAL_PASSES
    budget.check_estimate(
        passes * state.PASS_TIMES.seconds(classifier),
        config.MAX_REQUEST_SECONDS,
        f"Measuring {len(keys) + len(why_not)} maps",
        "Explain fewer methods or classes first.",
    )
    deadline = budget.Deadline(config.MAX_REQUEST_SECONDS)
    try:
        with state.ENGINE_SLOTS:
            figure, table = _faithfulness(result, classifier, keys, deadline, progress) if keys else (None, None)
            checks = _counterfactual_check(result, classifier, why_not, deadline, progress) if why_not else None
    finally:
        memory.release_memory()
    return (
        figure,
        table if table is not None else gr.Dataframe(value=[], headers=FAITHFULNESS_HEADERS),
        checks if checks is not None else gr.Dataframe(value=[], headers=COUNTERFACTUAL_HEADERS, visible=False),
    )


def _faithfulness(
    result: Result,
    classifier: models.Classifier,
    keys: list[tuple[str, int]],
    deadline: budget.Deadline,
    progress: Callable[..., Any],
) -> tuple:
    rows: list[list] = []
    curves: dict[str, Any] = {}
    for done, (method, target) in enumerate(keys):
        state.checkpoint(deadline)
        title = explainers.METHODS[method].title
        progress(done / len(keys), desc=f"{title} · {result.labels[target]}")
        saliency = [result.tiles[(method, target, False)].map]
        paths = metrics.deletion_insertion(classifier, result.inputs, saliency, [target], steps=FAITHFULNESS_STEPS)
        change = metrics.confidence_change(classifier, result.inputs, saliency, [target])
        curves.setdefault(method, []).append((paths.deletion[0], paths.insertion[0]))
        rows.append(
            [
                title,
                result.labels[target],
                round(float(paths.deletion_auc[0]), 3),
                round(float(paths.insertion_auc[0]), 3),
                round(change.average_drop, 1),
                "yes" if change.increase_in_confidence > 0 else "no",
            ]
        )
    mean_curves = {m: tuple(np.mean(np.stack(parts), axis=0) for parts in zip(*pairs)) for m, pairs in curves.items()}
    figure = _plots().curves_figure(
        paths.fractions,
        mean_curves,
        {m: explainers.METHODS[m].kind for m in mean_curves},
        {m: explainers.METHODS[m].title for m in mean_curves},
        title=f"Mean of {len(measured_classes(result))} class(es) · "
        f"{FAITHFULNESS_STEPS} steps of {100 / FAITHFULNESS_STEPS:g} %",
    )
    return figure, gr.Dataframe(value=rows, headers=FAITHFULNESS_HEADERS)


def _counterfactual_check(
    result: Result,
    classifier: models.Classifier,
    keys: list[tuple[str, int]],
    deadline: budget.Deadline,
    progress: Callable[..., Any],
) -> gr.Dataframe:
    """The counterfactual check of every "why not" map: one table row per map."""
    rows: list[list] = []
    for done, (method, target) in enumerate(keys):
        state.checkpoint(deadline)
        title = explainers.METHODS[method].title
        progress(done / len(keys), desc=f"{title} · why not {result.labels[target]}")
        raw = result.tiles[(method, target, True)].raw
        check = metrics.counterfactual_check(classifier, result.inputs, [raw], [target])
        region, shifted = float(check.region_gain[0]), float(check.shifted_gain[0])
        if np.isnan(region):
            rows.append([title, result.labels[target], "–", "–", "no region: the map is empty"])
        else:
            rows.append(
                [title, result.labels[target], round(region, 3), round(shifted, 3), "yes" if region > shifted else "no"]
            )
    return gr.Dataframe(value=rows, headers=COUNTERFACTUAL_HEADERS, visible=True)


def reference_images(classifier: models.Classifier, inputs: torch.Tensor) -> torch.Tensor | None:
    """The bundled examples (assets/), preprocessed for ``classifier``, minus ``inputs`` itself
    (an example explained): the sanity check's "other images" [R, 3, H, W]; None without any."""
    pictures = [classifier.preprocess(models.open_image(path)) for path in choices.example_files()]
    others = [x for x in pictures if x.shape != inputs.shape or not torch.equal(x, inputs.cpu())]
    return torch.cat(others) if others else None


OUTCOMES = {
    "passes": "passes the sanity check",
    "fails": "fails the sanity check",
    "image-independent": "fails the sanity check (its map hardly depends on the image)",
}
CONTROL_ROWS = [
    ("other_images", "control: randomised map vs the trained maps of the other images"),
    ("noise", "control: trained map vs the randomised model's map of noise"),
    ("centre", "control: trained map vs a centred blob"),
    (
        "between_images",
        f"image dependence: trained maps of different images (flagged from {metrics_sanity.IMAGE_INDEPENDENT:g})",
    ),
]


def sanity_note(title: str, label: str, sanity: metrics_sanity.SanityResult, method: str, references: int) -> str:
    """The verdict (SanityResult.verdict) in words, then the figures behind it: the Spearman
    figure after full randomisation and each control's, as a Markdown table."""
    verdict = sanity.verdict(method)
    means = sanity.controls[method].means()
    rows = [
        f"| with all {sanity.randomised[-1]} parameter layers randomised: vs its own trained "
        f"map | {verdict.spearman:.2f} |"
    ]
    rows += [
        f"| {text} | {means[name]:.2f} |" if np.isfinite(means[name]) else f"| {text} | n/a |"
        for name, text in CONTROL_ROWS
    ]
    return (
        f"**{title} {OUTCOMES[verdict.outcome]}** for *{label}*: {verdict.explanation()}.\n\n"
        f"Spearman correlations ({references} example images as the other images; the map fails "
        f"when it beats the largest control by more than {metrics_sanity.SURVIVAL_MARGIN:g}):\n\n"
        "| compared | Spearman |\n|---|---|\n" + "\n".join(rows)
    )


@friendly_errors("run the sanity check")
def sanity_check(result: Result | str | None, method: str | None, progress: gr.Progress = gr.Progress()) -> tuple:
    """Adebayo et al.'s cascading randomisation for one method on the current image and class,
    judged against controls (the bundled examples as other images, noise, a centred blob): a map
    that survives randomisation better than maps knowing nothing of the image explains the image,
    not the model."""
    result = _explained(result)
    if method not in result.methods:
        raise UserError("Choose one of the methods of the current result.")
    classifier = models.load(result.model)
    target = measured_classes(result)[0]
    title = explainers.METHODS[method].title
    references = reference_images(classifier, result.inputs)
    count = 0 if references is None else len(references)
    passes = (SANITY_STAGES + 2 + count) * budget.layer_passes(classifier, result.layer, [method], 1)
    budget.check_estimate(
        passes * state.PASS_TIMES.seconds(classifier),
        config.MAX_REQUEST_SECONDS,
        f"The sanity check of {title}",
        "Choose a faster method.",
    )
    deadline = budget.Deadline(config.MAX_REQUEST_SECONDS)

    def report(fraction: float) -> None:
        state.checkpoint(deadline)
        progress(fraction, desc=f"{title}: randomised stage")

    progress(0, desc=f"Randomising {result.model} layer by layer")
    try:
        with state.ENGINE_SLOTS:
            sanity = metrics_sanity.cascading_randomisation(
                classifier,
                result.inputs,
                [method],
                [target],
                layer=result.layer,
                stages=SANITY_STAGES,
                progress=report,
                references=references,
            )
    finally:
        memory.release_memory()
    figure = _plots().sanity_figure(
        sanity.randomised,
        sanity.stages,
        {method: sanity.mean(method)},
        sanity.threshold,
        {method: title},
        title=f"{title} · {result.labels[target]}",
        controls={method: sanity.verdict(method).control},
    )
    return figure, sanity_note(title, result.labels[target], sanity, method, count)


def sanity_methods(result: Result | str | None) -> Any:
    """The sanity check's method choices: the methods of the current result."""
    result = state.stored(result, missing_ok=True)
    methods = result.methods if result else []
    return gr.Dropdown(
        choices=[(explainers.METHODS[m].title, m) for m in methods], value=methods[0] if methods else None
    )


@dataclass
class Panel:
    """The panel's components."""

    measure: gr.Button
    curves: gr.Plot
    table: gr.Dataframe
    why_not_table: gr.Dataframe
    sanity_method: gr.Dropdown
    sanity: gr.Button
    sanity_note: gr.Markdown
    sanity_plot: gr.Plot


def build() -> Panel:
    """The collapsed panel (inside the current Blocks)."""
    with gr.Accordion("How faithful is this?", open=False, elem_id="faithfulness"):
        gr.Markdown(EXPLANATION)
        measure = gr.Button("Measure faithfulness", elem_id="measure")
        curves = gr.Plot(label="Deletion and insertion", elem_id="curves", show_label=False)
        table = gr.Dataframe(
            headers=FAITHFULNESS_HEADERS, interactive=False, wrap=True, max_height=420, elem_id="faithfulness-table"
        )
        why_not_table = gr.Dataframe(
            headers=COUNTERFACTUAL_HEADERS,
            label="“Why not” maps: the counterfactual check",
            interactive=False,
            wrap=True,
            max_height=420,
            visible=False,
            elem_id="why-not-table",
        )
        with gr.Row(equal_height=True):
            sanity_method = gr.Dropdown(choices=[], label="Method to sanity-check", elem_id="sanity-method", scale=3)
            sanity = gr.Button("Sanity check", elem_id="sanity", scale=1)
        sanity_note = gr.Markdown(elem_id="sanity-note")
        sanity_plot = gr.Plot(label="Cascading randomisation", elem_id="sanity-plot", show_label=False)
    return Panel(measure, curves, table, why_not_table, sanity_method, sanity, sanity_note, sanity_plot)


def wire(panel: Panel, result_state: gr.State) -> None:
    """Connect the panel's buttons to the current result."""
    result_state.change(sanity_methods, [result_state], [panel.sanity_method], queue=False, api_visibility="private")
    panel.measure.click(
        measure_faithfulness,
        [result_state],
        [panel.curves, panel.table, panel.why_not_table],
        concurrency_id="engine",
        api_visibility="private",
        show_progress_on=[panel.curves],
    )  # one progress bar, not one per output
    panel.sanity.click(
        sanity_check,
        [result_state, panel.sanity_method],
        [panel.sanity_plot, panel.sanity_note],
        concurrency_id="engine",
        api_visibility="private",
        show_progress_on=[panel.sanity_plot],
    )
