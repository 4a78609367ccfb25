"""Image preprocessing with PIL + numpy: any mode to RGB, resize, crop (timm's crop modes), normalise."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .errors import ModelError
from .orientation import drop_orientation_metadata, orientation, upright

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
_STRIP_PIXELS = 1 << 18  # pixels of a high bit-depth image converted at a time


def to_rgb(image: Image.Image) -> Image.Image:
    """Return an 8-bit RGB copy of any PIL image (EXIF rotation applied, transparency on white).

    The orientation is read by models.orientation (never PIL's EXIF parser), and the copy carries
    no EXIF or XMP, so converting it again does not turn it again.
    """
    if not isinstance(image, Image.Image):
        raise ModelError(f"Expected a PIL image, got {type(image).__name__}.")
    image.load()  # a PNG may store its EXIF after the pixels
    turn = orientation(image)
    if image.mode in ("I", "F") or image.mode.startswith("I;"):
        image = _high_depth_to_l(image)
    image = upright(image, turn)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    rgb = image.convert("RGB")
    drop_orientation_metadata(rgb)
    return rgb


def _high_depth_to_l(image: Image.Image) -> Image.Image:
    """Scale a 16/32-bit integer or float grayscale image to 8-bit "L", a strip of rows at a time.

    Integers: value / 257 (65535 -> 255); floats: x 255 when the largest value is at most 1, else
    as they are; NaN -> 0; clipped to 0..255, rounded. Besides the result, one strip in memory.
    """
    width, height = image.size
    rows = max(1, _STRIP_PIXELS // max(width, 1))
    strips = [(top, min(top + rows, height)) for top in range(0, height, rows)]

    def values(top: int, bottom: int) -> np.ndarray:
        return np.asarray(image.crop((0, top, width, bottom)))

    if image.mode == "F":
        peak = np.nan
        for top, bottom in strips:
            peak = np.fmax(peak, np.fmax.reduce(values(top, bottom), axis=None, initial=np.nan))
        scale = 255.0 if peak <= 1.0 else 1.0

        def to_8bit(strip: np.ndarray) -> np.ndarray:
            return np.clip(np.nan_to_num(strip.astype(np.float64) * scale), 0, 255).round()
    else:

        def to_8bit(strip: np.ndarray) -> np.ndarray:
            return (np.clip(strip, 0, 65535).astype(np.uint32) + 128) // 257

    result = Image.new("L", image.size)
    for top, bottom in strips:
        result.paste(Image.fromarray(to_8bit(values(top, bottom)).astype(np.uint8), "L"), (0, top))
    return result


CROP_MODES = ("center", "squash", "border")


@dataclass(frozen=True)
class Preprocessing:
    """Resize, crop to `crop_size` (H, W), normalise; timm's three evaluation crop modes.

    crop_mode "center": the shorter side to `resize`, then a centre crop (torchvision's and timm's
    default); "squash": both sides to `resize` (scaled by the crop's aspect), then a centre crop
    (aspect ratio not kept); "border": the longer side to `resize`, then a centre crop that pads
    with the mean colour where the image is too small (nothing cut off when resize = crop).
    """

    resize: int
    crop_size: tuple[int, int]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    crop_mode: str = "center"

    def __post_init__(self) -> None:
        if self.interpolation not in _RESAMPLING:
            raise ModelError(f"Unknown interpolation {self.interpolation!r}; use one of {sorted(_RESAMPLING)}.")
        if self.crop_mode not in CROP_MODES:
            raise ModelError(f"Unknown crop mode {self.crop_mode!r}; use one of {list(CROP_MODES)}.")
        if self.resize < max(self.crop_size) and self.crop_mode != "border":
            raise ModelError(f"Resize {self.resize} is smaller than the crop {self.crop_size}.")

    @classmethod
    def from_crop_pct(
        cls, crop_size: tuple[int, int], crop_pct: float, mean, std, interpolation: str, crop_mode: str = "center"
    ) -> Preprocessing:
        """timm-style: resize to floor(size / crop_pct) (as `crop_mode` says), then crop `crop_size`."""
        return cls(
            math.floor(max(crop_size) / crop_pct),
            (int(crop_size[0]), int(crop_size[1])),
            tuple(mean),
            tuple(std),
            interpolation,
            crop_mode or "center",
        )

    def _resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(W, H) after the resize step, for an image of (width, height)."""
        crop_h, crop_w = self.crop_size
        if self.crop_mode == "squash":
            return (
                math.floor(self.resize * crop_w / max(self.crop_size)),
                math.floor(self.resize * crop_h / max(self.crop_size)),
            )
        if self.crop_mode == "border":  # timm's ResizeKeepRatio(longest=1)
            target_h = self.resize * crop_h / max(self.crop_size)
            target_w = self.resize * crop_w / max(self.crop_size)
            ratio = max(height / target_h, width / target_w)
            return round(width / ratio), round(height / ratio)
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.resize, int(self.resize * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)

    def crop(self, image: Image.Image) -> Image.Image:
        """The RGB image resized and cropped (or padded, "border") exactly as the model sees it."""
        image = to_rgb(image)
        size = self._resized_size(*image.size)
        if size != image.size:
            image = image.resize(size, _RESAMPLING[self.interpolation])
        crop_h, crop_w = self.crop_size
        if size[0] < crop_w or size[1] < crop_h:  # "border": pad with the mean colour, as timm does
            fill = tuple(round(255 * v) for v in self.mean)
            padded = Image.new("RGB", (max(size[0], crop_w), max(size[1], crop_h)), fill)
            padded.paste(
                image,
                (
                    (crop_w - size[0]) // 2 if crop_w > size[0] else 0,
                    (crop_h - size[1]) // 2 if crop_h > size[1] else 0,
                ),
            )
            image, size = padded, padded.size
        top = int(round((size[1] - crop_h) / 2.0))
        left = int(round((size[0] - crop_w) / 2.0))
        return image.crop((left, top, left + crop_w, top + crop_h))

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """The normalised float32 tensor [1, 3, H, W] (CPU) for one image."""
        return self.tensor(self.crop(image))

    def tensor(self, crop: Image.Image) -> torch.Tensor:
        """The normalised float32 tensor [1, 3, H, W] (CPU) of an image crop() made already (so
        that a caller who shows the crop resizes the photo once)."""
        pixels = np.asarray(crop.convert("RGB"), dtype=np.float32) / 255.0
        normalised = (pixels - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))[None]
