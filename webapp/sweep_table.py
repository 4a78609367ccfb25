"""The "Which layer?" view's drawing: the sweep's maps as overlay files, and the table (one row per
method with the input at its head, one column per layer in the model's order, the scores under each
map, the recommended layer and each method's best map marked), the verdict and the notes."""

from __future__ import annotations

import html
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

import explainers
from explainers import evidence, export, rendering, request
from explainers import sweep as layer_sweep
from explainers.targets import IMAGENET_CLASS_SETS

from . import config, files, tiles

TILE_PX = 176  # a map's width on the page
MAX_SAME_MAP_NOTES = 8
PLACEHOLDER = "<div class='sweep-empty'>Press <b>Sweep layers</b>: the maps appear here.</div>"
CSS = f"""
.sweep-scroll {{overflow-x: auto; max-width: 100%; padding-bottom: 4px;}}
.sweep-table {{border-collapse: separate; border-spacing: 6px 4px; width: max-content;
              border: none; margin: 0;}}
.sweep-table th {{font-size: 0.82rem; font-weight: 600; vertical-align: bottom; text-align: center;
                 border: none; background: none; padding: 0 2px; width: {TILE_PX}px;}}
.sweep-table th.sweep-method {{width: 6.5rem; text-align: left; vertical-align: middle;}}
.sweep-table th.sweep-corner {{width: 6.5rem;}}
.sweep-table td {{padding: 0; border: none; vertical-align: top; background: none;}}
.sweep-table a {{display: block; line-height: 0;}}
.sweep-table img.sweep-tile {{width: {TILE_PX}px; height: {TILE_PX}px; max-width: none; display: block;
                             border-radius: 4px; border: 3px solid transparent;}}
.sweep-table td.sweep-best img.sweep-tile {{border-color: var(--color-accent, #f97316);}}
.sweep-table th.sweep-recommended {{background: var(--color-accent-soft, #ffedd5); border-radius: 6px;}}
.sweep-table th.sweep-recommended .sweep-badge {{font-weight: 700; font-size: 0.78rem;
                                                color: var(--color-accent, #f97316);}}
.sweep-shape, .sweep-badge {{display: block; font-weight: 400; font-size: 0.72rem;}}
.sweep-shape {{color: var(--body-text-color-subdued);}}
.sweep-scores {{font-size: 0.72rem; line-height: 1.25; text-align: center; margin-top: 2px;
               max-width: {TILE_PX + 6}px; color: var(--body-text-color-subdued);}}
.sweep-scores b {{color: var(--body-text-color);}}
.sweep-notes {{margin: 0 0 0.5rem 0; padding: 0.4rem 0.8rem 0.4rem 1.6rem; border-radius: 6px;
              font-size: 0.85rem; background: var(--background-fill-secondary);}}
.sweep-verdict {{margin: 0 0 0.5rem 0; font-size: 0.9rem;}}
.sweep-empty {{padding: 2rem 1rem; color: var(--body-text-color-subdued);}}
@media (max-width: 640px) {{
  .sweep-table .sweep-input {{display: none;}}
  .sweep-table th.sweep-method, .sweep-table th.sweep-corner {{width: 4.5rem;}}
}}
"""


def write_tiles(result: layer_sweep.Sweep, crop: Image.Image) -> dict[str, Path]:
    """The crop ("input") and every map's overlay on it ("method|layer"), as PNG files in a fresh
    folder Gradio serves."""
    folder = files.new_folder()
    pictures = {"input": crop}
    for method in result.methods:
        for layer in result.layers:
            shown = evidence.display_map(result.raw[method][layer])
            pictures[f"{method}|{layer}"] = rendering.overlay(
                crop, shown, config.DEFAULT_COLORMAP, config.DEFAULT_OPACITY
            )
    written = {}
    for number, (key, picture) in enumerate(pictures.items()):
        path = folder / f"sweep-{number:02d}-{export.safe_name(key)}.png"
        export.save_picture(picture, path)
        written[key] = path
    return written


def score_text(result: layer_sweep.Sweep, method: str, layer: str) -> str:
    """The small print under a map: its scores (HTML), and a note for a near-empty map."""
    score = result.scores[method][layer]
    note = evidence.assess_evidence(result.raw[method][layer]).note
    note_html = f"<br>{html.escape(note)}" if note else ""
    if isinstance(score, layer_sweep.WhyNotScore):
        if np.isnan(score.score):
            return f"no region to check{note_html}"
        return (
            f"gain {score.region_gain:.2f} · shifted {score.shifted_gain:.2f}<br>"
            f"score <b>{score.score:+.2f}</b>{note_html}"
        )
    return f"del {score.deletion:.2f} · ins {score.insertion:.2f}<br>score <b>{score.score:+.2f}</b>{note_html}"


