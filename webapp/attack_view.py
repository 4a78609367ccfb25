"""The "Does noise fool it?" view: an adversarial copy of the image (PGD, explainers.attack), how
little it differs, its predictions, and the maps of the clean and the adversarial image side by side
for the clean top class, the new top class and the target (the Grad-CAM paper, section 6.2)."""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

import explainers
import models
from explainers import attack, export, rendering

from . import budget, choices, config, files, handlers, memory, state, tiles, values
from .errors import UserError, friendly_errors
from .inputs import Inputs

ANY_CLASS = "any other class"
DEFAULT_EPSILON, MAX_EPSILON = 2, 16  # 0-255 levels per pixel
DEFAULT_STEPS, MAX_STEPS = 10, 50
ATTACK_PASSES_PER_STEP = 3  # a forward and a backward pass of the model
TILE_PX = 192
PLACEHOLDER = (
    "<div class='attack-empty'>Pick an image and press <b>Attack this image</b>: a copy changed by at "
    "most ε levels per pixel that the model classifies differently, and the maps of both.</div>"
)
CSS = f"""
.attack-empty {{padding: 1.5rem 1rem; color: var(--body-text-color-subdued);}}
.attack-scroll {{overflow-x: auto; max-width: 100%; padding-bottom: 4px;}}
.attack-figures {{display: flex; gap: 10px; flex-wrap: nowrap; width: max-content;}}
.attack-figures figure {{margin: 0; width: {TILE_PX}px;}}
.attack-figures figcaption, .attack-table .time {{font-size: 0.78rem; line-height: 1.25;
    color: var(--body-text-color-subdued); margin-top: 3px;}}
.attack-figures figcaption b {{color: var(--body-text-color);}}
img.attack-tile {{width: {TILE_PX}px; height: {TILE_PX}px; max-width: none; display: block;
    border-radius: 4px; object-fit: contain;}}
.attack-table a, .attack-figures a {{display: block; line-height: 0;}}
.attack-predictions {{border-collapse: collapse; margin: 0.6rem 0; font-size: 0.85rem; width: auto;}}
.attack-predictions th, .attack-predictions td {{padding: 2px 14px 2px 0; border: none; text-align: left;
    background: none;}}
.attack-table {{border-collapse: separate; border-spacing: 6px 4px; table-layout: fixed;
    width: max-content; border: none; margin: 0.4rem 0 0 0;}}
.attack-table th {{font-weight: 600; font-size: 0.85rem; padding: 0 2px; border: none; background: none;
    vertical-align: bottom;}}
.attack-table th.method {{width: {TILE_PX}px; text-align: center;}}
.attack-table th.row {{width: 8rem; text-align: left; vertical-align: middle;}}
.attack-table td {{padding: 0; border: none; background: none; vertical-align: top;}}
.attack-table .class-name {{display: block; font-size: 0.95rem;}}
.attack-table .which, .attack-table .chance {{display: block; font-weight: 400; font-size: 0.78rem;
    color: var(--body-text-color-subdued);}}
.attack-table tr.adversarial .which {{color: var(--color-red-500, #c00); font-weight: 600;}}
.attack-table tr.first-of-class th, .attack-table tr.first-of-class td {{padding-top: 8px;}}
.attack-notes {{margin: 0 0 0.5rem 0; font-size: 0.85rem;}}
@media (max-width: 640px) {{
  .attack-table th.row {{width: 5.5rem;}}
}}
"""


@dataclass
class AttackView:
    """The view's components."""

    target: gr.Dropdown
    epsilon: gr.Slider
    steps: gr.Slider
    run: gr.Button
    status: gr.Markdown
    results: gr.HTML
    download: gr.File


