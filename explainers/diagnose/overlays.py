"""Pictures for the report: the model's view of an image, and each map over it with its boxes.

The map's box (the paper's 15 % rule) is drawn in white, ground-truth boxes in green, both in the
input's pixels (the crop the model sees). Files are named by the image's id, never by its name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import ImageDraw

import models

from .. import localisation as loc
from .. import rendering
from .geometry import CropGeometry
from .store import file_id

FOLDER = "overlays"
MAP_BOX = (255, 255, 255)
TRUTH_BOX = (0, 220, 0)
QUALITY = 85


def render(
    out: Path, record: dict, path: Path, model: models.Classifier, maps: dict[str, np.ndarray], threshold: float
) -> dict[str, str]:
    """Write (once) the input crop and each map's overlay; their paths relative to `out` by key
    ("input", "method/class"). An empty dict when the image cannot be read any more."""
    ident = file_id(record["file"])
    names = {"input": f"{FOLDER}/{ident}_input.jpg"}
    names |= {key: f"{FOLDER}/{ident}_{key.replace('/', '_')}.jpg" for key in maps}
    if all((out / name).exists() for name in names.values()):
        return names
    try:
        image = models.open_image(path, name=record["file"])
    except models.ModelError:
        return {}
    (out / FOLDER).mkdir(exist_ok=True)
    crop = model.crop(image)
    geometry = CropGeometry.of(model.preprocessing, image.size)
    truth = [geometry.to_input(box) for box in record.get("boxes", [])]
    crop.save(out / names["input"], quality=QUALITY)
    for key, saliency in maps.items():
        picture = rendering.overlay(crop, saliency)
        draw = ImageDraw.Draw(picture)
        for box in truth:
            _rectangle(draw, box, TRUTH_BOX)
        map_box = loc.box_from_map(saliency, threshold)
        if map_box is not None:
            _rectangle(draw, map_box, MAP_BOX)
        picture.save(out / names[key], quality=QUALITY)
    return names


def _rectangle(draw: ImageDraw.ImageDraw, box: loc.Box, colour: tuple[int, int, int]) -> None:
    """A 2-pixel frame inside the box's edges, on a dark outline so that it shows on any colour."""
    x0, y0, x1, y1 = box
    if x1 - x0 < 1 or y1 - y0 < 1:
        return
    draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=(0, 0, 0), width=3)
    draw.rectangle((x0 + 1, y0 + 1, x1 - 2, y1 - 2), outline=colour, width=1)
