"""One archive layout for an explained image, written by the command line (a folder) and the
web app (a zip of the same files)::

    <stem>_input.png                       the centre crop the model saw
    <stem>_<method>_<key>-<label>.png      one overlay per (method, target, "why not"), on that crop
    <stem>_<method>_<key>-<label>_photo.jpg     the same map on the whole photo (when given)
    <stem>_grid.png                        rows = targets (each "why not" row under its class's),
                                           columns = the input + one per method
    <stem>_maps.npz                        "<method>[-cf]/<key>/map" ([0, 1]) and ".../raw"
    <stem>.json                            model, layer, device, predictions, maps, display

``<method>`` is the method's name with "+" spelled "p" (gradcam++ -> gradcampp) and "-cf" added
for "why not" maps; ``<stem>`` is the image's file name without its suffix, made safe. ``<key>``
names the target (target_key): the class index ("281"), "contrast-281-967" for "tabby rather than
espresso", "set-dog" for a named class set; ``<label>`` is its name for a person, made safe.
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from models import Preprocessing

from . import rendering
from .methods import method_info
from .targets import ClassSet, Contrast, Target

MAX_PHOTO_SIDE = 2048  # whole-photo overlays are drawn at the photo's size, up to this long side


class MapLike(Protocol):
    """What the export needs of one map (explainers.SaliencyMap has it)."""

    method: str
    target: Target
    counterfactual: bool
    map: np.ndarray
    raw: np.ndarray
    probability: float
    seconds: float


@dataclass(frozen=True)
class Display:
    """How maps are drawn: colormap, overlay opacity, one scale per method across classes."""

    colormap: str = "jet"
    opacity: float = 0.5
    shared_scale: bool = False


@dataclass
class Explained:
    """One image's explanation, everything the export writes.

    ``photo`` and ``photo_box`` (the crop's box in the photo's pixels, see :func:`photo_box`)
    are optional: with them, every map is also drawn on the whole photo.
    """

    name: str
    model: str
    layer: str | None
    device: str
    input_size: tuple[int, int]
    crop: Image.Image
    labels: Sequence[str]
    methods: list[str]
    targets: list[Target]
    probabilities: Mapping[Target, float]
    predictions: list[tuple[int, float]]
    maps: Sequence[MapLike]
    counterfactual: bool = False
    photo: Image.Image | None = None
    photo_box: tuple[float, float, float, float] | None = None

    def get(self, method: str, target: Target, counterfactual: bool = False) -> MapLike | None:
        """The map of ``method`` for ``target`` (a class, Contrast or ClassSet), its "why not"
        map with ``counterfactual``, or None."""
        return next((m for m in self.maps if tile_key(m) == (method, target, counterfactual)), None)

    def rows(self) -> list[tuple[Target, bool]]:
        """The grid's rows as (target, counterfactual): each target's row of maps, then its
        "why not" row right under it, each only when it has maps."""
        drawn = {(m.target, bool(m.counterfactual)) for m in self.maps}
        return [(t, cf) for t in self.targets for cf in (False, True) if (t, cf) in drawn]


TileKey = tuple[str, Target, bool]  # (method, target, counterfactual): one map of an explanation


def tile_key(m: MapLike) -> TileKey:
    """The key of one map: its method, its target and whether it is a "why not" map."""
    return (m.method, m.target, bool(m.counterfactual))


def safe_name(text: str, fallback: str = "x") -> str:
    """Letters, digits, '.', '-' and '_' only; '+' spelled 'p' (gradcam++ -> gradcampp)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text).replace("+", "p")).strip("._")
    return name[:80] or fallback


def stem_of(name: str) -> str:
    """The file-name stem for an image called ``name`` ("cat and coffee.jpg" -> "cat_and_coffee")."""
    return safe_name(Path(str(name)).stem, "image")


def as_target(target: Any) -> Target:
    """A map's target as the export keys it: a class index as a plain int (numpy's too), a
    Contrast or ClassSet as it is."""
    return target if isinstance(target, (Contrast, ClassSet)) else int(target)


