"""Gradio web app: see why an ImageNet classifier made its decision.

The UI only: every number comes from ``models`` (weights, preprocessing, labels, layers) and
``explainers`` (saliency maps, colormaps, overlays, grids); see docs/API.md.

Run it::

    python app.py                      # http://127.0.0.1:7860, offline, embedded efficientnet_lite0
    python app.py --host 0.0.0.0 --port 8080
    python app.py --share              # also a public Gradio share link

Call it from Python (gradio_client); parameters left out take the UI's defaults::

    from gradio_client import Client, handle_file

    client = Client("http://127.0.0.1:7860/")
    tiles, predictions, archive, status, grid = client.predict(
        image=handle_file("assets/cat_and_coffee.jpg"),
        model="efficientnet_lite0",
        methods=["gradcam", "layercam"],
        top_k=2,                        # explain the 2 top predictions ...
        classes=["espresso"],           # ... plus these ("967", "967: espresso" work too)
        api_name="/explain",
    )
    print(predictions)  # {"label": "...", "confidences": [{"label": "...", "confidence": 0.41}, ...]}
    print(tiles[1])     # {"image": "/tmp/.../image.png", "caption": "Grad-CAM · tabby · 41.2% · 0.05 s"}
    print(archive)      # a .zip: overlays/*.png, grid.png, maps.npz, predictions.json
"""

from __future__ import annotations

import argparse
import base64
import binascii
import ctypes
import functools
import inspect
import io
import json
import logging
import os
import re
import signal
import sys
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np
from gradio import utils as gradio_utils
from gradio.context import LocalContext
from starlette.middleware import Middleware
from PIL import Image

import explainers
import models
from explainers import cost, metrics, metrics_sanity, plots, rendering
from webapp import budget, components, queue_policy, scratch, uploads
from webapp.errors import UserError
from webapp.http_limits import RequestLimits
from webapp.result_store import ResultStore

log = logging.getLogger("app")

HERE = Path(__file__).resolve().parent
ASSETS = HERE / "assets"

DEFAULT_MODEL = "efficientnet_lite0"
PREFERRED_DEFAULT_METHODS = ("gradcam", "gradcam++", "gradcampp", "layercam")
DEFAULT_TOP_K = 2
DEFAULT_COLORMAP = "jet"
DEFAULT_OPACITY = 0.5
MAX_FILE_BYTES = 25 * 1024 * 1024  # upload limit enforced by Gradio (launch(max_file_size=...))
MAX_MAPS = 48                    # classes x methods per run
MAX_CLASSES = 10
MAX_LOADED_MODELS = 2
MAX_REQUEST_SECONDS = 120        # estimated before a run (refused when over) and enforced during it
ENGINE_CONCURRENCY = 2           # engine runs at once (the queue's limit, and a semaphore behind it)
QUEUE_SIZE = 32                  # requests waiting, all visitors together ...
PER_SESSION = 2                  # ... waiting or running per session (a browser tab) ...
PER_ADDRESS = 16                 # ... and per client address (half the queue)
MAX_BODY_BYTES = 64 * 1024       # JSON request bodies (images come as uploads)
SESSIONS = 64                    # sessions Gradio keeps (LRU; ~130 KB each: the page's config)
RESULTS_MAX_BYTES = 64 * 2**20   # results kept for re-rendering, all sessions together ...
RESULTS_MAX_AGE_S = 3600         # ... each for at most an hour after its last use
TEMP_MAX_BYTES = 512 * 2**20     # every temporary file of the server (uploads, Gradio's cache, zips)
TEMP_MAX_AGE_S = 3600            # ... each deleted an hour after it was written
ARCHIVE_ROOT: Path | None = None  # where download folders go; None: this server's scratch folder
M_ARENA_MAX = -8                 # glibc mallopt() parameter (malloc.h)

#: Number of times the engine (explainers.explain) ran in this process; tests read it to
#: check that display changes (colormap, opacity, scale) only re-render.
ENGINE_CALLS = 0
ENGINE_SLOTS = threading.BoundedSemaphore(ENGINE_CONCURRENCY)  # held until a run really stops


def scratch_folder() -> scratch.Scratch:
    """This server's folder for temporary files (Gradio's cache and the downloads), capped."""
    return scratch.claim(TEMP_MAX_BYTES, TEMP_MAX_AGE_S)


# --------------------------------------------------------------------------------------------
# Models: cached, one lock per model (hooks on a shared module must not interleave)
# --------------------------------------------------------------------------------------------

_models: OrderedDict[str, models.Classifier] = OrderedDict()
_model_locks: dict[str, threading.Lock] = {}
_registry_lock = threading.Lock()
_load_lock = threading.Lock()


def get_model(name: str) -> models.Classifier:
    """Return the loaded classifier ``name`` (loading, maybe downloading, it on first use)."""
    with _registry_lock:
        if name in _models:
            _models.move_to_end(name)
            return _models[name]
    with _load_lock:  # one load at a time: downloads and memory stay bounded
        with _registry_lock:
            if name in _models:
                return _models[name]
        classifier = models.load(name)
        with _registry_lock:
            _models[name] = classifier
            _model_locks.setdefault(name, threading.Lock())
            while len(_models) > MAX_LOADED_MODELS:
                _models.popitem(last=False)
        return classifier


def _model_lock(name: str) -> threading.Lock:
    with _registry_lock:
        return _model_locks.setdefault(name, threading.Lock())


def device_summary() -> str:
    """A short line saying whether the engine runs on a GPU or the CPU."""
    try:
        import torch

        if torch.cuda.is_available():
            return f"GPU · {torch.cuda.get_device_name(0)}"
    except Exception:  # pragma: no cover - torch import problems show up elsewhere
        pass
    return "CPU"


# --------------------------------------------------------------------------------------------
# Choices shown in the UI
# --------------------------------------------------------------------------------------------


def model_choices() -> list[tuple[str, str]]:
    """(label, name) for every registered model; those needing a download say so."""
    choices = []
    for info in models.available_models():
        label = info.name
        if not info.ready:
            size = re.search(r"(\d+(?:\.\d+)?)\s*MB", info.description or "")
            label += (f" (downloads {size.group(1)} MB on first use)" if size
                      else " (downloads on first use)")
        choices.append((label, info.name))
    return choices


def layer_choices(classifier: models.Classifier) -> list[tuple[str, str]]:
    """(label, name) per spatial layer, e.g. ("layer4 — 512×7×7", "layer4")."""
    return [(f"{layer.name} — {'×'.join(str(d) for d in layer.shape)}", layer.name)
            for layer in classifier.layers]


def class_entry(index: int, label: str) -> str:
    """The dropdown text for a class: "281: tabby"."""
    return f"{index}: {label}"


def class_choices(classifier: models.Classifier) -> list[str]:
    """Every class of the model as "index: label"."""
    return [class_entry(i, label) for i, label in enumerate(classifier.labels)]