def build(classifier: models.Classifier) -> AttackView:
    """The view's components (inside the current Blocks) for ``classifier`` loaded."""
    gr.Markdown(
        "Change every pixel of the image by at most **ε** levels (of 0-255): invisible, yet the model "
        "may now see another class. Do the maps still find the original object? The Grad-CAM paper "
        "found that they do. Uses the image, model, layer and methods on the left.",
        elem_id="attack-intro",
    )
    with gr.Row(equal_height=True):
        target = gr.Dropdown(
            choices=target_choices_of(classifier),
            value=ANY_CLASS,
            filterable=True,
            label="Make the model see",
            info="a class, or any other class than its top one",
            elem_id="attack-target",
            scale=3,
            min_width=200,
        )
        epsilon = gr.Slider(
            1,
            MAX_EPSILON,
            value=DEFAULT_EPSILON,
            step=1,
            label="Budget ε (levels of 0-255 per pixel)",
            elem_id="attack-epsilon",
            scale=2,
            min_width=160,
        )
        steps = gr.Slider(
            1, MAX_STEPS, value=DEFAULT_STEPS, step=1, label="Steps", elem_id="attack-steps", scale=2, min_width=140
        )
    run = gr.Button("Attack this image", variant="primary", elem_id="attack-run")
    status = gr.Markdown(elem_id="attack-status")
    results = gr.HTML(PLACEHOLDER, css_template=CSS, elem_id="attack-results", padding=False)
    download = gr.File(label="The adversarial image (PNG)", interactive=False, elem_id="attack-download")
    return AttackView(target, epsilon, steps, run, status, results, download)


def wire(view: AttackView, ins: Inputs, web: Callable) -> None:
    """The view's events; its image, model, layer and methods are the inputs column's."""
    view.run.click(
        web(attack_image),
        [ins.image, ins.model, ins.layer, ins.methods, view.target, view.epsilon, view.steps],
        [view.results, view.status, view.download],
        api_visibility="private",  # the page's; Python callers have explainers.attack
        preprocess=False,
        concurrency_id="attack",
        concurrency_limit=config.ENGINE_CONCURRENCY,
        show_progress_on=[view.status],
    )
    ins.loaded.change(
        web(target_choices),
        [ins.loaded, view.target],
        [view.target],
        api_visibility="private",
        concurrency_id="models",
        show_progress="hidden",
    )


def target_choices_of(classifier: models.Classifier) -> list[str]:
    """The target picker's entries: "any other class", then every class ("967: espresso")."""
    return [ANY_CLASS, *choices.single_class_choices(classifier)]


def target_choices(loaded: str, target: str | None) -> Any:
    """The target picker for the model just loaded: the chosen class kept when it has it too."""
    classifier = models.load(loaded)
    kept = handlers.kept_classes(classifier, [target] if target and target != ANY_CLASS else [])
    return gr.Dropdown(choices=target_choices_of(classifier), value=kept[0] if kept else ANY_CLASS)


def parse_target(classifier: models.Classifier, target: Any) -> int | None:
    """The class aimed at (None: any other class) from the picker ("967: espresso"), an index or
    a name; UserError for anything else."""
    if target is None or (isinstance(target, str) and target.strip().lower() in ("", ANY_CLASS, "any")):
        return None
    if not isinstance(target, (str, int)) or isinstance(target, bool):
        raise UserError(f"The target must be one class or “{ANY_CLASS}”, not {values.quoted(target)}.")
    chosen = values.parse_classes(classifier, str(target))
    if len(chosen) != 1:
        raise UserError(f"Pick one class to aim at, or “{ANY_CLASS}”.")
    return chosen[0]


def attack_seconds(classifier: models.Classifier, layer: str | None, methods: list[str], steps: int) -> float:
    """The estimated seconds of an attack of ``steps`` steps and the maps of up to three classes on
    two images (the clean and the adversarial one)."""
    maps = 2 * handlers.estimated_seconds(classifier, layer, methods, 3)
    return steps * ATTACK_PASSES_PER_STEP * state.PASS_TIMES.seconds(classifier) + maps


