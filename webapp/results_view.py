"""The results view: the maps as a table (one row per class with the input at its head, one
column per method, the labels outside the maps), the predictions, the status line, the colour
legend, and the files behind them (tiles and grid shown, the zip on request)."""

from __future__ import annotations

import base64
import html
import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from PIL import Image

import explainers
from explainers import evidence, export, rendering
from explainers.targets import Target

from . import config, files, style, tiles
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
    def grid_name(self) -> str:
        """The grid image's name in the layout."""
        return f"{self.stem}_grid.png"

    @property
    def input_name(self) -> str:
        """The input's (the crop the model saw) name in the layout."""
        return f"{self.stem}_input.png"


Overlays = dict[export.TileKey, Image.Image]  # the pictures of one drawing, by tile


def tile_caption(result: Result, tile: Tile, notes: str | None = None) -> str:
    """ "Grad-CAM · tabby · 41.2% · 0.05 s" (with "why not" for counterfactual maps), then the
    tile's ``notes`` (settings_note + empty_note, found here when not given)."""
    title = explainers.METHODS[tile.method].title
    if tile.counterfactual:
        title += " (why not)"
    if notes is None:
        notes = settings_note(tile) + empty_note(tile)
    return f"{title} · {result.labels[tile.target]} · {tile.probability:.1%} · {tile.seconds:.2f} s{notes}"


def settings_note(tile: Tile) -> str:
    """ " · 1000 masks" from how the map was made (SaliencyMap.settings), else ""."""
    return "".join(f" · {value} {name}" for name, value in tile.settings.items())


def empty_note(tile: Tile) -> str:
    """ " · no evidence found (empty map)" or " · almost no evidence: positive on 0.4 % of pixels"
    for an empty or near-empty map (explainers.evidence), else ""."""
    note = evidence.assess_evidence(tile.raw).note
    return f" · {note}" if note else ""


def target_index(target: Target) -> str:
    """The small print under a row's name: "class 281", "classes 281 − 967" for a contrast, "118
    classes" for a class set."""
    if isinstance(target, explainers.Contrast):
        return f"classes {target.a} − {target.b}"
    if isinstance(target, explainers.ClassSet):
        return f"{len(target.classes)} classes"
    return f"class {target}"


def probability_of(result: Result, target: Target) -> float | None:
    """The model's probability of a row's target (of the pair for a contrast), from its maps."""
    return next((t.probability for (_, c, _), t in result.tiles.items() if c == target), None)


def row_label(result: Result, target: Target) -> str:
    """ "tabby (41.2%)" for a row header."""
    probability = probability_of(result, target)
    suffix = f" ({probability:.1%})" if probability is not None else ""
    return f"{result.labels[target]}{suffix}"


def write_tiles(result: Result, display: export.Display) -> tuple[Shown, Overlays]:
    """Draw every overlay into a fresh folder under the export's names, with the input: the
    files the maps table shows (the grid is write_grid's). The input's file is linked from the
    result's last drawing when there is one (it does not change with the colours), so a
    re-render encodes only the overlays. Returns the drawing and the overlays (for the grid)."""
    explained = result.explained()
    stem = export.stem_of(result.name)
    shown = Shown(files.new_folder(), {}, display, stem)
    overlays = export.draw_overlays(explained, display)
    input_path = shown.folder / shown.input_name
    previous = result.shown.files.get(shown.input_name) if result.shown is not None else None
    if previous is None or not _linked(previous, input_path):  # no earlier drawing, or it has gone
        export.save_picture(result.crop, input_path)
    shown.files[shown.input_name] = input_path
    for tile in explained.maps:
        name = export.overlay_name(stem, tile, explained.labels)
        export.save_picture(overlays[export.tile_key(tile)], shown.folder / name)
        shown.files[name] = shown.folder / name
    return shown, overlays


def _linked(source: Path, target: Path) -> bool:
    """Hard-link ``target`` to ``source`` (fresh for the scratch folder's age limit); False
    where that is impossible (the source has gone, or the file system has no links)."""
    try:
        os.link(source, target)
        os.utime(target)
    except OSError:
        return False
    return True