def verdict(result: layer_sweep.Sweep) -> str:
    """Why the recommended layer is recommended (HTML): its mean score against the next best, and
    each method's own best layer when they differ."""
    best = result.recommended()
    if best is None:
        return "No layer could be scored: every map is empty, so no layer is recommended."
    means = {layer: float(np.mean([result.scores[m][layer].score for m in result.methods])) for layer in result.layers}
    others = sorted(
        (layer for layer in result.layers if layer != best and not np.isnan(means[layer])), key=means.__getitem__
    )
    runner_up = f" against {means[others[-1]]:+.2f} at <code>{html.escape(others[-1])}</code>" if others else ""
    what = "“why not” score" if result.counterfactual else "score (insertion − deletion)"
    mean_of = f"mean {what} over the {len(result.methods)} methods" if len(result.methods) > 1 else what
    text = (
        f"★ Recommended layer: <b><code>{html.escape(best)}</code></b>: the best {mean_of}, "
        f"{means[best]:+.2f}{runner_up}."
    )
    own = {m: result.recommended(m) for m in result.methods}
    differ = [
        f"{html.escape(explainers.method_info(m).title)}: <code>{html.escape(str(layer))}</code>"
        for m, layer in own.items()
        if layer != best
    ]
    return text + (f" Each method's own best where it differs: {', '.join(differ)}." if differ else "")


def same_map_notes(result: layer_sweep.Sweep) -> list[str]:
    """ "Grad-CAM: blocks.5 and bn2 give the same map (r = 0.995)", at most MAX_SAME_MAP_NOTES."""
    notes = [
        f"{explainers.method_info(s.method).title}: {s.layers[0]} and {s.layers[1]} give the same map (r = {s.r:.3f})"
        for s in result.same_maps
    ]
    extra = len(notes) - MAX_SAME_MAP_NOTES
    return notes[:MAX_SAME_MAP_NOTES] + ([f"… and {extra} more such pairs"] if extra > 0 else [])


def _img(path: Path, alt: str) -> str:
    return tiles.linked_picture(path, html.escape(alt, quote=True), "sweep-tile", TILE_PX)


def sweep_html(
    result: layer_sweep.Sweep, tiles: dict[str, Path], shapes: Mapping[str, tuple[int, ...]], skipped: list[str]
) -> str:
    """The sweep as HTML: the skipped methods, the verdict, then the table (the input at the head
    of the rows, one row per method, one column per layer in the model's order, the recommended
    column and each method's best map marked, scores under the maps), then the same-map notes."""
    best = result.recommended()
    head = []
    for layer in result.layers:
        marked = layer == best
        badge = "<span class='sweep-badge'>★ recommended</span>" if marked else ""
        head.append(
            f"<th scope='col' class='sweep-layer{' sweep-recommended' if marked else ''}'>{badge}"
            f"<code>{html.escape(layer)}</code>"
            f"<span class='sweep-shape'>{'×'.join(map(str, shapes[layer]))}</span></th>"
        )
    rows = []
    input_tile = _img(tiles["input"], "the input as the model sees it")
    input_cell = f"<td class='sweep-input' rowspan='{len(result.methods)}'>{input_tile}</td>"
    for index, method in enumerate(result.methods):
        title = html.escape(explainers.method_info(method).title)
        own_best = result.recommended(method)
        cells = [f"<th scope='row' class='sweep-method'>{title}</th>", input_cell if index == 0 else ""]
        for layer in result.layers:
            best_cell = " class='sweep-best'" if layer == own_best else ""
            alt = f"{explainers.method_info(method).title} at {layer}"
            cells.append(
                f"<td{best_cell}>{_img(tiles[f'{method}|{layer}'], alt)}"
                f"<div class='sweep-scores'>{score_text(result, method, layer)}</div></td>"
            )
        rows.append(f"<tr>{''.join(cells)}</tr>")
    skipped_html = "".join(f"<li>Skipped: {html.escape(note)}.</li>" for note in skipped)
    same = "".join(f"<li>{html.escape(note)}</li>" for note in same_map_notes(result))
    return (
        (f"<ul class='sweep-notes'>{skipped_html}</ul>" if skipped_html else "")
        + f"<p class='sweep-verdict'>{verdict(result)}</p>"
        + "<div class='sweep-scroll'><table class='sweep-table'><thead><tr>"
        + "<th class='sweep-corner' scope='col'>method</th><th class='sweep-input' scope='col'>input</th>"
        + "".join(head)
        + f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        + (f"<ul class='sweep-notes sweep-same'>{same}</ul>" if same else "")
    )


def target_name(result: layer_sweep.Sweep) -> str:
    """The swept target for a person: "tabby", an ImageNet class set as the classes box names it
    ("all dogs (118 classes)"), "class 281" for a class without a label."""
    target = result.target
    if isinstance(target, explainers.ClassSet) and target.name in IMAGENET_CLASS_SETS:
        return request.class_set_entry(target.name)
    return result.label or f"class {target}"


def status_line(result: layer_sweep.Sweep, model: str, steps: int, seconds: float) -> str:
    """ "**24 maps** of tabby (41.2%) · 3 methods × 8 layers in 12.3 s · scores with 10 steps · model";
    a class set's probability is the sum of its classes'."""
    label = html.escape(target_name(result))
    count = len(result.methods) * len(result.layers)
    kind = ("“why not” map" if result.counterfactual else "map") + ("s" if count != 1 else "")
    scoring = "“why not” check" if result.counterfactual else f"scores with {steps} steps"
    return (
        f"**{count} {kind}** of {label} ({result.probability:.1%}) · "
        f"{len(result.methods)} method(s) × {len(result.layers)} layers in {seconds:.1f} s · {scoring} · "
        f"{model} · computed at {time.strftime('%H:%M:%S')}"
    )