def method_availability(classifier: models.Classifier, layer: str | None) -> dict[str, str | None]:
    """explainers.availability, defaulting every method to usable when it says nothing."""
    reasons = explainers.availability(classifier, layer or None)
    return {name: reasons.get(name) for name in explainers.METHODS}


def method_choices(available: dict[str, str | None]) -> list[tuple[str, str]]:
    """(label, name) per method; slow ones get a stopwatch, unusable ones say "n/a"."""
    choices = []
    for name, info in explainers.METHODS.items():
        label = info.title + (" · slow" if info.slow else "")
        if available.get(name):
            label += " (n/a)"
        choices.append((label, name))
    return choices


def default_methods(available: dict[str, str | None]) -> list[str]:
    """Fast, usable defaults: Grad-CAM, Grad-CAM++, LayerCAM where they exist."""
    picked = [m for m in PREFERRED_DEFAULT_METHODS if m in explainers.METHODS and not available.get(m)]
    if not picked:
        picked = [m for m, info in explainers.METHODS.items() if not info.slow and not available.get(m)][:2]
    return picked


def availability_note(available: dict[str, str | None]) -> str:
    """Markdown listing the methods that do not apply to this model/layer, with the reason."""
    lines = [f"- **{explainers.METHODS[m].title}**: {reason}" for m, reason in available.items() if reason]
    if not lines:
        return ""
    return "Not available for this model and layer:\n" + "\n".join(lines)


def methods_help() -> str:
    """Markdown table: one line per method (what it shows, paper)."""
    rows = ["| Method | Family | What it shows | Paper |", "|---|---|---|---|"]
    for info in explainers.METHODS.values():
        flags = []
        if info.slow:
            flags.append("slow")
        if not info.counterfactual:
            flags.append("no “why not” form")
        extra = f" *({', '.join(flags)})*" if flags else ""
        rows.append(f"| **{info.title}** | {info.kind} | {info.summary}{extra} | {info.paper} |")
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def _payload_path(payload: Any) -> tuple[str | None, bytes | None, str]:
    """(path, bytes, display name) from a raw Gradio image payload, a path or a FileData."""
    if payload is None:
        return None, None, ""
    if isinstance(payload, (str, Path)):
        return str(payload), None, uploads.display_name(payload)
    if not isinstance(payload, dict):
        payload = {k: getattr(payload, k, None) for k in ("path", "url", "orig_name")}
    name = uploads.display_name(payload.get("orig_name") or payload.get("path"))
    url = payload.get("url") or ""
    if not payload.get("path") and url.startswith("data:"):
        if len(url) * 3 // 4 > MAX_FILE_BYTES:
            raise UserError(f"The pasted image is larger than {MAX_FILE_BYTES // 2**20} MB.")
        try:
            return None, base64.b64decode(url.split(",", 1)[1]), name
        except (IndexError, binascii.Error) as err:
            raise UserError("The pasted image could not be decoded. Please try another one.") from err
    return payload.get("path"), None, name


def load_image(payload: Any) -> Image.Image:
    """Open the user's image (upload, paste, webcam, example) as RGB, with friendly errors.

    Accepts a raw Gradio image payload (dict with ``path``/``url``/``orig_name``), a FileData,
    or a file path; the one loader of the app and the CLI (models.open_image) decodes it, with
    its limits. Raises UserError for a missing image or one that cannot be used.
    """
    path, data, name = _payload_path(payload)
    if path is None and data is None:
        raise UserError("Please give an image first: upload one, paste it, use the webcam, "
                        "or click one of the examples.")
    try:
        return models.open_image(data if data is not None else path, name)
    except models.ImageError as err:
        raise UserError(str(err)) from None


def parse_classes(classifier: models.Classifier, entries: Any) -> list[int]:
    """Class indices from dropdown entries ("281: tabby"), plain indices or names.

    Names go through Classifier.search_classes (first match). A comma-separated string is
    accepted too, for API callers.
    """
    if entries is None:
        return []
    if isinstance(entries, str):
        entries = re.split(r"[,;\n]", entries)
    elif isinstance(entries, (int, float)):
        entries = [entries]
    if not isinstance(entries, (list, tuple)):
        raise UserError("Classes must be a list such as [\"281: tabby\", \"espresso\"].")
    if len(entries) > MAX_CLASSES:
        raise UserError(f"That is {len(entries)} classes; at most {MAX_CLASSES} per run.")
    out: list[int] = []
    for entry in entries:
        text = str(entry).strip()
        if not text:
            continue
        match = re.match(r"^(\d+)\s*(:.*)?$", text)
        if match:
            index = int(match.group(1))
            if not 0 <= index < classifier.num_classes:
                raise UserError(f"Class {index} does not exist: {classifier.name} has classes "
                                f"0 to {classifier.num_classes - 1}.")
        else:
            found = classifier.search_classes(text, limit=1)
            if not found:
                raise UserError(f"No class of {classifier.name} matches “{text}”.")
            index = int(found[0][0])
        if index not in out:
            out.append(index)
    return out


# --------------------------------------------------------------------------------------------
# Results: raw maps kept in gr.State, rendered on demand
# --------------------------------------------------------------------------------------------


@dataclass
class Tile:
    """One computed map and what its label needs."""

    method: str
    target: int
    map: np.ndarray
    raw: np.ndarray
    probability: float
    seconds: float
    counterfactual: bool


@dataclass
class Result:
    """Everything one run computed; re-rendering needs nothing else."""

    model: str
    layer: str | None
    device: str
    crop: Image.Image
    methods: list[str]
    targets: list[int]
    labels: dict[int, str]
    tiles: dict[tuple[str, int], Tile]
    predictions: list[tuple[int, str, float]]
    counterfactual: bool
    seconds: float
    inputs: Any = None  # the preprocessed image tensor [1, 3, H, W] the maps explain
    finished: str = field(default_factory=lambda: time.strftime("%H:%M:%S"))
    npz_path: str | None = None
    shown: Shown | None = None  # what the page shows now (the last drawing)

    def nbytes(self) -> int:
        """The memory this result holds: maps, the crop and the input tensor."""
        maps = sum(tile.map.nbytes + tile.raw.nbytes for tile in self.tiles.values())
        crop = self.crop.width * self.crop.height * len(self.crop.getbands())
        inputs = self.inputs.element_size() * self.inputs.nelement() if self.inputs is not None else 0
        return maps + crop + inputs


RESULTS: ResultStore[Result] = ResultStore(RESULTS_MAX_BYTES, RESULTS_MAX_AGE_S,
                                           size_of=Result.nbytes)
PASS_TIMES = budget.PassTimes()
EXPIRED = ("This result is no longer kept on the server (it keeps the latest results of all "
           "visitors for up to an hour). Please press Explain again.")


def stored(result: Result | str | None, missing_ok: bool = False) -> Result | None:
    """The Result a session's state refers to: a Result as it is (Python callers), a key looked
    up in RESULTS (web sessions), or None before any run. A key whose result has gone gives
    UserError (None with missing_ok)."""
    if result is None or isinstance(result, Result):
        return result
    found = RESULTS.get(result)
    if found is None and not missing_ok:
        raise UserError(EXPIRED)
    return found


