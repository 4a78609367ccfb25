"""Weakly-supervised localisation from a saliency map, and the measures that score it.

The Grad-CAM paper (Selvaraju et al., ICCV 2017, Sec. 4.1) boxes an object from a map alone: keep the
pixels at or above 15 % of the map's maximum, and draw the box around the single largest connected
segment (8-connected here, as OpenCV's contour search of the CAM authors' code; 4 is an option).

Boxes are (x0, y0, x1, y1) in pixel-edge coordinates: column x0 is the first inside, x1 the first
after (a box of one pixel at (3, 5) is (3, 5, 4, 6)). numpy + standard library only.
"""

from __future__ import annotations

import math

import numpy as np

Box = tuple[float, float, float, float]

PAPER_THRESHOLD = 0.15
IOU_HIT = 0.5
POINTING_TOLERANCE = 15.0  # pixels, as in the pointing game of Zhang et al. (ECCV 2016)
CENTRE_AREA = 0.5


def _runs(row: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of the runs of True in a 1-D bool array, end exclusive."""
    padded = np.concatenate(([False], row, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))


def largest_component_box(mask: np.ndarray, connectivity: int = 8) -> tuple[int, int, int, int] | None:
    """The box (x0, y0, x1, y1) of the largest connected region of a 2-D bool mask; None if empty.

    Regions are found on runs of pixels, row by row (union-find over runs), so the cost grows with
    the number of runs, not of pixels. Ties between equal sizes go to the region found first.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"the mask must be 2-D, got shape {mask.shape}")
    reach = 1 if connectivity == 8 else 0
    runs: list[tuple[int, int, int]] = []  # (row, start, end)
    parent: list[int] = []

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    previous: list[int] = []
    for y in range(mask.shape[0]):
        current = []
        for start, end in _runs(mask[y]):
            index = len(runs)
            runs.append((y, start, end))
            parent.append(index)
            for other in previous:
                _, other_start, other_end = runs[other]
                if other_start < end + reach and start < other_end + reach:
                    a, b = root(index), root(other)
                    parent[max(a, b)] = min(a, b)
            current.append(index)
        previous = current
    if not runs:
        return None
    size: dict[int, int] = {}
    bounds: dict[int, list[int]] = {}
    for index, (y, start, end) in enumerate(runs):
        label = root(index)
        size[label] = size.get(label, 0) + end - start
        box = bounds.setdefault(label, [start, y, end, y + 1])
        box[0], box[1] = min(box[0], start), min(box[1], y)
        box[2], box[3] = max(box[2], end), max(box[3], y + 1)
    best = max(sorted(size), key=lambda label: size[label])
    left, top, right, bottom = bounds[best]
    return left, top, right, bottom


def box_from_map(
    saliency: np.ndarray, threshold: float = PAPER_THRESHOLD, connectivity: int = 8
) -> tuple[int, int, int, int] | None:
    """The paper's box: pixels >= threshold x the map's maximum, the largest connected region.

    None when the map has no positive value (nothing to localise).
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    values = np.nan_to_num(np.asarray(saliency, dtype=np.float32), nan=0.0)
    peak = float(values.max()) if values.size else 0.0
    if peak <= 0.0:
        return None
    return largest_component_box(values >= threshold * peak, connectivity)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when they do not overlap or both are empty)."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(width, 0.0) * max(height, 0.0)
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def area(box: Box) -> float:
    """Area of a box (0 for an inverted one)."""
    return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)


def peak(saliency: np.ndarray) -> tuple[float, float]:
    """(x, y) of the centre of the map's maximum pixel (the first one on ties)."""
    values = np.nan_to_num(np.asarray(saliency, dtype=np.float32), nan=-math.inf)
    y, x = np.unravel_index(int(np.argmax(values)), values.shape)
    return float(x) + 0.5, float(y) + 0.5


def points_inside(point: tuple[float, float], boxes: list[Box], tolerance: float = POINTING_TOLERANCE) -> bool:
    """The pointing game's hit: the point lies in one of the boxes grown by `tolerance` pixels."""
    x, y = point
    return any(b[0] - tolerance <= x <= b[2] + tolerance and b[1] - tolerance <= y <= b[3] + tolerance for b in boxes)


def region_mask(boxes: list[Box], shape: tuple[int, int]) -> np.ndarray:
    """Bool mask [H, W] of the pixels whose centres fall inside any of the boxes."""
    rows = np.arange(shape[0]) + 0.5
    columns = np.arange(shape[1]) + 0.5
    mask = np.zeros(shape, dtype=bool)
    for x0, y0, x1, y1 in boxes:
        mask |= ((rows >= y0) & (rows < y1))[:, None] & ((columns >= x0) & (columns < x1))[None, :]
    return mask


def centre_box(shape: tuple[int, int], share: float = CENTRE_AREA) -> Box:
    """The centred box covering `share` of an image of `shape` (H, W), same aspect ratio."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share}")
    height, width = shape
    side = math.sqrt(share)
    margin_x, margin_y = width * (1 - side) / 2, height * (1 - side) / 2
    return margin_x, margin_y, width - margin_x, height - margin_y


def mass_inside(saliency: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's (non-negative) mass on the True pixels of mask; NaN for an all-zero map."""
    values = np.clip(np.nan_to_num(np.asarray(saliency, dtype=np.float64), nan=0.0), 0.0, None)
    total = float(values.sum())
    return float(values[mask].sum()) / total if total > 0 else float("nan")
