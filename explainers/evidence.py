"""Near-empty maps: say "almost no evidence" instead of stretching a few faint pixels to full colour.

A map normalised to [0, 1] on its own (min-max) looks equally strong whether its peak is large or a
rounding error. A "why not" map is often nearly empty (the image holds little evidence against the
class), and drawn on its own scale it looks like strong evidence. assess_evidence() labels such a
map, with the figure, and display_map() gives the [0, 1] map to draw on a scale that shows it
honestly (the normal map's peak when it is known).

A map is near-empty when it is positive on under NEAR_EMPTY_SHARE (1 %) of its pixels, or when its
peak is under NEAR_EMPTY_PEAK (1 %) of a reference peak (the normal map's raw peak for the same
image, class and method). Raw maps are the engine's SaliencyMap.raw (after the methods' ReLU, so
"positive" is the evidence the map shows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEAR_EMPTY_SHARE = 0.01
NEAR_EMPTY_PEAK = 0.01


@dataclass(frozen=True)
class Evidence:
    """How much evidence a raw map shows."""

    positive_share: float  # share of the pixels where the map is > 0
    peak: float  # the map's largest value (0 when nothing is positive)
    peak_ratio: float | None  # peak / the reference peak; None without a (positive) reference
    near_empty: bool
    note: str  # "" when the map shows evidence; else a short note for the reader, with the figure

    @property
    def empty(self) -> bool:
        """True when no pixel is positive."""
        return self.positive_share == 0.0


def _percent(share: float) -> str:
    """A share as a percentage with two significant digits where small ("0.4 %", "0.012 %")."""
    value = 100 * share
    return f"{value:.2g} %" if value < 10 else f"{value:.0f} %"


def assess_evidence(raw: np.ndarray, reference_peak: float | None = None) -> Evidence:
    """Whether a raw map is near-empty, and the note to show (rules in the module's docstring).

    raw: the unnormalised map [H, W] (NaN counts as 0); reference_peak: the raw peak of the normal
    map of the same image, class and method (for a "why not" map), or None.
    """
    values = np.nan_to_num(np.asarray(raw, dtype=np.float64), nan=0.0)
    positive_share = float((values > 0).mean()) if values.size else 0.0
    peak = max(float(values.max()), 0.0) if values.size else 0.0
    ratio = peak / reference_peak if reference_peak is not None and reference_peak > 0 else None
    if positive_share == 0.0:
        return Evidence(0.0, 0.0, ratio, True, "no evidence found (empty map)")
    notes = []
    if positive_share < NEAR_EMPTY_SHARE:
        notes.append(f"positive on {_percent(positive_share)} of pixels")
    if ratio is not None and ratio < NEAR_EMPTY_PEAK:
        notes.append(f"peak {_percent(ratio)} of the normal map's")
    note = f"almost no evidence: {', '.join(notes)}" if notes else ""
    return Evidence(positive_share, peak, ratio, bool(notes), note)


def display_map(raw: np.ndarray, reference_peak: float | None = None) -> np.ndarray:
    """The [0, 1] map to draw: the positive part divided by the larger of its own peak and
    `reference_peak`, so that a map much weaker than its reference is drawn faint, not stretched.

    Without a reference a map with evidence fills [0, 1] as usual (its own peak is 1); an empty map
    is all zeros. float32 [H, W].
    """
    values = np.clip(np.nan_to_num(np.asarray(raw, dtype=np.float32), nan=0.0), 0.0, None)
    scale = max(float(values.max()) if values.size else 0.0, float(reference_peak or 0.0))
    if not np.isfinite(scale) or scale <= 0:
        return np.zeros_like(values)
    return values / np.float32(scale)