def compute(image: Image.Image, model_name: str, layer: str | None, methods: list[str],
            top_k: int, classes: list[int], counterfactual: bool,
            progress: Callable[[float, str], None] | None = None) -> Result:
    """Run the engine once for all (class, method) pairs and collect the raw maps."""
    global ENGINE_CALLS
    classifier = get_model(model_name)
    crop = classifier.crop(image)
    x = classifier.preprocess(image)
    if not top_k and not classes:  # explain_image refuses this earlier
        raise UserError("Nothing to explain: set top-k to at least 1 or pick some classes.")
    start = time.perf_counter()
    with ENGINE_SLOTS, _model_lock(model_name):
        ENGINE_CALLS += 1
        # One engine call: the top-k classes (known after its forward pass), then the chosen ones.
        explanation = explainers.explain(classifier, x, methods, top_k=top_k or None,
                                         targets=classes or None, layer=layer,
                                         counterfactual=counterfactual, progress=progress)
    maps = explanation.maps
    targets = explanation.targets[0]
    seconds = time.perf_counter() - start
    tiles = {(m.method, int(m.target)): Tile(m.method, int(m.target), np.asarray(m.map, np.float32),
                                             np.asarray(m.raw, np.float32), float(m.probability),
                                             float(m.seconds), bool(m.counterfactual))
             for m in maps if m.image == 0}
    predictions = [(int(c), classifier.labels[int(c)], float(p))
                   for c, p in explanation.top(max(5, top_k))]
    return Result(model=model_name, layer=explanation.layer, device=explanation.device, crop=crop,
                  methods=list(methods), targets=targets,
                  labels={t: classifier.labels[t] for t in targets}, tiles=tiles,
                  predictions=predictions, counterfactual=counterfactual, seconds=seconds,
                  inputs=x)


def _display_maps(result: Result, shared: bool) -> dict[tuple[str, int], np.ndarray]:
    """The [0, 1] map to draw per tile: each map on its own scale, or one scale per method.

    A shared scale is applied per method (across classes): raw values of different methods
    are in different units, so only the same method's maps are comparable.
    """
    if not shared:
        return {key: tile.map for key, tile in result.tiles.items()}
    out = {}
    for method in result.methods:
        keys = [(method, t) for t in result.targets if (method, t) in result.tiles]
        if keys:
            for key, scaled in zip(keys, rendering.shared_scale([result.tiles[k].raw for k in keys])):
                out[key] = scaled
    return out


def tile_caption(result: Result, tile: Tile) -> str:
    """"Grad-CAM · tabby · 41.2% · 0.05 s" (with "why not" for counterfactual maps)."""
    title = explainers.METHODS[tile.method].title
    if tile.counterfactual:
        title += " (why not)"
    empty = "" if tile.raw.max() > 0 else " · no evidence found (empty map)"
    return (f"{title} · {result.labels[tile.target]} · {tile.probability:.1%} · "
            f"{tile.seconds:.2f} s{empty}")


def row_label(result: Result, target: int) -> str:
    """"281 tabby (41.2%)" for the grid's row headers."""
    probability = next((t.probability for (m, c), t in result.tiles.items() if c == target), None)
    suffix = f" ({probability:.1%})" if probability is not None else ""
    return f"{result.labels[target]}{suffix}"


@dataclass
class Rendered:
    """The drawn result: per-tile overlays and the whole grid (PIL images)."""

    overlays: dict[tuple[str, int], Image.Image]
    grid: Image.Image
    columns: int


def render(result: Result, colormap: str, opacity: float, shared: bool) -> Rendered:
    """Draw every map over the cropped input (no engine call)."""
    maps = _display_maps(result, shared)
    overlays: dict[tuple[str, int], Image.Image] = {}
    rows: list[list[Image.Image | None]] = []
    captions: list[list[str]] = []
    for target in result.targets:
        row: list[Image.Image | None] = [result.crop]
        row_captions = [f"class {target}"]
        for method in result.methods:
            tile = result.tiles.get((method, target))
            if tile is None:
                row.append(None)
                row_captions.append("")
                continue
            picture = rendering.overlay(result.crop, maps[(method, target)], colormap=colormap,
                                        opacity=float(opacity))
            overlays[(method, target)] = picture
            row.append(picture)
            row_captions.append(f"{tile.seconds:.2f} s")
        rows.append(row)
        captions.append(row_captions)
    col_labels = ["Input"] + [explainers.METHODS[m].title + (" (why not)" if result.counterfactual
                                                             else "") for m in result.methods]
    title = f"{result.model} · layer {result.layer}" if result.layer else result.model
    grid = rendering.grid(rows, [row_label(result, t) for t in result.targets], col_labels,
                          title=title, tile_captions=captions)
    return Rendered(overlays, grid, columns=len(result.methods) + 1)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_") or "x"


def _new_folder() -> Path:
    """A fresh per-request folder for the files shown and downloaded: in this server's scratch
    folder, inside Gradio's cache so that Gradio serves the files without copying them."""
    root = ARCHIVE_ROOT or scratch_folder().downloads
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="run-", dir=root))


def _npz_file(result: Result, folder: Path) -> Path:
    """The raw maps as .npz: written once per result, reused by every re-render."""
    if result.npz_path and Path(result.npz_path).is_file():
        return Path(result.npz_path)
    arrays: dict[str, np.ndarray] = {}
    for (method, target), tile in result.tiles.items():
        arrays[f"{method}__{target}__map"] = tile.map
        arrays[f"{method}__{target}__raw"] = tile.raw
    path = folder / "maps.npz"
    np.savez_compressed(path, **arrays)
    result.npz_path = str(path)
    return path


@dataclass
class Shown:
    """What is on screen for a result: its tile and grid files (PNG) and how they were drawn."""

    folder: Path
    files: dict[str, str]       # name in the zip -> path ("input.png", "grid.png", "overlays/…")
    entries: list[dict]         # one per map, for predictions.json
    gallery: list[tuple[str, str]]
    display: dict[str, Any]

    @property
    def grid(self) -> str:
        """The grid image's path."""
        return self.files["grid.png"]


def write_shown(result: Result, rendered: Rendered, colormap: str, opacity: float,
                shared: bool) -> Shown:
    """Write the input, the tiles and the grid (PNG) into a fresh folder: what the page shows."""
    folder = _new_folder()
    (folder / "overlays").mkdir()

    def png(picture: Image.Image, name: str) -> str:
        path = folder / name
        picture.save(path, format="PNG", compress_level=1)
        return str(path)

    input_png = png(result.crop, "input.png")
    files: dict[str, str] = {"input.png": input_png, "grid.png": png(rendered.grid, "grid.png")}
    gallery: list[tuple[str, str]] = []
    entries = []
    for target in result.targets:
        gallery.append((input_png, f"Input · {result.labels[target]} (class {target})"))
        for method in result.methods:
            picture = rendered.overlays.get((method, target))
            if picture is None:
                continue
            tile = result.tiles[(method, target)]
            name = f"overlays/{_safe_name(method)}__{target}_{_safe_name(result.labels[target])}.png"
            files[name] = png(picture, name)
            gallery.append((files[name], tile_caption(result, tile)))
            entries.append({"method": method, "title": explainers.METHODS[method].title,
                            "class": target, "label": result.labels[target],
                            "probability": tile.probability, "seconds": round(tile.seconds, 4),
                            "counterfactual": tile.counterfactual, "overlay": name,
                            "npz_keys": [f"{method}__{target}__map", f"{method}__{target}__raw"]})
    display = {"colormap": colormap, "opacity": opacity, "shared_scale": shared}
    return Shown(folder, files, entries, gallery, display)