def target_key(target: Target) -> str:
    """A stable, file-safe key for a target: "281", "contrast-281-967", "set-dog" (a named class
    set) or "set-281-282" (an unnamed one)."""
    if isinstance(target, Contrast):
        return f"contrast-{target.a}-{target.b}"
    if isinstance(target, ClassSet):
        return "set-" + safe_name(target.name or "-".join(map(str, target.classes)))
    return str(int(target))


def target_label(target: Target, labels: Sequence[str]) -> str:
    """A target's name for a person: "tabby", "tabby rather than espresso", "dog"."""
    if isinstance(target, (Contrast, ClassSet)):
        return target.label(labels)
    return labels[int(target)]


def map_key(m: MapLike) -> str:
    """The npz key prefix of a map: "gradcam/281", "gradcam-cf/281" for a "why not" map,
    "gradcam/contrast-281-967" for a contrast."""
    return f"{m.method}{'-cf' if m.counterfactual else ''}/{target_key(m.target)}"


def overlay_name(stem: str, m: MapLike, labels: Sequence[str], photo: bool = False) -> str:
    """The overlay's file name: "<stem>_<method>_<key>-<label>.png", or "..._photo.jpg" on the
    whole photo (a photograph: JPEG keeps the archive small)."""
    method = safe_name(m.method) + ("-cf" if m.counterfactual else "")
    suffix = "_photo.jpg" if photo else ".png"
    label = safe_name(target_label(m.target, labels), "class")
    return f"{stem}_{method}_{target_key(m.target)}-{label}{suffix}"