def write_grid(result: Result, shown: Shown, overlays: Overlays | None = None) -> Path:
    """The grid image of a drawing, written next to its tiles once (from ``overlays``, else
    from the tiles' files); its path."""
    path = shown.files.get(shown.grid_name)
    if path is not None and path.is_file():
        return path
    explained = result.explained()
    if overlays is None:
        overlays = {}
        for tile in explained.maps:
            with Image.open(shown.files[export.overlay_name(shown.stem, tile, explained.labels)]) as picture:
                overlays[export.tile_key(tile)] = picture.convert("RGB")
    path = shown.folder / shown.grid_name
    export.save_picture(export.draw_grid(explained, overlays), path)
    shown.files[shown.grid_name] = path
    return path


def write_archive(result: Result, shown: Shown) -> str:
    """The zip of the export's layout for what is shown: the shown files, the overlays on the
    whole photo, the raw maps (.npz, written once per result, compressed on a second thread
    while the photos are drawn) and the json record. Named after the image and the model."""
    explained = result.explained()
    earlier = Path(result.npz_path) if result.npz_path else None
    npz = earlier if earlier is not None and earlier.is_file() else shown.folder / f"{shown.stem}_maps.npz"
    with ThreadPoolExecutor(1) as pool:  # zlib lets go of the GIL: the photos are drawn meanwhile
        arrays = None if npz == earlier else pool.submit(export.save_arrays, npz, explained)
        write_grid(result, shown)  # in the zip, whether or not it was shown
        photo_files = {}
        for key, picture in export.draw_on_photo(explained, shown.display):
            name = export.overlay_name(shown.stem, explained.get(*key), explained.labels, photo=True)
            export.save_picture(picture, shown.folder / name)
            photo_files[name] = shown.folder / name
        if arrays is not None:
            arrays.result()  # its error, if any, here
    result.npz_path = str(npz)
    contents = {**shown.files, **photo_files, f"{shown.stem}_maps.npz": npz}
    info = export.record(explained, shown.display, shown.stem, photo=bool(photo_files))
    archive = shown.folder / f"{shown.stem}-{export.safe_name(result.model)}-explained.zip"
    return str(export.write_zip(archive, contents, info, shown.stem))


def _tile(path: Path, caption: str) -> str:
    """A tile: the picture, a link to itself at full size (``caption`` escaped already)."""
    return tiles.linked_picture(path, caption, "tile", style.TILE_PX)


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
            f"<td class='input-cell'>{_tile(shown.files[shown.input_name], INPUT_ALT)}</td>",
        ]
        for method in result.methods:
            tile = result.tiles.get((method, target, why_not))
            if tile is None:
                cells.append("<td class='missing'></td>")
                continue
            path = shown.files[export.overlay_name(stem, tile, labels)]
            notes = settings_note(tile) + empty_note(tile)
            caption = html.escape(tile_caption(result, tile, notes), quote=True)
            time_note = f"<div class='time'>{tile.seconds:.2f} s{html.escape(notes)}</div>"
            cells.append(f"<td>{_tile(path, caption)}{time_note}</td>")
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


def present_maps(result: Result, colormap: str, opacity: float, shared: bool) -> tuple[str, Shown, Overlays]:
    """Draw a result's tiles anew (write_tiles; the page shows it from now on): the maps
    table's HTML, the drawing and its overlays. The page gets this first; present_rest adds
    the grid and the zip of the same drawing."""
    shown, overlays = write_tiles(result, export.Display(colormap, float(opacity), bool(shared)))
    result.shown = shown
    return results_html(result, shown), shown, overlays


def present_rest(result: Result, shown: Shown, overlays: Overlays, archive: bool = True) -> tuple[str, str | None]:
    """(grid image path, zip path or None) of a drawing of present_maps; then the scratch
    folder is trimmed to its cap (files.tidy), once per drawing."""
    grid = write_grid(result, shown, overlays)
    path = write_archive(result, shown) if archive else None
    files.tidy()
    return str(grid), path


def present(
    result: Result, colormap: str, opacity: float, shared: bool, archive: bool = True
) -> tuple[str, str, str | None]:
    """(results HTML, grid image path, zip path or None) for a result, drawn anew."""
    view, shown, overlays = present_maps(result, colormap, opacity, shared)
    return (view, *present_rest(result, shown, overlays, archive))


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
        with gr.Tab("Table"):
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