def write_archive(result: Result, shown: Shown) -> str:
    """One zip of what is shown (input, overlays, grid), the raw maps (.npz, written once per
    result) and predictions.json, next to the shown files; returns its path."""
    files = {**shown.files, "maps.npz": str(_npz_file(result, shown.folder))}
    info = {"model": result.model, "layer": result.layer, "device": result.device,
            "counterfactual": result.counterfactual,
            "top_predictions": [{"class": c, "label": label, "probability": p}
                                for c, label, p in result.predictions],
            "explained_classes": result.targets, "methods": result.methods,
            "maps": shown.entries, "seconds": round(result.seconds, 4), "display": shown.display}
    archive = shown.folder / f"explanations-{_safe_name(result.model)}.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # PNG and npz are compressed already
        for name, path in files.items():
            zf.write(path, name, compress_type=zipfile.ZIP_STORED)
        zf.writestr("predictions.json", json.dumps(info, indent=2),
                    compress_type=zipfile.ZIP_DEFLATED)
    return str(archive)


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
    return (f"**{count} map{'s' if count != 1 else ''}** in {result.seconds:.2f} s on {where} · "
            f"{result.model}{layer} · computed at {result.finished}")


# --------------------------------------------------------------------------------------------
# Event handlers (what the UI and the API call)
# --------------------------------------------------------------------------------------------


def friendly_errors(action: str) -> Callable:
    """Decorator: turn errors into gr.Error messages a person understands (never a traceback)."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except gr.Error:
                raise
            except queue_policy.ClientGone:
                log.info("stopped %s: the client has gone", action)
                raise gr.Error("Cancelled.", title=f"Did not {action}",
                               print_exception=False) from None
            except models.ModelNotAvailableError as err:  # its text names the server's cache
                log.warning("model not available: %s", err)
                raise gr.Error("This model's weights are not installed on this server and cannot "
                               "be downloaded now. Please choose another model.",
                               title=f"Could not {action}", print_exception=False) from None
            except (UserError, models.ModelError, explainers.ExplainerError) as err:
                raise gr.Error(str(err), title=f"Could not {action}", print_exception=False) from None
            except MemoryError:
                raise gr.Error("The server ran out of memory. Try fewer classes or methods, or a "
                               "smaller model.", title=f"Could not {action}",
                               print_exception=False) from None
            except Exception:
                log.exception("unexpected error while trying to %s", action)
                raise gr.Error("Something unexpected went wrong on the server; the details are "
                               "in its log. Please try again or change the settings.",
                               title=f"Could not {action}", print_exception=False) from None
        return inner

    return wrap


def shown(value: Any, limit: int = 80) -> str:
    """A request value quoted for a message, cut to ``limit`` characters."""
    text = value if isinstance(value, str) else repr(value)
    return f"“{text[:limit]}{'…' if len(text) > limit else ''}”"


def check_web_model(name: Any, listed: frozenset[str]) -> None:
    """UserError unless a web request's model is empty (the default) or one the app lists."""
    if name is None or name == "":
        return
    if not isinstance(name, str) or name not in listed:
        raise UserError(f"Unknown model {shown(name)}; choose one of: {', '.join(sorted(listed))}.")


def upload_policy() -> uploads.UploadPolicy:
    """What a web request's image may be: a file in Gradio's upload folder, or an example."""
    return uploads.UploadPolicy([gradio_utils.get_upload_folder()], example_files())


def for_the_web(fn: Callable, listed: frozenset[str], policy: uploads.UploadPolicy) -> Callable:
    """Wrap a handler Gradio calls. Its ``model`` must be one the app lists (a web request cannot
    make the server download models), its ``image`` an upload or an example (no other file of
    the server), and a Result it returns is kept in RESULTS: the session holds only its key.
    Python callers of ``fn`` are not limited."""
    params = list(inspect.signature(fn).parameters)

    @functools.wraps(fn)
    def inner(*args: Any, **kwargs: Any) -> Any:
        values = {**dict(zip(params, args)), **kwargs}
        try:
            if "model" in values:
                check_web_model(values["model"], listed)
            if "image" in values:
                values["image"] = uploads.checked_image(values["image"], policy)
        except UserError as err:
            raise gr.Error(str(err), title="Request refused", print_exception=False) from None
        out = fn(**values)
        if isinstance(out, tuple) and out and isinstance(out[-1], Result):
            return (*out[:-1], RESULTS.put(out[-1]))
        return out

    return inner


