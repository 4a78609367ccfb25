"""The results view: the maps as a table (one row per class with the input at its head, one
column per method, the labels outside the maps), the predictions, the status line, the colour
legend, and the files behind them (the tiles travel inside the table; the grid and the zip are
written after the maps are out)."""

from __future__ import annotations

import base64
import html
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from PIL import Image

import explainers
from explainers import evidence, export, rendering
from explainers.targets import Target

from . import config, files, style
from .state import Result, Tile

INPUT_ALT = "the input as the model sees it (the centre crop)"
PLACEHOLDER = (
    "<div class='results-empty'>Pick an image (or click an example) and press "
    "<b>Explain</b>: the maps appear here, one row per class and one column per "
    "method.</div>"
)


@dataclass
class Shown:
    """What is on screen for a result: how it is drawn, its folder, and its grid image's file
    once written (after the maps are out; the zip's other pictures never become files)."""

    folder: Path
    display: export.Display
    stem: str
    grid: Path | None = None

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


def picture_uri(picture: Image.Image) -> str:
    """A picture as a data: URI, JPEG at quality 90 without chroma subsampling: the page's tiles
    travel inside the maps table (no file to write, copy or fetch; ~16 kB and well under a
    millisecond for a 224 px tile, against ~65 kB and ~3 ms as PNG). The download keeps PNG."""
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, format="JPEG", quality=90, subsampling=0)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def write_grid(result: Result, shown: Shown, overlays: Overlays | None = None) -> Path:
    """The grid image of a drawing, written into its folder once (from ``overlays``, drawn again
    when not given); its path."""
    if shown.grid is not None and shown.grid.is_file():
        return shown.grid
    explained = result.explained()
    if overlays is None:
        overlays = export.draw_overlays(explained, shown.display)
    shown.grid = shown.folder / shown.grid_name
    export.save_picture(export.draw_grid(explained, overlays), shown.grid)
    return shown.grid


def write_archive(result: Result, shown: Shown, overlays: Overlays | None = None) -> str:
    """The zip of the export's layout for a drawing: the input, the overlays on the crop and on
    the whole photo (encoded into the zip, never files of their own), the grid, the raw maps
    (.npz, written once per result, compressed on a second thread while the pictures are
    encoded) and the json record. ``overlays`` are drawn again when not given. Named after the
    image and the model."""
    explained = result.explained()
    earlier = Path(result.npz_path) if result.npz_path else None
    npz = earlier if earlier is not None and earlier.is_file() else shown.folder / f"{shown.stem}_maps.npz"
    with ThreadPoolExecutor(1) as pool:  # zlib lets go of the GIL: the pictures are encoded meanwhile
        arrays = None if npz == earlier else pool.submit(export.save_arrays, npz, explained)
        if overlays is None:  # a download on request: drawn again (~1 ms a map)
            overlays = export.draw_overlays(explained, shown.display)
        contents: dict[str, Path | bytes] = {shown.input_name: export.png_bytes(result.crop)}
        for tile in explained.maps:
            contents[export.overlay_name(shown.stem, tile, explained.labels)] = export.png_bytes(
                overlays[export.tile_key(tile)]
            )
        contents[shown.grid_name] = write_grid(result, shown, overlays)  # in the zip, whether or not it was shown
        photo = False
        for key, picture in export.draw_on_photo(explained, shown.display):
            drawn = explained.get(*key)
            assert drawn is not None  # draw_on_photo draws the maps of `explained`
            name = export.overlay_name(shown.stem, drawn, explained.labels, photo=True)
            contents[name], photo = export.picture_bytes(picture, name), True
        if arrays is not None:
            arrays.result()  # its error, if any, here
    result.npz_path = str(npz)
    contents[f"{shown.stem}_maps.npz"] = npz
    info = export.record(explained, shown.display, shown.stem, photo=photo)
    archive = shown.folder / f"{shown.stem}-{export.safe_name(result.model)}-explained.zip"
    return str(export.write_zip(archive, contents, info, shown.stem))


def _tile(uri: str, caption: str) -> str:
    """A tile: the picture (a data: URI) with ``caption`` (escaped already) as its title and alt text."""
    return (
        f"<img class='tile' src='{uri}' alt='{caption}' title='{caption}' "
        f"width='{style.TILE_PX}' height='{style.TILE_PX}'>"
    )


def results_html(result: Result | None, overlays: Overlays | None) -> str:
    """The maps as an HTML table: a header row of method names, then per class a row header
    (class and probability), the input and one tile per method with its time under it; with
    "Why not?", the class's "why not" row right under it (a cell left empty for a method
    without that form). Notes (skipped methods, a tiny image) come first. Scrolls sideways
    when wider than the page."""
    if result is None or overlays is None:
        return PLACEHOLDER
    input_tile = _tile(picture_uri(result.crop), INPUT_ALT)
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
            f"<td class='input-cell'>{input_tile}</td>",
        ]
        for method in result.methods:
            tile = result.tiles.get((method, target, why_not))
            if tile is None:
                cells.append("<td class='missing'></td>")
                continue
            notes = settings_note(tile) + empty_note(tile)
            caption = html.escape(tile_caption(result, tile, notes), quote=True)
            time_note = f"<div class='time'>{tile.seconds:.2f} s{html.escape(notes)}</div>"
            cells.append(f"<td>{_tile(picture_uri(overlays[export.tile_key(tile)]), caption)}{time_note}</td>")
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
    """Draw a result anew (the page shows this drawing from now on): the maps table's HTML, its
    pictures inside it, with nothing written to disk; the drawing and its overlays. The page
    gets this first; present_rest writes the grid and the zip of the same drawing."""
    display = export.Display(colormap, float(opacity), bool(shared))
    overlays = export.draw_overlays(result.explained(), display)
    result.shown = Shown(files.new_folder(), display, export.stem_of(result.name))
    return results_html(result, overlays), result.shown, overlays


def present_rest(result: Result, shown: Shown, overlays: Overlays, archive: bool = True) -> tuple[str, str | None]:
    """(grid image path, zip path or None) of a drawing of present_maps; then the scratch
    folder is trimmed to its cap (files.tidy), once per drawing."""
    path = write_archive(result, shown, overlays) if archive else None
    grid = write_grid(result, shown, overlays)
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
