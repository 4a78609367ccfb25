"""Near-empty maps: the rule (1 % of the pixels, 1 % of the reference peak), the note and the honest
display scale."""

from __future__ import annotations

import numpy as np
import pytest

from explainers.evidence import NEAR_EMPTY_PEAK, NEAR_EMPTY_SHARE, assess_evidence, display_map

SIZE = 100  # 10,000 pixels: 1 % is 100 pixels


def spots(count: int, value: float = 1.0) -> np.ndarray:
    """A map positive on its first `count` pixels (raster order), negative elsewhere."""
    raw = np.full(SIZE * SIZE, -0.5)
    raw[:count] = value
    return raw.reshape(SIZE, SIZE)


def test_an_exactly_empty_map_says_so():
    for raw in (np.zeros((SIZE, SIZE)), spots(0), np.full((SIZE, SIZE), np.nan)):
        evidence = assess_evidence(raw, reference_peak=2.0)
        assert evidence.empty and evidence.near_empty and evidence.peak == 0.0
        assert evidence.note == "no evidence found (empty map)"


def test_a_map_positive_on_under_one_percent_of_the_pixels_is_labelled_with_the_figure():
    evidence = assess_evidence(spots(40))
    assert evidence.positive_share == pytest.approx(0.004)
    assert evidence.near_empty and not evidence.empty and evidence.peak_ratio is None
    assert evidence.note == "almost no evidence: positive on 0.4 % of pixels"
    at_the_bound = assess_evidence(spots(int(NEAR_EMPTY_SHARE * SIZE * SIZE)))  # exactly 1 %: not under
    assert not at_the_bound.near_empty and at_the_bound.note == ""
    assert assess_evidence(spots(99)).near_empty


def test_a_faint_map_is_labelled_against_the_normal_maps_peak():
    faint = spots(5000, value=0.003)  # half the pixels positive, peak 0.3 % of the reference
    evidence = assess_evidence(faint, reference_peak=1.0)
    assert evidence.peak_ratio == pytest.approx(0.003, rel=1e-5)
    assert evidence.near_empty and evidence.note == "almost no evidence: peak 0.3 % of the normal map's"
    assert not assess_evidence(faint).near_empty  # without a reference there is nothing to compare
    assert not assess_evidence(faint, reference_peak=0.0).near_empty  # nor with an empty reference
    strong_enough = assess_evidence(spots(5000, value=NEAR_EMPTY_PEAK), reference_peak=1.0)
    assert not strong_enough.near_empty
    both = assess_evidence(spots(30, value=0.002), reference_peak=1.0)
    assert both.note == "almost no evidence: positive on 0.3 % of pixels, peak 0.2 % of the normal map's"


def test_a_map_with_evidence_has_no_note():
    evidence = assess_evidence(np.linspace(-1, 1, SIZE * SIZE).reshape(SIZE, SIZE), reference_peak=1.5)
    assert not evidence.near_empty and evidence.note == ""
    assert evidence.positive_share == pytest.approx(0.5) and evidence.peak_ratio == pytest.approx(1 / 1.5)


def test_display_map_draws_a_faint_map_faint_and_a_normal_map_full():
    faint = spots(5000, value=0.003)
    drawn = display_map(faint, reference_peak=1.0)
    assert drawn.dtype == np.float32 and drawn.shape == faint.shape
    assert drawn.max() == pytest.approx(0.003) and drawn.min() == 0.0  # negatives clipped
    np.testing.assert_allclose(display_map(faint), np.clip(faint, 0, None) / 0.003, rtol=1e-6)
    stronger = spots(10, value=4.0)  # stronger than its reference: its own peak is the scale
    assert display_map(stronger, reference_peak=1.0).max() == pytest.approx(1.0)
    assert not display_map(np.zeros((4, 4)), reference_peak=1.0).any()
    assert not display_map(np.full((4, 4), -1.0)).any()