@friendly_errors("load the model")
def on_model_change(model: str, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
    """Load the chosen model (a download shows progress) and rebuild layers, methods, classes."""
    progress(0, desc=f"Loading {model}…")
    classifier = get_model(model)
    available = method_availability(classifier, classifier.default_layer)
    return (gr.Dropdown(choices=layer_choices(classifier), value=classifier.default_layer),
            gr.CheckboxGroup(choices=method_choices(available), value=default_methods(available)),
            gr.Dropdown(choices=class_choices(classifier), value=[], multiselect=True),
            availability_note(available))


@friendly_errors("check the layer")
def on_layer_change(model: str, layer: str, methods: list[str] | None) -> tuple:
    """Re-check which methods apply to this layer; drop selected ones that no longer do."""
    classifier = get_model(model)
    available = method_availability(classifier, layer)
    kept = [m for m in (methods or []) if m in available and not available[m]]
    return gr.CheckboxGroup(choices=method_choices(available), value=kept), availability_note(available)


def on_upload(image: Any) -> Any:
    """Check an upload at once: a file that is not a usable image is reported and cleared."""
    if image is None:
        return gr.skip()
    try:
        load_image(image)
    except UserError as err:
        gr.Warning(str(err), title="Not a usable image", duration=15)
        return None
    return gr.skip()


def _usable_methods(classifier: models.Classifier, layer: str | None, methods: list[str],
                    counterfactual: bool) -> list[str]:
    if not methods:
        raise UserError("Please tick at least one method.")
    unknown = [m for m in methods if m not in explainers.METHODS]
    if unknown:
        raise UserError(f"Unknown method(s): {', '.join(shown(m) for m in unknown[:5])}. Choose from: "
                        f"{', '.join(explainers.METHODS)}.")
    available = method_availability(classifier, layer)
    skipped = [f"{explainers.METHODS[m].title} ({available[m]})" for m in methods if available[m]]
    usable = [m for m in methods if not available[m]]
    if counterfactual:
        no_cf = [m for m in usable if not explainers.METHODS[m].counterfactual]
        skipped += [f"{explainers.METHODS[m].title} (has no “why not” form)" for m in no_cf]
        usable = [m for m in usable if m not in no_cf]
    if not usable:
        raise UserError("None of the chosen methods applies here: " + "; ".join(skipped) + ".")
    if skipped:
        gr.Warning("Skipped: " + "; ".join(skipped) + ".", title="Some methods were skipped")
    return usable


@friendly_errors("explain the image")
def explain_image(image: Any, model: str = DEFAULT_MODEL, layer: str | None = None,
                  methods: list[str] | None = None, top_k: float = DEFAULT_TOP_K,
                  classes: list[str] | str | None = None, counterfactual: bool = False,
                  colormap: str = DEFAULT_COLORMAP, opacity: float = DEFAULT_OPACITY,
                  shared_scale: bool = False,
                  progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
    """Explain why the model predicts what it does: the app's main function (api_name="explain").

    Args:
        image: the picture (a file path through the API).
        model: a name from models.available_models().
        layer: the layer CAM methods look at; empty for the model's default.
        methods: method names from explainers.METHODS, e.g. ["gradcam", "layercam"].
        top_k: explain the k most probable classes (0 to explain only `classes`).
        classes: extra classes to explain: "281: tabby", "281" or a name such as "espresso".
        counterfactual: "why not" maps (regions speaking against the class).
        colormap, opacity, shared_scale: how the maps are drawn.

    Returns:
        (gallery tiles with captions, top predictions, zip of everything, status line,
        the grid as one image, the Result for re-rendering: web sessions get its key in
        RESULTS; not part of the API).
    """
    img = load_image(image)
    colormap, opacity = display_settings(colormap, opacity)
    top_k = whole_number(top_k, "Top-k", 0, MAX_CLASSES)
    counterfactual = as_bool(counterfactual, "“Why not?”")
    shared_scale = as_bool(shared_scale, "“One scale across classes”")
    progress(0, desc=f"Loading {model}…")
    classifier = get_model(model or DEFAULT_MODEL)
    layer = layer or classifier.default_layer
    if layer not in {info.name for info in classifier.layers}:
        raise UserError(f"{classifier.name} has no layer {shown(layer)}. Pick one from the list; "
                        f"the default is {classifier.default_layer}.")
    chosen = parse_classes(classifier, classes)
    if top_k == 0 and not chosen:
        raise UserError("Nothing to explain: set top-k to at least 1 or pick some classes.")
    usable = _usable_methods(classifier, layer, method_names(methods), counterfactual)
    n_classes = top_k + len(chosen)
    if n_classes > MAX_CLASSES:
        raise UserError(f"That is {n_classes} classes; at most {MAX_CLASSES} per run.")
    if n_classes * len(usable) > MAX_MAPS:
        raise UserError(f"That is {n_classes * len(usable)} maps; at most {MAX_MAPS} per run. "
                        "Pick fewer methods or classes.")
    check_time(classifier, layer, usable, n_classes)
    deadline = budget.Deadline(MAX_REQUEST_SECONDS)

    def report(fraction: float, message: str = "") -> None:
        checkpoint(deadline)
        progress(max(0.0, min(1.0, float(fraction))), desc=message or "Explaining…")

    try:
        result = compute(img, classifier.name, layer, usable, top_k, chosen, counterfactual,
                         progress=report)
        gallery, grid, archive = _present(result, colormap, opacity, shared_scale)
    finally:
        release_memory()
    return gallery, predictions_label(result), archive, status_line(result), grid, result


def checkpoint(deadline: budget.Deadline) -> None:
    """Stop a run (by raising) once it is over its time or its visitor has gone."""
    deadline.check()
    queue_policy.stop_if_client_gone()


def tidy(blocks: gr.Blocks | None = None) -> None:
    """Trim the scratch folder to its cap and age, and let Gradio forget the files that went
    (its sets of served files would otherwise grow with every request)."""
    scratch_folder().trim()
    blocks = blocks or LocalContext.blocks.get(None)
    for files in getattr(blocks, "temp_file_sets", []):
        files -= {path for path in list(files) if not os.path.exists(path)}


def method_names(methods: Any) -> list[str]:
    """Method names from a list (or a comma-separated string), duplicates dropped, in order."""
    if methods is None:
        return []
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    if not isinstance(methods, (list, tuple)) or not all(isinstance(m, str) for m in methods):
        raise UserError("Methods must be a list of names such as [\"gradcam\", \"layercam\"].")
    return list(dict.fromkeys(methods))


def as_bool(value: Any, what: str) -> bool:
    """A checkbox value: True/False, 1/0, "true"/"false" (any case), or None for False."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", ""):
        return value.strip().lower() in ("true", "1")
    raise UserError(f"{what} must be true or false, not {shown(value)}.")


def layer_passes(classifier: models.Classifier, layer: str | None, methods: list[str],
                 n_classes: int) -> float:
    """cost.request_passes for this model and layer: its channel count, and the share of the
    network after it (estimated from its position among the model's spatial layers)."""
    names = [info.name for info in classifier.layers]
    position = names.index(layer) + 1 if layer in names else 0
    channels = classifier.layers[position - 1].shape[0] if position else 0
    return cost.request_passes(methods, n_classes, channels,
                               after_layer=1 - position / max(1, len(names)))


def check_time(classifier: models.Classifier, layer: str | None, methods: list[str],
               n_classes: int) -> None:
    """UserError when the slow methods of a request would take longer than MAX_REQUEST_SECONDS
    (estimated from their forward passes and this model's measured time per pass)."""
    slow = [m for m in methods if explainers.method_info(m).slow]
    if not slow:
        return
    passes = layer_passes(classifier, layer, methods, n_classes)
    titles = ", ".join(explainers.method_info(m).title for m in slow)
    budget.check_estimate(passes * PASS_TIMES.seconds(classifier), MAX_REQUEST_SECONDS,
                          f"{titles} for {n_classes} class(es) on {classifier.name}",
                          "Pick fewer slow methods or classes, or a smaller model.")


def whole_number(value: Any, what: str, low: int, high: int) -> int:
    """An integer in [low, high] from a slider or API value (2, 2.0, "2"); UserError otherwise."""
    try:
        number = float(value or 0)
    except (TypeError, ValueError):
        number = float("nan")
    if not (number.is_integer() and low <= number <= high):
        raise UserError(f"{what} must be a whole number from {low} to {high}, not {shown(value)}.")
    return int(number)


def display_settings(colormap: str | None, opacity: Any) -> tuple[str, float]:
    """The colormap and opacity to draw with (defaults for empty values); UserError if invalid."""
    colormap = colormap or DEFAULT_COLORMAP
    if colormap not in rendering.colormaps():
        raise UserError(f"Unknown colormap {shown(colormap)}; choose from: "
                        f"{', '.join(rendering.colormaps())}.")
    try:
        opacity = DEFAULT_OPACITY if opacity is None else float(opacity)
    except (TypeError, ValueError):
        opacity = float("nan")
    if not 0 <= opacity <= 1:
        raise UserError("The overlay opacity must be a number from 0 to 1.")
    return colormap, opacity


def _present(result: Result, colormap: str, opacity: float, shared: bool,
             archive: bool = True) -> tuple:
    """(gallery items, grid image path, zip path or None) for a result, drawn anew."""
    colormap, opacity = display_settings(colormap, opacity)
    rendered = render(result, colormap, opacity, bool(shared))
    result.shown = write_shown(result, rendered, colormap, opacity, bool(shared))
    path = write_archive(result, result.shown) if archive else None
    tidy()
    return result.shown.gallery, result.shown.grid, path


@friendly_errors("redraw the maps")
def rerender(result: Result | str | None, colormap: str, opacity: float,
             shared_scale: bool) -> tuple:
    """Redraw with another colormap/opacity/scale; the engine does not run again. Only the
    tiles and the grid are written: the download is built for the new colours on request
    (prepare_download), so a re-render costs no zip and no copy of the raw maps."""
    result = stored(result)
    if result is None:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    gallery, grid, _ = _present(result, colormap, opacity,
                                as_bool(shared_scale, "“One scale across classes”"), archive=False)
    return gallery, grid, gr.File(value=None), gr.Button(visible=True)


@friendly_errors("prepare the download")
def prepare_download(result: Result | str | None) -> tuple:
    """The zip of what is shown now (after a re-render), from the files already on disk."""
    result = stored(result)
    if result is None or result.shown is None:
        raise UserError("Explain an image first.")
    if not Path(result.shown.folder).is_dir():
        raise UserError(EXPIRED)
    path = write_archive(result, result.shown)
    tidy()
    return path, gr.Button(visible=False)


def gallery_layout(result: Result | str | None) -> Any:
    """One gallery column per method plus the input: each row of tiles is one class."""
    result = stored(result, missing_ok=True)
    if result is None:
        return gr.skip()
    return gr.Gallery(columns=len(result.methods) + 1)


def explain_outputs_order() -> list[str]:
    """Names of explain_image's outputs in order (documentation for API users and tests)."""
    return ["gallery", "predictions", "download", "status", "grid", "state"]


# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------

CSS = """
#header {display: flex; justify-content: space-between; align-items: flex-end; gap: 1rem;
         padding: 0.25rem 0 0.5rem 0; border-bottom: 1px solid var(--border-color-primary);}
#header h1 {margin: 0; font-size: 1.7rem; font-weight: 700;}
#header p {margin: 0.2rem 0 0 0; color: var(--body-text-color-subdued);}
#device-badge {white-space: nowrap; font-size: 0.85rem; padding: 0.25rem 0.7rem;
               border-radius: 999px; background: var(--background-fill-secondary);
               border: 1px solid var(--border-color-primary);}
#status {min-height: 1.5rem;}
#run {font-size: 1.05rem;}
#results .caption-label {white-space: normal; overflow: visible; text-overflow: clip;
                         font-size: 0.72rem; line-height: 1.2; max-width: calc(100% - 8px);}
#legend {display: flex; align-items: center; gap: 0.5rem; font-size: 0.8rem;
         color: var(--body-text-color-subdued);}
#legend img {height: 12px; flex: 1; min-width: 60px; border-radius: 3px;}
"""


def example_files() -> list[Path]:
    """The example pictures in assets/, composite (two objects) first."""
    files = sorted(ASSETS.glob("*.jpg"), key=lambda p: (p.stem != "cat_and_coffee", p.stem))
    return files


def _example_label(path: Path) -> str:
    return path.stem.replace("_", " ").replace("and", "+")


def legend_html(colormap: str) -> str:
    """A colour bar for the chosen colormap: low → high."""
    buffer = io.BytesIO()
    rendering.colorbar(colormap, width=256, height=12).save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (f"<div id='legend'><span>low</span><img alt='{colormap} colour scale' "
            f"src='data:image/png;base64,{data}'><span>high</span></div>")


# --------------------------------------------------------------------------------------------
# "How faithful is this?": deletion / insertion, Average Drop, sanity check (on request)
# --------------------------------------------------------------------------------------------

FAITHFULNESS_STEPS = 50
FAITHFULNESS_PASSES = 2 * (FAITHFULNESS_STEPS + 1) + 2  # per map: deletion, insertion, drop
SANITY_STAGES = 6
FAITHFULNESS_HEADERS = ["method", "class", "deletion AUC ↓", "insertion AUC ↑",
                        "drop in confidence % ↓", "confidence increases"]


def _explained(result: Result | str | None) -> Result:
    result = stored(result)
    if result is None:
        raise UserError("Explain an image first: the metrics measure the maps shown.")
    if result.counterfactual:
        raise UserError("The metrics measure evidence for a class; switch “Why not?” off and "
                        "explain again.")
    return result


@friendly_errors("measure faithfulness")
def measure_faithfulness(result: Result | str | None,
                         progress: gr.Progress = gr.Progress()) -> tuple:
    """Deletion and insertion curves (one plot per method family) and a table of the areas,
    Average Drop and Increase in Confidence, for every map of the current result."""
    result = _explained(result)
    classifier = get_model(result.model)
    keys = [(m, t) for t in result.targets for m in result.methods if (m, t) in result.tiles]
    budget.check_estimate(len(keys) * FAITHFULNESS_PASSES * PASS_TIMES.seconds(classifier),
                          MAX_REQUEST_SECONDS, f"Measuring {len(keys)} maps",
                          "Explain fewer methods or classes first.")
    deadline = budget.Deadline(MAX_REQUEST_SECONDS)
    try:
        with ENGINE_SLOTS:
            return _faithfulness(result, classifier, keys, deadline, progress)
    finally:
        release_memory()


def _faithfulness(result: Result, classifier: models.Classifier, keys: list[tuple[str, int]],
                  deadline: budget.Deadline, progress: Callable[..., Any]) -> tuple:
    rows, curves = [], {}
    for done, (method, target) in enumerate(keys):
        checkpoint(deadline)
        title = explainers.METHODS[method].title
        progress(done / len(keys), desc=f"{title} · {result.labels[target]}")
        saliency = [result.tiles[(method, target)].map]
        paths = metrics.deletion_insertion(classifier, result.inputs, saliency, [target],
                                           steps=FAITHFULNESS_STEPS)
        change = metrics.confidence_change(classifier, result.inputs, saliency, [target])
        curves.setdefault(method, []).append((paths.deletion[0], paths.insertion[0]))
        rows.append([title, result.labels[target], round(float(paths.deletion_auc[0]), 3),
                     round(float(paths.insertion_auc[0]), 3), round(change.average_drop, 1),
                     "yes" if change.increase_in_confidence > 0 else "no"])
    mean_curves = {m: tuple(np.mean(np.stack(parts), axis=0) for parts in zip(*pairs))
                   for m, pairs in curves.items()}
    figure = plots.curves_figure(paths.fractions, mean_curves,
                                 {m: explainers.METHODS[m].kind for m in mean_curves},
                                 {m: explainers.METHODS[m].title for m in mean_curves},
                                 title=f"Mean of {len(result.targets)} class(es) · "
                                       f"{FAITHFULNESS_STEPS} steps of {100 / FAITHFULNESS_STEPS:g} %")
    return figure, gr.Dataframe(value=rows, headers=FAITHFULNESS_HEADERS)


@friendly_errors("run the sanity check")
def sanity_check(result: Result | str | None, method: str | None,
                 progress: gr.Progress = gr.Progress()) -> tuple:
    """Adebayo et al.'s cascading randomisation for one method on the current image and class:
    a map that does not change when the model's weights are randomised explains the image, not
    the model."""
    result = _explained(result)
    if method not in result.methods:
        raise UserError("Choose one of the methods of the current result.")
    classifier = get_model(result.model)
    target = result.targets[0]
    title = explainers.METHODS[method].title
    passes = (SANITY_STAGES + 1) * layer_passes(classifier, result.layer, [method], 1)
    budget.check_estimate(passes * PASS_TIMES.seconds(classifier), MAX_REQUEST_SECONDS,
                          f"The sanity check of {title}", "Choose a faster method.")
    deadline = budget.Deadline(MAX_REQUEST_SECONDS)

    def report(fraction: float) -> None:
        checkpoint(deadline)
        progress(fraction, desc=f"{title}: randomised stage")

    progress(0, desc=f"Randomising {result.model} layer by layer")
    try:
        with ENGINE_SLOTS:
            sanity = metrics_sanity.cascading_randomisation(
                classifier, result.inputs, [method], [target], layer=result.layer,
                stages=SANITY_STAGES, progress=report)
    finally:
        release_memory()
    figure = plots.sanity_figure(sanity.randomised, sanity.stages, {method: sanity.mean(method)},
                                 sanity.threshold, {method: title},
                                 title=f"{title} · {result.labels[target]}")
    verdict = "fails" if sanity.fails(method) else "passes"
    note = (f"**{title} {verdict} the sanity check** for *{result.labels[target]}*: with all "
            f"{sanity.randomised[-1]} parameter layers randomised, its map's Spearman correlation "
            f"with the trained model's map is {sanity.final(method):.2f} (it fails above "
            f"{sanity.threshold:g}: a map that survives randomisation shows the image, not the model).")
    return figure, note


def sanity_methods(result: Result | str | None) -> Any:
    """The sanity check's method choices: the methods of the current result."""
    result = stored(result, missing_ok=True)
    methods = result.methods if result else []
    return gr.Dropdown(choices=[(explainers.METHODS[m].title, m) for m in methods],
                       value=methods[0] if methods else None)



def build_app() -> gr.Blocks:
    """Build the Gradio Blocks UI (not launched). Loads the default model once."""
    scratch_folder()  # Gradio's cache goes into it: claimed before any Block is built
    classifier = get_model(DEFAULT_MODEL)
    available = method_availability(classifier, classifier.default_layer)
    model_names = [name for _, name in model_choices()]
    first_methods = default_methods(available)
    listed = frozenset(model_names)
    policy = upload_policy()

    def web(fn: Callable) -> Callable:
        return for_the_web(fn, listed, policy)

    explain_web = web(explain_image)

    with gr.Blocks(title="Why did the model say that? · Visual explanations",
                   analytics_enabled=False) as demo:
        gr.HTML(
            "<div id='header'><div><h1>Why did the model say that?</h1>"
            "<p>See which pixels made an ImageNet classifier choose a class: 15 explanation "
            "methods (Grad-CAM, Score-CAM, Integrated Gradients, …) side by side.</p></div>"
            f"<div id='device-badge'>Running on {device_summary()}</div></div>")
        state = gr.State(None, time_to_live=RESULTS_MAX_AGE_S)  # a key of RESULTS
        with gr.Row(equal_height=False):
            # ---------------- inputs ----------------
            with gr.Column(scale=4, min_width=360):
                image = components.ImageInput(label="Image: upload, paste or webcam", type="filepath",
                                 sources=["upload", "clipboard", "webcam"], height=260,
                                 elem_id="input-image")
                examples = gr.Examples(examples=[[str(p)] for p in example_files()], inputs=[image],
                                       example_labels=[_example_label(p) for p in example_files()],
                                       label="Examples (click to run)", examples_per_page=8,
                                       elem_id="examples")
                with gr.Group():
                    model = gr.Dropdown(choices=model_choices(),
                                        value=DEFAULT_MODEL if DEFAULT_MODEL in model_names
                                        else model_names[0],
                                        label="Model", elem_id="model")
                    layer = gr.Dropdown(choices=layer_choices(classifier),
                                        value=classifier.default_layer,
                                        label="Layer (for CAM methods; default: last before pooling)",
                                        elem_id="layer")
                methods = gr.CheckboxGroup(choices=method_choices(available), value=first_methods,
                                           label="Methods", elem_id="methods",
                                           info="“slow” methods run the network many times "
                                                "(a progress bar shows)")
                note = gr.Markdown(availability_note(available), elem_id="method-note")
                with gr.Row(equal_height=True):
                    top_k = gr.Slider(0, MAX_CLASSES, value=DEFAULT_TOP_K, step=1,
                                      label="Top-k predictions to explain", elem_id="topk", scale=3)
                    counterfactual = gr.Checkbox(False, label="Why not?", elem_id="counterfactual",
                                                 info="counterfactual maps", scale=2)
                classes = gr.Dropdown(choices=class_choices(classifier), value=[], multiselect=True,
                                      max_choices=MAX_CLASSES, filterable=True,
                                      label="…and/or these classes",
                                      info="Type part of a name, e.g. “tabby” or “espresso”",
                                      elem_id="classes")
                run = gr.Button("Explain", variant="primary", size="lg", elem_id="run")
            # ---------------- results ----------------
            with gr.Column(scale=7, min_width=480):
                status = gr.Markdown("Pick an image (or click an example) and press **Explain**.",
                                     label="Status", elem_id="status")
                with gr.Row(equal_height=False):
                    predictions = gr.Label(label="Predictions", elem_id="predictions", scale=3)
                    with gr.Column(scale=2, min_width=240, variant="panel"):
                        colormap = gr.Dropdown(choices=rendering.colormaps(), value=DEFAULT_COLORMAP,
                                               label="Colormap", elem_id="colormap")
                        legend = gr.HTML(legend_html(DEFAULT_COLORMAP))
                        opacity = gr.Slider(0, 1, value=DEFAULT_OPACITY, step=0.05,
                                            label="Overlay opacity", elem_id="opacity")
                        shared = gr.Checkbox(False, label="One scale across classes",
                                             info="per method, so class maps compare",
                                             elem_id="shared-scale")
                with gr.Tabs():
                    with gr.Tab("Maps"):
                        gallery = gr.Gallery(label="Maps: one row per class, one column per "
                                                   "method (click to enlarge)",
                                             columns=len(first_methods) + 1, height="auto",
                                             object_fit="contain", format="png",
                                             allow_preview=True, interactive=False,
                                             buttons=["download", "fullscreen"], elem_id="results")
                    with gr.Tab("Grid image"):
                        grid = gr.Image(label="All maps in one image", type="pil", format="png",
                                        interactive=False, elem_id="grid")
                download = gr.File(label="Download everything (zip: overlays, grid, raw maps, "
                                         "predictions)", interactive=False,
                                   elem_id="download")
                prepare = gr.Button("Prepare the download in these colours", visible=False,
                                    size="sm", elem_id="prepare-download")
                with gr.Accordion("How faithful is this?", open=False, elem_id="faithfulness"):
                    gr.Markdown(
                        "**Deletion** removes the most salient pixels first (set to the zero "
                        "baseline, the mean colour) and follows the class probability: a faithful "
                        "map makes it fall fast (small area). **Insertion** puts them back into a "
                        "blurred image: it should rise fast (large area). **Drop in confidence**: "
                        "how much the probability falls when the image is multiplied by the map "
                        "(Grad-CAM++ paper's Average Drop). The **sanity check** randomises the "
                        "model's weights from the top layer down: the map should change.")
                    measure = gr.Button("Measure faithfulness", elem_id="measure")
                    curves_plot = gr.Plot(label="Deletion and insertion", elem_id="curves")
                    faithfulness_table = gr.Dataframe(headers=FAITHFULNESS_HEADERS,
                                                      interactive=False, elem_id="faithfulness-table")
                    with gr.Row(equal_height=True):
                        sanity_method = gr.Dropdown(choices=[], label="Method to sanity-check",
                                                    elem_id="sanity-method", scale=3)
                        sanity = gr.Button("Sanity check", elem_id="sanity", scale=1)
                    sanity_note = gr.Markdown(elem_id="sanity-note")
                    sanity_plot = gr.Plot(label="Cascading randomisation", elem_id="sanity-plot")
        with gr.Accordion("What do these methods mean?", open=False, elem_id="methods-help"):
            gr.Markdown(methods_help())
            gr.Markdown("Maps are computed on the centre crop the model actually sees (the "
                        "*Input* tile). CAM-family methods look at the chosen layer; gradient "
                        "methods at the pixels. “Why not?” shows the evidence against a class.")

        explain_inputs = [image, model, layer, methods, top_k, classes, counterfactual,
                          colormap, opacity, shared]
        explain_out = [gallery, predictions, download, status, grid, state]
        layout = dict(fn=gallery_layout, inputs=[state], outputs=[gallery], queue=False,
                      api_visibility="private")
        run.click(explain_web, explain_inputs, explain_out, api_name="explain",
                  preprocess=False, concurrency_id="engine").success(**layout)
        state.change(sanity_methods, [state], [sanity_method], queue=False, api_visibility="private")
        measure.click(measure_faithfulness, [state], [curves_plot, faithfulness_table],
                      concurrency_id="engine", api_visibility="private")
        sanity.click(sanity_check, [state, sanity_method], [sanity_plot, sanity_note],
                     concurrency_id="engine", api_visibility="private")
        examples.load_input_event.then(explain_web, explain_inputs, explain_out,
                                       preprocess=False, concurrency_id="engine",
                                       api_visibility="private").success(**layout)
        image.upload(web(on_upload), [image], [image], preprocess=False, api_visibility="private",
                     concurrency_id="render", concurrency_limit=4, show_progress="hidden")
        model.change(web(on_model_change), [model],
                     [layer, methods, classes, note],
                     api_visibility="private", concurrency_id="models")
        layer.change(web(on_layer_change), [model, layer, methods],
                     [methods, note],
                     api_visibility="private", concurrency_id="models")
        display_in = [state, colormap, opacity, shared]
        display_out = [gallery, grid, download, prepare]
        render_events = dict(api_visibility="private", concurrency_id="render",
                             concurrency_limit=4, show_progress="minimal")
        colormap.change(rerender, display_in, display_out, **render_events)
        colormap.change(legend_html, [colormap], [legend], api_visibility="private", queue=False)
        opacity.change(rerender, display_in, display_out, trigger_mode="always_last",
                       **render_events)
        shared.change(rerender, display_in, display_out, **render_events)
        prepare.click(prepare_download, [state], [download, prepare], **render_events)
        run.click(lambda: gr.Button(visible=False), None, [prepare], queue=False,
                  api_visibility="private")
    scratch_folder().keep(path for block in demo.blocks.values()  # the examples' copies
                          for path in getattr(block, "keep_in_cache", ()))
    demo.queue(default_concurrency_limit=ENGINE_CONCURRENCY, max_size=QUEUE_SIZE)
    queue_policy.limit_per_client(demo._queue, PER_SESSION, PER_ADDRESS)
    return demo


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           **kwargs: Any) -> Any:
    """Launch with the app's theme, CSS and limits: upload size, request bodies, blocked routes,
    sessions kept (Gradio 6 takes them in launch())."""
    limits = Middleware(RequestLimits, max_body_bytes=MAX_BODY_BYTES,
                        around_upload=functools.partial(tidy, demo))
    return demo.launch(server_name=host, server_port=port, share=share,
                       max_file_size=MAX_FILE_BYTES, theme=gr.themes.Soft(primary_hue="indigo"),
                       css=CSS, footer_links=["api"], show_error=False,
                       state_session_capacity=SESSIONS, app_kwargs={"middleware": [limits]},
                       **kwargs)


def _libc() -> Any:
    """glibc, or None where the C library is another one."""
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


LIBC = _libc()


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (like MALLOC_ARENA_MAX=2): Gradio runs handlers on many worker
    threads and each would otherwise keep its own arena of freed tensor memory, so a busy server's
    memory would creep up. False where the host chose already or the C library is not glibc."""
    if os.environ.get("MALLOC_ARENA_MAX") or LIBC is None:
        return False
    return bool(LIBC.mallopt(M_ARENA_MAX, arenas))


def release_memory() -> None:
    """Give the memory freed by a run back to the system (glibc malloc_trim; no-op elsewhere)."""
    if LIBC is not None:
        LIBC.malloc_trim(0)


def main(argv: list[str] | None = None) -> None:
    """Command line: python app.py [--host H] [--port P] [--share]."""
    parser = argparse.ArgumentParser(description="Visual explanations of ImageNet classifiers "
                                                 "(Gradio web app).")
    # Hosts such as Hugging Face Spaces say where to listen through Gradio's own variables.
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to listen on (default 127.0.0.1, or $GRADIO_SERVER_NAME; "
                             "0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                        help="port (default 7860, or $GRADIO_SERVER_PORT)")
    parser.add_argument("--share", action="store_true", help="also create a public Gradio share link")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limit_malloc_arenas()
    # SIGTERM (docker stop, a host's restart) exits like Ctrl+C: the scratch folder is removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    launch(build_app(), host=args.host, port=args.port, share=args.share)


if __name__ == "__main__":
    main()
