"""Where the model's input lies in the original image: boxes and points between the two frames.

models.Preprocessing resizes the shorter side to `resize` (the longer one to int(resize x long /
short)) and centre-crops `crop_size`; the same arithmetic, inverted, maps a box found on a map
(input pixels) back to the photo, and a ground-truth box (photo pixels) onto the map.
"""

from __future__ import annotations

from dataclasses import dataclass

from models import Preprocessing

from ..localisation import Box


@dataclass(frozen=True)
class CropGeometry:
    """input = original x scale - offset, per axis."""

    scale_x: float
    scale_y: float
    left: int
    top: int
    input_size: tuple[int, int]  # (H, W)

    @classmethod
    def of(cls, preprocessing: Preprocessing, original_size: tuple[int, int]) -> CropGeometry:
        """The geometry of `preprocessing` on an image of original_size (W, H)."""
        width, height = original_size
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = preprocessing.resize, int(preprocessing.resize * long / short)
        new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
        crop_h, crop_w = preprocessing.crop_size
        return cls(
            new_w / width,
            new_h / height,
            int(round((new_w - crop_w) / 2.0)),
            int(round((new_h - crop_h) / 2.0)),
            (crop_h, crop_w),
        )

    def to_original(self, box: Box) -> Box:
        """A box in input pixels as a box in original pixels."""
        x0, y0, x1, y1 = box
        return (
            (x0 + self.left) / self.scale_x,
            (y0 + self.top) / self.scale_y,
            (x1 + self.left) / self.scale_x,
            (y1 + self.top) / self.scale_y,
        )

    def point_to_original(self, point: tuple[float, float]) -> tuple[float, float]:
        """A point in input pixels as a point in original pixels."""
        return (point[0] + self.left) / self.scale_x, (point[1] + self.top) / self.scale_y

    def to_input(self, box: Box) -> Box:
        """A box in original pixels as a box in input pixels, clipped to the input (may be empty)."""
        height, width = self.input_size
        x0, y0, x1, y1 = (
            box[0] * self.scale_x - self.left,
            box[1] * self.scale_y - self.top,
            box[2] * self.scale_x - self.left,
            box[3] * self.scale_y - self.top,
        )
        return (
            min(max(x0, 0.0), width),
            min(max(y0, 0.0), height),
            min(max(x1, 0.0), width),
            min(max(y1, 0.0), height),
        )