@friendly_errors("attack the image")
def attack_image(
    image: Any,
    model: str = config.DEFAULT_MODEL,
    layer: str | None = None,
    methods: list[str] | None = None,
    target: str | None = ANY_CLASS,
    epsilon: float = DEFAULT_EPSILON,
    steps: float = DEFAULT_STEPS,
    progress: gr.Progress = gr.Progress(track_tqdm=True),
) -> tuple[str, str, str]:
    """Make an adversarial copy of the image and explain both (the view's button).

    Args:
        image: the picture (a file path through the API).
        model, layer, methods: as for /explain (the layer of the CAM methods; empty for the default).
        target: the class the model should see ("967: espresso", "967" or "espresso"), or
            "any other class" than its top one.
        epsilon: the budget: the largest change of a pixel, in whole levels of 0-255 (1 to 16).
        steps: projected-gradient steps (1 to 50).

    Returns:
        (the images, predictions and maps as HTML; the status line; the adversarial image's PNG).
    """
    img = values.load_image(image)
    epsilon = values.whole_number(epsilon, "The budget ε", 1, MAX_EPSILON)
    steps = values.whole_number(steps, "Steps", 1, MAX_STEPS)
    progress(0, desc=f"Loading {model}…")
    checked = handlers.checked_request(model, layer, methods, 1, None, False)
    classifier, layer, usable = checked.classifier, checked.layer, checked.usable
    aim = parse_target(classifier, target)
    if 2 * 3 * len(usable) > config.MAX_MAPS:
        raise UserError(f"That could be {6 * len(usable)} maps; at most {config.MAX_MAPS} per run. Pick fewer methods.")
    budget.check_estimate(
        attack_seconds(classifier, layer, usable, steps),
        config.MAX_REQUEST_SECONDS,
        f"{steps} attack steps and the maps of both images on {classifier.name}",
        "Pick fewer steps or slow methods, or a smaller model.",
    )
    deadline = budget.Deadline(config.MAX_REQUEST_SECONDS)

    def report(fraction: float, message: str = "") -> None:
        state.checkpoint(deadline)
        progress(max(0.0, min(1.0, float(fraction))), desc=message or "Explaining both images…")

    start = time.perf_counter()
    try:
        with state.ENGINE_SLOTS:
            run = attack.explain_attack(classifier, img, usable, aim, epsilon, steps, layer=layer, progress=report)
        seconds = time.perf_counter() - start
        notes = [f"Skipped: {note}." for note in checked.skipped] + [n for n in [values.tiny_image_note(img)] if n]
        page, png = present(run, classifier.labels, values.image_name(image), notes)
    finally:
        memory.release_memory()
    return page, status_line(run, classifier.labels, steps, seconds, classifier.name), png


def _tile(path: Path, caption: str) -> str:
    """A picture linking to itself at full size (``caption`` escaped already)."""
    return tiles.linked_picture(path, caption, "attack-tile", TILE_PX)


def _probability(explanation: explainers.Explanation, c: int) -> float:
    return float(explanation.probabilities[0, c])


def role_of(run: attack.ExplainedAttack, c: int) -> str:
    """ "top class before", "top class after", "the target" (joined when a class is several)."""
    roles = [
        name
        for name, is_it in (
            ("top class before", c == run.original),
            ("top class after", c == run.predicted),
            ("the target", c == run.attack.target[0]),
        )
        if is_it
    ]
    return ", ".join(roles)


def present(run: attack.ExplainedAttack, labels: list[str], name: str, notes: list[str]) -> tuple[str, str]:
    """(the view's HTML, the adversarial PNG's path): the pictures written into a fresh folder."""
    folder, stem = files.new_folder(), export.stem_of(name)
    clean_crop, adversarial = run.attack.clean_image(), run.attack.image()
    written = {
        "clean": folder / f"{stem}_input.png",
        "adversarial": folder / f"{stem}_adversarial.png",
        "difference": folder / f"{stem}_difference.png",
    }
    export.save_picture(clean_crop, written["clean"])
    export.save_picture(adversarial, written["adversarial"])
    export.save_picture(run.attack.difference_image(), written["difference"])
    tiles = {}
    for which, crop, explanation, prefix in (
        ("clean", clean_crop, run.clean, stem),
        ("adversarial", adversarial, run.adversarial, f"{stem}_adversarial"),
    ):
        for m in explanation.maps:
            path = folder / export.overlay_name(prefix, m, labels)
            export.save_picture(rendering.overlay(crop, m.map, config.DEFAULT_COLORMAP, config.DEFAULT_OPACITY), path)
            tiles[(which, m.method, int(m.target))] = (path, m)  # type: ignore[arg-type]  # attacks aim at classes
    files.tidy()
    page = (
        notes_html(notes)
        + figures_html(run, labels, written)
        + predictions_html(run, labels)
        + maps_html(run, labels, written, tiles)
    )
    return page, str(written["adversarial"])


def notes_html(notes: list[str]) -> str:
    """The notes (skipped methods) as a list, or nothing."""
    items = "".join(f"<li>{html.escape(note)}</li>" for note in notes)
    return f"<ul class='attack-notes'>{items}</ul>" if items else ""


