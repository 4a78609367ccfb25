"""Rendering of saliency maps: colour maps, overlays, shared scales, grids, legends.

Apart from the maths on purpose: numpy + PIL + matplotlib's colour-map lookup tables only
(no torch, no OpenCV), so the app and the command line can draw without the engine.
Maps are float arrays [H, W] with values in [0, 1]; images are PIL images.
"""

from __future__ import annotations

import functools
import os
import textwrap
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["colormaps", "colorize", "overlay", "shared_scale", "grid", "colorbar", "font"]

# Curated: perceptually uniform ones first after the classic "jet" of the CAM papers.
_COLORMAPS = ("jet", "turbo", "inferno", "magma", "plasma", "viridis", "cividis", "hot", "gray")

_BACKGROUND = (255, 255, 255)
_INK = (20, 20, 20)
_MUTED = (90, 90, 90)


def colormaps() -> list[str]:
    """The colour map names accepted by colorize(), overlay() and colorbar()."""
    return list(_COLORMAPS)


@functools.cache
def _lut(colormap: str) -> np.ndarray:
    """uint8 [256, 3] lookup table of a colour map (matplotlib's, sampled once)."""
    if colormap not in _COLORMAPS:
        raise ValueError(f"unknown colormap {colormap!r}; choose one of: {', '.join(_COLORMAPS)}")
    import matplotlib  # the colour-map registry only; no pyplot, no backend

    rgba = matplotlib.colormaps[colormap](np.linspace(0.0, 1.0, 256))
    lut = np.round(rgba[:, :3] * 255.0).astype(np.uint8)
    lut.setflags(write=False)
    return lut