def photo_box(preprocessing: Preprocessing, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """The box (left, top, right, bottom) of a photo of ``size`` (W, H) that ``preprocessing``
    (models.Preprocessing: shorter side resized, centre crop) keeps: the model's whole input
    mapped back to the photo (explainers.diagnose.geometry.CropGeometry)."""
    from .diagnose.geometry import CropGeometry  # here: explainers.diagnose imports the CLI

    height, width = preprocessing.crop_size
    return CropGeometry.of(preprocessing, size).to_original((0, 0, width, height))


def fit_photo(
    photo: Image.Image, box: tuple[float, float, float, float]
) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """The RGB photo with its long side at most MAX_PHOTO_SIDE, and the crop's box in it. A larger
    photo is reduced by the smallest whole factor that fits (each pixel the mean of a factor x
    factor block): 28 ms for a 12-megapixel phone photo, against 290 ms for a Lanczos resize to
    exactly MAX_PHOTO_SIDE. A photo that fits is returned as it is (converted when not RGB)."""
    if photo.mode != "RGB":
        photo = photo.convert("RGB")
    factor = math.ceil(max(photo.size) / MAX_PHOTO_SIDE)
    if factor > 1:
        photo = photo.reduce(factor)  # a last partial block is the mean of what it holds
    left, top, right, bottom = (v / factor for v in box)
    return photo, (left, top, right, bottom)


def display_maps(explained: Explained, shared: bool) -> dict[TileKey, np.ndarray]:
    """The [0, 1] map to draw per tile_key: each on its own scale, or one scale per method (and
    per kind: maps for and "why not" maps) across classes (raw values of different methods are
    in different units)."""
    if not shared:
        return {tile_key(m): m.map for m in explained.maps}
    out = {}
    for method in explained.methods:
        for counterfactual in (False, True):
            group = [m for m in explained.maps if (m.method, bool(m.counterfactual)) == (method, counterfactual)]
            for m, scaled in zip(group, rendering.shared_scale([m.raw for m in group])):
                out[tile_key(m)] = scaled
    return out


def draw_overlays(explained: Explained, display: Display) -> dict[TileKey, Image.Image]:
    """Every map over the crop the model saw, keyed by tile_key."""
    maps = display_maps(explained, display.shared_scale)
    return {
        key: rendering.overlay(explained.crop, saliency, display.colormap, display.opacity)
        for key, saliency in maps.items()
    }


def draw_on_photo(explained: Explained, display: Display) -> Iterator[tuple[TileKey, Image.Image]]:
    """Every map over the whole photo at its resolution (long side at most MAX_PHOTO_SIDE): the
    map is mapped back through the resize and crop into the part of the photo the model saw;
    the rest of the photo is left as it is. (tile_key, picture) one at a time (a picture of
    up to 2048 px each: save it before drawing the next); none without a photo."""
    if explained.photo is None or explained.photo_box is None:
        return
    photo, photo_box = fit_photo(explained.photo, explained.photo_box)
    left, top, right, bottom = (int(round(v)) for v in photo_box)
    region = photo.crop((left, top, right, bottom))
    for key, saliency in display_maps(explained, display.shared_scale).items():
        picture = photo.copy()
        picture.paste(rendering.overlay(region, saliency, display.colormap, display.opacity), (left, top))
        yield key, picture


def title_of(explained: Explained) -> str:
    """The grid's title: image, model and layer."""
    return f"{explained.name} — {explained.model}, layer {explained.layer or '-'}"


def column_titles(explained: Explained) -> list[str]:
    """One title per method column ("Grad-CAM")."""
    return [method_info(m).title for m in explained.methods]


def row_title(target: Target, labels: Sequence[str], counterfactual: bool = False) -> str:
    """A grid row's title: "281 tabby" for a class, the label alone for a contrast or a set,
    "why not 281 tabby" for a row of "why not" maps."""
    name = target_label(target, labels)
    title = name if isinstance(target, (Contrast, ClassSet)) else f"{target} {name}"
    return f"why not {title}" if counterfactual else title


def draw_grid(explained: Explained, overlays: Mapping[TileKey, Image.Image]) -> Image.Image:
    """The grid image: one row per target and kind (Explained.rows; the input first), one
    column per method."""
    tiles: list[list[Image.Image | None]] = []
    captions: list[list[str]] = []
    rows = explained.rows()
    for target, cf in rows:
        row = [(overlays.get((method, target, cf)), explained.get(method, target, cf)) for method in explained.methods]
        tiles.append([explained.crop, *(tile for tile, _ in row)])
        captions.append([""] + [f"{m.seconds:.2f} s" if m else "" for _, m in row])
    row_labels = [
        f"{row_title(t, explained.labels, cf)}\np = {float(explained.probabilities[t]):.3f}" for t, cf in rows
    ]
    return rendering.grid(
        tiles, row_labels, ["input"] + column_titles(explained), title=title_of(explained), tile_captions=captions
    )


def save_arrays(path: Path, explained: Explained) -> None:
    """The maps as .npz: "<method>[-cf]/<key>/map" ([0, 1]) and ".../raw" (float32)."""
    arrays = {}
    for m in explained.maps:
        arrays[f"{map_key(m)}/map"] = np.asarray(m.map, dtype=np.float32)
        arrays[f"{map_key(m)}/raw"] = np.asarray(m.raw, dtype=np.float32)
    np.savez_compressed(path, allow_pickle=False, **arrays)


def target_fields(target: Target, labels: Sequence[str], index_key: str = "target") -> dict[str, Any]:
    """A target in the json record: {index_key: 281, "label": "tabby"} for a class; for a contrast
    or a set its key as "target" ("contrast-281-967"), its "label", "kind" and "classes"."""
    if isinstance(target, (Contrast, ClassSet)):
        kind = "contrast" if isinstance(target, Contrast) else "class set"
        return {
            "target": target_key(target),
            "label": target_label(target, labels),
            "kind": kind,
            "classes": list(target.classes),
        }
    return {index_key: int(target), "label": labels[int(target)]}


def record(explained: Explained, display: Display, stem: str, photo: bool) -> dict[str, Any]:
    """The json record: what was explained, how, and the file of every map."""
    labels = explained.labels
    maps = [
        {
            "method": m.method,
            **target_fields(m.target, labels),
            "counterfactual": bool(m.counterfactual),
            "probability": round(float(m.probability), 6),
            "seconds": round(float(m.seconds), 4),
            "file": overlay_name(stem, m, labels),
            "key": map_key(m),
            **({"photo_file": overlay_name(stem, m, labels, photo=True)} if photo else {}),
        }
        for m in explained.maps
    ]
    return {
        "image": explained.name,
        "model": explained.model,
        "layer": explained.layer,
        "device": str(explained.device),
        "input_size": list(explained.input_size),
        "predictions": [
            {"class": int(c), "label": labels[c], "probability": round(float(p), 6)} for c, p in explained.predictions
        ],
        "targets": [
            {**target_fields(t, labels, index_key="class"), "probability": round(float(explained.probabilities[t]), 6)}
            for t in explained.targets
        ],
        "methods": list(explained.methods),
        "counterfactual": bool(explained.counterfactual),
        "shared_scale": bool(display.shared_scale),
        "colormap": display.colormap,
        "opacity": display.opacity,
        "maps": maps,
        "input": f"{stem}_input.png",
        "grid": f"{stem}_grid.png",
        "npz": f"{stem}_maps.npz",
    }


def pictures(explained: Explained, display: Display, stem: str) -> dict[str, Image.Image]:
    """Every picture of the layout by file name: input, overlays (crop and photo), grid."""
    overlays = draw_overlays(explained, display)
    out = {f"{stem}_input.png": explained.crop}
    for m in explained.maps:
        out[overlay_name(stem, m, explained.labels)] = overlays[tile_key(m)]
    for key, picture in draw_on_photo(explained, display):
        drawn = explained.get(*key)
        assert drawn is not None  # draw_on_photo draws the maps of `explained`
        out[overlay_name(stem, drawn, explained.labels, photo=True)] = picture
    out[f"{stem}_grid.png"] = draw_grid(explained, overlays)
    return out


def png_bytes(picture: Image.Image) -> bytes:
    """An 8-bit RGB PNG of ``picture``, encoded for speed: every row's "Up" filter (the
    difference to the row above) and zlib at level 1. About as small as Pillow's PNG at
    compress_level=1 and about twice as fast (Pillow tries filters row by row)."""
    pixels = np.asarray(picture.convert("RGB"), dtype=np.uint8)
    height, width, _ = pixels.shape
    flat = pixels.reshape(height, 3 * width)
    rows = np.empty((height, 1 + 3 * width), np.uint8)
    rows[:, 0] = 2  # filter type Up (the first row's "row above" is zeros)
    rows[0, 1:] = flat[0]
    rows[1:, 1:] = flat[1:] - flat[:-1]  # uint8: wraps mod 256, as PNG wants

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, RGB, deflate, no interlace
    data = zlib.compress(rows.tobytes(), 1)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def save_picture(picture: Image.Image, path: Path) -> None:
    """Save a picture of the layout: PNG (png_bytes: fast) or, for a ".jpg" name, JPEG quality 90."""
    path.write_bytes(picture_bytes(picture, path.name))


def write_folder(out_dir: Path, explained: Explained, display: Display, stem: str | None = None) -> dict[str, Any]:
    """Write the whole layout into ``out_dir`` (which must exist); returns the json record."""
    stem = stem or stem_of(explained.name)
    for name, picture in pictures(explained, display, stem).items():
        save_picture(picture, out_dir / name)
    save_arrays(out_dir / f"{stem}_maps.npz", explained)
    info = record(explained, display, stem, photo=explained.photo is not None)
    (out_dir / f"{stem}.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return info


def picture_bytes(picture: Image.Image, name: str) -> bytes:
    """A picture of the layout encoded as save_picture() saves it under ``name``."""
    if name.endswith(".jpg"):
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=90)
        return buffer.getvalue()
    return png_bytes(picture)


def write_zip(path: Path, files: Mapping[str, Path | bytes], info: Mapping[str, Any], stem: str) -> Path:
    """A zip of the layout (name in the zip -> a file written already, or the bytes of one) and
    the json record; PNG, JPEG and npz are stored as they are (they are compressed already)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, file in files.items():
            if isinstance(file, bytes):
                zf.writestr(name, file, compress_type=zipfile.ZIP_STORED)
            else:
                zf.write(file, name, compress_type=zipfile.ZIP_STORED)
        zf.writestr(
            f"{stem}.json", json.dumps(info, indent=2, ensure_ascii=False) + "\n", compress_type=zipfile.ZIP_DEFLATED
        )
    return path