def figures_html(run: attack.ExplainedAttack, labels: list[str], written: dict[str, Path]) -> str:
    """The clean crop, the adversarial crop and the difference, each with its caption."""
    result = run.attack
    before, after = run.original, run.predicted
    captions = {  # title, then what it shows
        "clean": ("Clean", f"{labels[before]} {_probability(run.clean, before):.1%}"),
        "adversarial": (
            f"Adversarial (≤ {result.epsilon:g} levels)",
            f"{labels[after]} {_probability(run.adversarial, after):.1%}",
        ),
        "difference": (
            f"Difference × {result.difference_gain():.0f}",
            f"grey: no change; largest change {result.linf_levels[0]:g} levels",
        ),
    }
    figures = "".join(
        f"<figure id='attack-{key}'>{_tile(written[key], html.escape(f'{title} · {text}', quote=True))}"
        f"<figcaption><b>{html.escape(title)}</b> · {html.escape(text)}</figcaption></figure>"
        for key, (title, text) in captions.items()
    )
    return f"<div class='attack-scroll'><div class='attack-figures'>{figures}</div></div>"


def predictions_html(run: attack.ExplainedAttack, labels: list[str]) -> str:
    """The top-3 predictions of the clean and the adversarial image, side by side."""
    before, after = run.clean.top(3), run.adversarial.top(3)
    rows = "".join(
        f"<tr><td>{html.escape(labels[a])} {pa:.1%}</td><td>{html.escape(labels[b])} {pb:.1%}</td></tr>"
        for (a, pa), (b, pb) in zip(before, after, strict=True)
    )
    return (
        "<table class='attack-predictions'><thead><tr><th>Clean image: top 3</th>"
        f"<th>Adversarial image: top 3</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def maps_html(
    run: attack.ExplainedAttack,
    labels: list[str],
    written: dict[str, Path],
    tiles: dict[tuple[str, str, int], tuple[Path, explainers.SaliencyMap]],
) -> str:
    """The maps: per class, a row on the clean image and a row on the adversarial image (the image
    at the head of each row), one column per method; the labels outside the maps."""
    methods = list(dict.fromkeys(m.method for m in run.clean.maps))
    head = "".join(f"<th class='method' scope='col'>{html.escape(explainers.METHODS[m].title)}</th>" for m in methods)
    rows = []
    for c in run.classes:
        for which, explanation in (("clean", run.clean), ("adversarial", run.adversarial)):
            cells = [
                f"<th class='row' scope='row'><span class='class-name'>{html.escape(labels[c])}</span>"
                f"<span class='which'>on the {which} image</span>"
                f"<span class='chance'>{_probability(explanation, c):.1%} · {role_of(run, c)}</span></th>",
                f"<td>{_tile(written[which], f'the {which} image')}</td>",
            ]
            for method in methods:
                path, m = tiles[(which, method, c)]
                caption = html.escape(f"{explainers.METHODS[method].title} · {labels[c]} · {which} image", quote=True)
                cells.append(f"<td>{_tile(path, caption)}<div class='time'>{m.seconds:.2f} s</div></td>")
            first = " first-of-class" if which == "clean" else ""
            rows.append(f"<tr class='{which}{first}'>{''.join(cells)}</tr>")
    return (
        "<div class='attack-scroll'><table class='attack-table'><thead><tr>"
        f"<th class='row' scope='col'>class · image</th><th class='method' scope='col'>image</th>{head}"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def status_line(run: attack.ExplainedAttack, labels: list[str], steps: int, seconds: float, model: str) -> str:
    """ "**Egyptian cat (28.2%) → espresso (81.5%)**: every pixel changed by at most 2 levels ..."."""
    result = run.attack
    before, after = run.original, run.predicted
    change = (
        f"**{labels[before]} ({_probability(run.clean, before):.1%}) → {labels[after]} "
        f"({_probability(run.adversarial, after):.1%})**: every pixel changed by at most "
        f"{result.linf_levels[0]:g} of 255 levels (budget {result.epsilon:g})"
    )
    if not result.success[0]:
        aimed = f"make it see {labels[result.target[0]]}" if result.target[0] is not None else "change its top class"
        change += f". The budget was too small to {aimed}: try a larger ε or more steps"
    where = "GPU" if str(run.clean.device).startswith("cuda") else str(run.clean.device).upper()
    return f"{change} · {steps} steps · {seconds:.1f} s on {where} · {model}"