def _as_map(saliency: np.ndarray) -> np.ndarray:
    """float32 [H, W] in [0, 1]: NaN -> 0, values clipped."""
    s = np.asarray(saliency, dtype=np.float32)
    if s.ndim == 3 and s.shape[0] == 1:
        s = s[0]
    if s.ndim != 2:
        raise ValueError(f"a saliency map must be 2-D [H, W], got shape {tuple(s.shape)}")
    return np.clip(np.nan_to_num(s, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)


def colorize(saliency: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """Colour a map with values in [0, 1] (clipped): uint8 RGB [H, W, 3]; 0 and 1 give the ends."""
    return np.take(_lut(colormap), _levels(saliency), axis=0)


def _levels(saliency: np.ndarray) -> np.ndarray:
    """uint8 [H, W]: a map's values in [0, 1] (clipped) as the 256 levels of a colour map."""
    return np.rint(_as_map(saliency) * np.float32(255.0)).astype(np.uint8)


def _resize_map(saliency: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map to size = (W, H), on float data (PIL mode "F")."""
    s = _as_map(saliency)
    if (s.shape[1], s.shape[0]) == tuple(size):
        return s
    resized = Image.fromarray(np.ascontiguousarray(s)).resize(size, Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def overlay(image: Image.Image, saliency: np.ndarray, colormap: str = "jet", opacity: float = 0.5) -> Image.Image:
    """Alpha-blend the coloured map over the image (RGB, at the image's size).

    The map is resized to the image if needed. opacity 0 gives the image, 1 the heat map; in
    between, (1 - opacity) * image + opacity * heat to within one level (PIL's blend, in C).
    """
    if not 0.0 <= float(opacity) <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    heat = Image.fromarray(_levels(_resize_map(saliency, image.size)), "L").convert("P")
    heat.putpalette(_lut(colormap).tobytes())  # colorize()'s colours, looked up in C
    return Image.blend(image.convert("RGB"), heat.convert("RGB"), float(opacity))


def shared_scale(raw_maps: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Put unnormalised maps on one common [0, 1] scale.

    Negative values are clipped to 0, then every map is divided by the largest value over all
    of them, so the ratio between maps is kept. All-zero input stays zero. float32 copies.
    """
    clipped = [np.clip(np.nan_to_num(np.asarray(m, dtype=np.float32), nan=0.0), 0.0, None) for m in raw_maps]
    peak = max((float(m.max()) for m in clipped if m.size), default=0.0)
    if not np.isfinite(peak) or peak <= 0.0:
        return [np.zeros_like(m) for m in clipped]
    return [m / np.float32(peak) for m in clipped]


@functools.lru_cache(maxsize=32)
def font(size: int = 16, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A TrueType font (DejaVu Sans shipped with matplotlib) at size px, else PIL's default."""
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    candidates = []
    try:
        import matplotlib

        candidates.append(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", name))
    except Exception:  # pragma: no cover - matplotlib is a dependency, but keep drawing anyway
        pass
    candidates += [name, os.path.join("/usr/share/fonts/truetype/dejavu", name)]
    for path in candidates:
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, fnt) -> tuple[int, int]:
    if not text:
        return 0, 0
    left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=fnt, spacing=2)
    return int(right - left), int(bottom - top)  # Pillow types the box as floats; it measures whole pixels


def _wrap(draw: ImageDraw.ImageDraw, text: str, fnt, width: int) -> str:
    """Word-wrap text (keeping its own line breaks) so that each line fits in width px."""
    lines = []
    for paragraph in str(text).split("\n"):
        words = paragraph.split()
        if not words:
            lines.append("")
            continue
        line = words[0]
        for word in words[1:]:
            if _text_size(draw, f"{line} {word}", fnt)[0] <= width:
                line = f"{line} {word}"
            else:
                lines.append(line)
                line = word
        lines.append(line)
    # A single word still too wide: hard-wrap it by characters.
    out = []
    for line in lines:
        if _text_size(draw, line, fnt)[0] <= width or len(line) < 2:
            out.append(line)
            continue
        chars = max(1, int(len(line) * width / max(1, _text_size(draw, line, fnt)[0])))
        out.extend(textwrap.wrap(line, chars) or [line])
    return "\n".join(out)


def grid(
    tiles: Sequence[Sequence[Image.Image | None]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str | None = None,
    tile_captions: Sequence[Sequence[str]] | None = None,
) -> Image.Image:
    """One figure of tiles: one row per class, one column per method (the first may be the input).

    Labels are drawn on a white background: column labels on top, row labels at the left, an
    optional title above and optional captions under each tile. Cells are the size of the
    largest tile; smaller tiles are centred; a None tile leaves its cell empty.
    """
    rows = [list(r) for r in tiles]
    n_rows = len(rows)
    n_cols = max((len(r) for r in rows), default=0)
    if n_rows == 0 or n_cols == 0:
        raise ValueError("grid() needs at least one tile")
    if len(row_labels) != n_rows:
        raise ValueError(f"{len(row_labels)} row labels for {n_rows} rows")
    if len(col_labels) != n_cols:
        raise ValueError(f"{len(col_labels)} column labels for {n_cols} columns")
    present = [t for r in rows for t in r if t is not None]
    cell_w = max((t.width for t in present), default=224)
    cell_h = max((t.height for t in present), default=224)

    size = max(12, min(28, round(cell_h / 14)))  # 16 px at 224 px tiles
    bold, small = font(size, bold=True), font(max(10, size - 3))
    title_font = font(size + 4, bold=True)
    pad = max(6, size // 2)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    # Row labels: as wide as the widest needs, at most one cell wide.
    row_w = min(cell_w, max(_text_size(probe, str(t), bold)[0] for t in row_labels) or 0)
    row_w = max(row_w, size * 4)
    row_text = [_wrap(probe, str(t), bold, row_w) for t in row_labels]
    col_text = [_wrap(probe, str(t), bold, cell_w) for t in col_labels]
    col_h = max(_text_size(probe, t, bold)[1] for t in col_text)

    captions = None
    cap_h = 0
    if tile_captions is not None:
        captions = [[_wrap(probe, str(c), small, cell_w) for c in r] for r in tile_captions]
        cap_h = max((_text_size(probe, c, small)[1] for r in captions for c in r), default=0)
    cap_block = cap_h + pad if cap_h else 0

    left = pad + row_w + pad
    title_text = _wrap(probe, title, title_font, left + n_cols * (cell_w + pad) - 2 * pad) if title else ""
    title_h = _text_size(probe, title_text, title_font)[1] + 2 * pad if title else 0
    top = pad + title_h + col_h + pad
    row_pitch = cell_h + cap_block + pad
    width = left + n_cols * (cell_w + pad)
    height = top + n_rows * row_pitch

    canvas = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.multiline_text((pad, pad), title_text, fill=_INK, font=title_font, spacing=2)
    for j, text in enumerate(col_text):
        x = left + j * (cell_w + pad) + cell_w // 2
        draw.multiline_text((x, top - pad), text, fill=_INK, font=bold, anchor="md", align="center", spacing=2)
    for i, row in enumerate(rows):
        y = top + i * row_pitch
        draw.multiline_text((pad, y + cell_h // 2), row_text[i], fill=_INK, font=bold, anchor="lm", spacing=2)
        for j, tile in enumerate(row):
            x = left + j * (cell_w + pad)
            if tile is not None:
                canvas.paste(tile.convert("RGB"), (x + (cell_w - tile.width) // 2, y + (cell_h - tile.height) // 2))
            if captions is not None and i < len(captions) and j < len(captions[i]) and captions[i][j]:
                draw.multiline_text(
                    (x + cell_w // 2, y + cell_h + pad // 2),
                    captions[i][j],
                    fill=_MUTED,
                    font=small,
                    anchor="ma",
                    align="center",
                    spacing=2,
                )
    return canvas


def colorbar(colormap: str = "jet", width: int = 256, height: int = 16) -> Image.Image:
    """A small legend: the colour map as a gradient, low to high left to right (or bottom to top
    when the bar is taller than wide)."""
    if width < 1 or height < 1:
        raise ValueError("colorbar() needs a positive width and height")
    if width >= height:
        ramp = np.tile(np.linspace(0.0, 1.0, width, dtype=np.float32), (height, 1))
    else:
        ramp = np.tile(np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None], (1, width))
    return Image.fromarray(colorize(ramp, colormap), "RGB")
