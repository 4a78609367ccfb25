"""The results view: the maps as a table (one row per class with the input at its head, one
column per method, the labels outside the maps), the predictions, the status line, the colour
legend, and the files behind them (tiles and grid shown, the zip on request)."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

import explainers
from explainers import evidence, export, rendering
from explainers.targets import Target

from . import config, files
from .state import Result, Tile

INPUT_ALT = "the input as the model sees it (the centre crop)"
PLACEHOLDER = (
    "<div class='results-empty'>Pick an image (or click an example) and press "
    "<b>Explain</b>: the maps appear here, one row per class and one column per "
    "method.</div>"
)


@dataclass
class Shown:
    """What is on screen for a result: its files (name in the zip -> path) and how drawn."""

    folder: Path
    files: dict[str, Path]
    display: export.Display
    stem: str

    @property
    def grid(self) -> str:
        """The grid image's path."""
        return str(self.files[f"{self.stem}_grid.png"])


def tile_caption(result: Result, tile: Tile) -> str:
    """ "Grad-CAM · tabby · 41.2% · 0.05 s" (with "why not" for counterfactual maps)."""
    title = explainers.METHODS[tile.method].title
    if tile.counterfactual:
        title += " (why not)"
    return (
        f"{title} · {result.labels[tile.target]} · {tile.probability:.1%} · "
        f"{tile.seconds:.2f} s{settings_note(tile)}{empty_note(tile)}"
    )


def settings_note(tile: Tile) -> str:
    """ " · 1000 masks" from how the map was made (SaliencyMap.settings), else ""."""
    return "".join(f" · {value} {name}" for name, value in tile.settings.items())


def empty_note(tile: Tile) -> str:
    """ " · no evidence found (empty map)" or " · almost no evidence: positive on 0.4 % of pixels"
    for an empty or near-empty map (explainers.evidence), else ""."""
    note = evidence.assess_evidence(tile.raw).note
    return f" · {note}" if note else ""


def target_index(target: Target) -> str:
    """The small print under a row's name: "class 281", "classes 281 − 967" for a contrast."""
    if isinstance(target, explainers.Contrast):
        return f"classes {target.a} − {target.b}"
    return f"class {target}"


def probability_of(result: Result, target: Target) -> float | None:
    """The model's probability of a row's target (of the pair for a contrast), from its maps."""
    return next((t.probability for (_, c, _), t in result.tiles.items() if c == target), None)


def row_label(result: Result, target: Target) -> str:
    """ "tabby (41.2%)" for a row header."""
    probability = probability_of(result, target)
    suffix = f" ({probability:.1%})" if probability is not None else ""
    return f"{result.labels[target]}{suffix}"


def write_shown(result: Result, display: export.Display) -> Shown:
    """Draw the input, every overlay and the grid into a fresh folder, under the export's names."""
    explained = result.explained()
    stem = export.stem_of(result.name)
    folder = files.new_folder()
    overlays = export.draw_overlays(explained, display)
    pictures = {f"{stem}_input.png": result.crop}
    for tile in explained.maps:
        pictures[export.overlay_name(stem, tile, explained.labels)] = overlays[export.tile_key(tile)]
    pictures[f"{stem}_grid.png"] = export.draw_grid(explained, overlays)
    written = {}
    for name, picture in pictures.items():
        export.save_picture(picture, folder / name)
        written[name] = folder / name
    return Shown(folder, written, display, stem)


def write_archive(result: Result, shown: Shown) -> str:
    """The zip of the export's layout for what is shown: the shown files, the overlays on the
    whole photo, the raw maps (.npz, written once per result) and the json record. Named after
    the image and the model."""
    explained = result.explained()
    photo_files = {}
    for key, picture in export.draw_on_photo(explained, shown.display).items():
        name = export.overlay_name(shown.stem, explained.get(*key), explained.labels, photo=True)
        export.save_picture(picture, shown.folder / name)
        photo_files[name] = shown.folder / name
    if not (result.npz_path and Path(result.npz_path).is_file()):
        npz = shown.folder / f"{shown.stem}_maps.npz"
        export.save_arrays(npz, explained)
        result.npz_path = str(npz)
    contents = {**shown.files, **photo_files, f"{shown.stem}_maps.npz": Path(result.npz_path)}
    info = export.record(explained, shown.display, shown.stem, photo=bool(photo_files))
    archive = shown.folder / f"{shown.stem}-{export.safe_name(result.model)}-explained.zip"
    return str(export.write_zip(archive, contents, info, shown.stem))


def _src(path: Path) -> str:
    """The URL Gradio serves a file of its cache at (relative: works under a mounted path)."""
    return "gradio_api/file=" + html.escape(str(path), quote=True)


def _tile(path: Path, caption: str) -> str:
    """A tile: the picture, a link to itself at full size (``caption`` escaped already)."""
    return (
        f"<a href='{_src(path)}' target='_blank' rel='noopener' title='{caption}'>"
        f"<img class='tile' src='{_src(path)}' alt='{caption}' width='224' height='224'></a>"
    )


def results_html(result: Result | None, shown: Shown | None) -> str:
    """The maps as an HTML table: a header row of method names, then per class a row header
    (class and probability), the input and one tile per method with its time under it; with
    "Why not?", the class's "why not" row right under it (a cell left empty for a method
    without that form). Notes (skipped methods, a tiny image) come first. Scrolls sideways
    when wider than the page."""
    if result is None or shown is None:
        return PLACEHOLDER
    stem, labels = shown.stem, result.class_names
    head = "".join(
        f"<th class='method' scope='col'>{html.escape(explainers.METHODS[m].title)}</th>" for m in result.methods
    )
    rows = []
    for target, why_not in result.explained().rows():
        label = html.escape(result.labels[target])
        probability = probability_of(result, target)
        of_pair = " of the pair" if isinstance(target, explainers.Contrast) else ""  # p_a / (p_a + p_b)
        chance = f"<span class='chance'>{probability:.1%}{of_pair}</span>" if probability is not None else ""
        against = "<span class='why-not'>why not</span>" if why_not else ""
        cells = [
            f"<th class='row' scope='row'>{against}<span class='class-name'>{label}</span>"
            f"<span class='class-index'>{target_index(target)}</span>{chance}</th>",
            f"<td class='input-cell'>{_tile(shown.files[stem + '_input.png'], INPUT_ALT)}</td>",
        ]
        for method in result.methods:
            tile = result.tiles.get((method, target, why_not))
            if tile is None:
                cells.append("<td class='missing'></td>")
                continue
            path = shown.files[export.overlay_name(stem, tile, labels)]
            caption = html.escape(tile_caption(result, tile), quote=True)
            cells.append(
                f"<td>{_tile(path, caption)}<div class='time'>{tile.seconds:.2f} s"
                f"{html.escape(settings_note(tile) + empty_note(tile))}</div></td>"
            )
        kind = " class='why-not-row'" if why_not else ""
        kind = " class='contrast'" if isinstance(target, explainers.Contrast) else kind
        rows.append(f"<tr{kind}>{''.join(cells)}</tr>")
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in result.notes)
    notes_html = f"<ul class='results-notes'>{notes}</ul>" if notes else ""
    return (
        f"{notes_html}<div class='results-scroll'><table class='results-table'><thead><tr>"
        f"<th class='corner' scope='col'>class</th><th class='method' scope='col'>input</th>"
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def predictions_label(result: Result) -> dict[str, float]:
    """{label: probability} of the top predictions, for gr.Label (duplicate names get an index)."""
    out: dict[str, float] = {}
    for index, label, probability in result.predictions:
        key = label if label not in out else f"{label} ({index})"
        out[key] = probability
    return out


def status_line(result: Result) -> str:
    """The "computed" stamp: maps, time, device, model, layer, clock time."""
    count = len(result.tiles)
    where = "GPU" if str(result.device).startswith("cuda") else str(result.device).upper()
    layer = f" · layer `{result.layer}`" if result.layer else ""
    return (
        f"**{count} map{'s' if count != 1 else ''}** in {result.seconds:.2f} s on {where} · "
        f"{result.model}{layer} · computed at {result.finished}"
    )


def legend_html(colormap: str) -> str:
    """A colour bar for the chosen colormap: low → high."""
    buffer = io.BytesIO()
    rendering.colorbar(colormap, width=256, height=12).save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (
        f"<div id='legend'><span>low</span><img alt='{colormap} colour scale' "
        f"src='data:image/png;base64,{data}'><span>high</span></div>"
    )


def present(
    result: Result, colormap: str, opacity: float, shared: bool, archive: bool = True
) -> tuple[str, str, str | None]:
    """(results HTML, grid image path, zip path or None) for a result, drawn anew."""
    result.shown = write_shown(result, export.Display(colormap, float(opacity), bool(shared)))
    path = write_archive(result, result.shown) if archive else None
    files.tidy()
    return results_html(result, result.shown), result.shown.grid, path


@dataclass
class Results:
    """The results column's components."""

    status: gr.Markdown
    maps: gr.HTML
    grid: gr.Image
    predictions: gr.Label
    colormap: gr.Dropdown
    legend: gr.HTML
    opacity: gr.Slider
    shared: gr.Checkbox
    download: gr.File
    prepare: gr.Button


def build() -> Results:
    """The results column's components (inside the current Blocks): the maps first."""
    status = gr.Markdown("Pick an image (or click an example) and press **Explain**.", elem_id="status")
    with gr.Tabs():
        with gr.Tab("Maps"):
            maps = gr.HTML(PLACEHOLDER, elem_id="results", padding=False)
        with gr.Tab("Grid image"):
            grid = gr.Image(label="All maps in one image", type="pil", format="png", interactive=False, elem_id="grid")
    with gr.Row(equal_height=False):
        predictions = gr.Label(label="Predictions", elem_id="predictions", scale=3)
        with gr.Column(scale=2, min_width=240, variant="panel"):
            colormap = gr.Dropdown(
                choices=rendering.colormaps(), value=config.DEFAULT_COLORMAP, label="Colormap", elem_id="colormap"
            )
            legend = gr.HTML(legend_html(config.DEFAULT_COLORMAP))
            opacity = gr.Slider(
                0, 1, value=config.DEFAULT_OPACITY, step=0.05, label="Overlay opacity", elem_id="opacity"
            )
            shared = gr.Checkbox(
                False,
                label="One scale across classes",
                info="per method, so class maps compare",
                elem_id="shared-scale",
            )
    download = gr.File(
        label="Download everything (zip: overlays on the crop and on the whole photo, grid, raw maps, predictions)",
        interactive=False,
        elem_id="download",
    )
    prepare = gr.Button("Prepare the download in these colours", visible=False, size="sm", elem_id="prepare-download")
    return Results(status, maps, grid, predictions, colormap, legend, opacity, shared, download, prepare)
