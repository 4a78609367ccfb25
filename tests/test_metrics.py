"""Deletion / insertion, Average Drop / Increase and the grid pointing game on models whose evidence
is known exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import explainers
from explainers.metrics import (
    ConfidenceChange,
    area,
    confidence_change,
    deletion_insertion,
    gaussian_blur,
    saliency_ranks,
)
from explainers.metrics_pointing import cell_box, pointing_grid, pointing_score

SIZE, SCALE = 32, 40.0
TOP, LEFT, SIDE = 8, 20, 4  # the evidence: a 4 x 4 region, 16 of the 1024 pixels
STEPS = 64  # 16 pixels per step: the region is exactly one step


class RegionEvidence(nn.Module):
    """Two classes: logit 0 = SCALE * (mean of x over the region - 0.5), logit 1 = 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        evidence = x[:, :, TOP : TOP + SIDE, LEFT : LEFT + SIDE].mean(dim=(1, 2, 3))
        return torch.stack([SCALE * (evidence - 0.5), torch.zeros_like(evidence)], dim=1)


class RegionContrast(nn.Module):
    """logit 0 = SCALE * (mean over the region - mean elsewhere), logit 1 = 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inside = region_mask().to(x.device)
        evidence = (x * inside).sum(dim=(1, 2, 3)) / (3 * inside.sum())
        elsewhere = (x * (1 - inside)).sum(dim=(1, 2, 3)) / (3 * (1 - inside).sum())
        return torch.stack([SCALE * (evidence - elsewhere), torch.zeros_like(evidence)], dim=1)


def region_mask() -> torch.Tensor:
    mask = torch.zeros(SIZE, SIZE)
    mask[TOP : TOP + SIDE, LEFT : LEFT + SIDE] = 1
    return mask


def region_image() -> torch.Tensor:
    return region_mask().expand(1, 3, -1, -1).clone()


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def curves_of(maps: list[torch.Tensor], **kwargs):
    return deletion_insertion(
        RegionEvidence(), region_image(), torch.stack(maps), [0] * len(maps), steps=STEPS, **kwargs
    )


def test_a_map_on_the_evidence_deletes_and_inserts_it_in_one_step():
    curves = curves_of([region_mask(), 1 - region_mask()])
    one_step = 1 / STEPS
    assert curves.fractions[1] == pytest.approx(one_step) and curves.step_fraction == pytest.approx(one_step)
    perfect_deletion, anti_deletion = curves.deletion
    assert perfect_deletion[0] == pytest.approx(sigmoid(SCALE / 2))
    assert perfect_deletion[1:].max() < 1e-8  # the region is gone after one step
    assert anti_deletion[:-1].min() > 1 - 1e-8 and anti_deletion[-1] < 1e-8
    perfect_insertion, anti_insertion = curves.insertion
    # The blurred region keeps less than 0.18 of its mean (kernel 11, sigma 5): logit < -12.8.
    assert perfect_insertion[0] < sigmoid(SCALE * (0.18 - 0.5))
    blurred_evidence = float(gaussian_blur(region_image())[:, :, TOP : TOP + SIDE, LEFT : LEFT + SIDE].mean())
    assert perfect_insertion[0] == pytest.approx(sigmoid(SCALE * (blurred_evidence - 0.5)), rel=1e-4)
    assert perfect_insertion[1:].min() > 1 - 1e-8
    assert anti_insertion[:-1].max() < sigmoid(SCALE * (0.18 - 0.5)) and anti_insertion[-1] > 1 - 1e-8
    assert curves.deletion_auc[0] == pytest.approx(one_step / 2, abs=1e-6)
    assert curves.deletion_auc[1] == pytest.approx(1 - one_step / 2, abs=1e-6)
    assert curves.insertion_auc[0] == pytest.approx(1 - one_step / 2, abs=1e-4)
    assert curves.insertion_auc[1] == pytest.approx(one_step / 2, abs=1e-4)


def test_random_maps_score_between_the_perfect_and_the_anti_perfect_map():
    generator = torch.Generator().manual_seed(0)
    randoms = [torch.rand(SIZE, SIZE, generator=generator) for _ in range(8)]
    curves = curves_of([region_mask(), 1 - region_mask()] + randoms)
    tol = 1e-9
    # Pointwise: the perfect map removes the region first, the anti-perfect map last.
    assert (curves.deletion[0] <= curves.deletion[2:] + tol).all()
    assert (curves.deletion[2:] <= curves.deletion[1] + tol).all()
    assert (curves.insertion[1] <= curves.insertion[2:] + tol).all()
    assert (curves.insertion[2:] <= curves.insertion[0] + tol).all()
    assert (curves.deletion_auc[0] < curves.deletion_auc[2:]).all()
    assert (curves.deletion_auc[2:] < curves.deletion_auc[1]).all()
    assert (curves.insertion_auc[1] < curves.insertion_auc[2:]).all()
    assert (curves.insertion_auc[2:] < curves.insertion_auc[0]).all()
    # The region's pixels sit at uniformly random ranks: about half the pixels go before it is gone.
    assert 0.3 < curves.deletion_auc[2:].mean() < 0.7


def test_curves_do_not_depend_on_the_batch_size_and_the_area_is_the_trapezoid_rule():
    generator = torch.Generator().manual_seed(1)
    maps = [torch.rand(SIZE, SIZE, generator=generator) for _ in range(3)]
    small = curves_of(maps, batch_size=7)
    large = curves_of(maps, batch_size=1000)
    np.testing.assert_allclose(small.deletion, large.deletion, atol=1e-7)
    np.testing.assert_allclose(small.insertion, large.insertion, atol=1e-7)
    trapezoid = getattr(np, "trapezoid", None) or np.trapz
    np.testing.assert_allclose(small.deletion_auc, [trapezoid(c, small.fractions) for c in small.deletion])
    assert area(np.array([0.0, 0.5, 1.0]), np.array([[1.0, 1.0, 0.0]])) == pytest.approx([0.75])


def test_ties_are_broken_in_raster_order():
    constant = torch.ones(SIZE, SIZE)
    raster = -torch.arange(SIZE * SIZE, dtype=torch.float32).view(SIZE, SIZE)  # descending = raster order
    assert torch.equal(saliency_ranks(constant[None]), saliency_ranks(raster[None]))
    tied, ordered = curves_of([constant]), curves_of([raster])
    np.testing.assert_array_equal(tied.deletion, ordered.deletion)
    # Raster order reaches the region (rows 8..11) after row 8's first 20 pixels: 276 pixels.
    assert tied.deletion[0, 276 // 16] > 0.99 and tied.deletion[0, -1] < 1e-8


def test_one_image_serves_several_maps_and_bad_shapes_are_refused():
    curves = curves_of([region_mask()] * 3)
    assert curves.deletion.shape == (3, STEPS + 1)
    with pytest.raises(ValueError, match="do not"):
        deletion_insertion(RegionEvidence(), region_image(), torch.ones(2, SIZE, SIZE), [0], steps=4)
    with pytest.raises(ValueError, match="do not"):
        deletion_insertion(RegionEvidence(), region_image(), torch.ones(1, 8, 8), [0], steps=4)


def test_gaussian_blur_is_the_normalised_separable_kernel():
    delta = torch.zeros(1, 3, 21, 21)
    delta[:, :, 10, 10] = 1
    offsets = torch.arange(-5, 6, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / 50)
    expected = torch.outer(kernel, kernel) / kernel.sum() ** 2
    blurred = gaussian_blur(delta, 11, 5.0)
    torch.testing.assert_close(blurred[0, 1, 5:16, 5:16], expected)
    assert float(blurred.sum()) == pytest.approx(3.0, rel=1e-5)


def test_average_drop_and_increase_in_constructed_cases():
    x, y = region_image(), sigmoid(SCALE / 2)
    # The whole image kept: O = Y, no drop, no increase (O > Y is strict).
    same = confidence_change(RegionEvidence(), x, [torch.ones(SIZE, SIZE)], [0])
    assert same.average_drop == pytest.approx(0.0, abs=1e-9) and same.increase_in_confidence == 0.0
    # Everything masked: O = sigmoid(-20); half masked: the region's mean is 0.5, O = 0.5.
    change = confidence_change(RegionEvidence(), x, [torch.zeros(SIZE, SIZE), torch.full((SIZE, SIZE), 0.5)], [0, 0])
    np.testing.assert_allclose(change.original, [y, y])
    np.testing.assert_allclose(change.explained, [sigmoid(-SCALE / 2), 0.5], rtol=1e-5)
    expected = ((y - sigmoid(-SCALE / 2)) / y + (y - 0.5) / y) / 2 * 100
    assert change.average_drop == pytest.approx(expected, rel=1e-5)
    assert change.increase_in_confidence == 0.0
    # Masking the distracting background raises the class from 0.5 to ~1: Increase 100 %, Drop 0.
    up = confidence_change(RegionContrast(), torch.ones(1, 3, SIZE, SIZE), [region_mask()] * 2, [0, 0])
    np.testing.assert_allclose(up.original, 0.5)
    assert up.explained.min() > 1 - 1e-8
    assert up.increase_in_confidence == 100.0 and up.average_drop == 0.0
    both = ConfidenceChange.concatenate([change, up])
    assert both.increase_in_confidence == 50.0 and both.average_drop == pytest.approx(expected / 2, rel=1e-5)


# ----------------------------------------------------------------------------- pointing game


def test_cells_tile_the_image_even_for_odd_sizes():
    assert [cell_box(c, (224, 224)) for c in range(4)] == [
        (0, 112, 0, 112),
        (0, 112, 112, 224),
        (112, 224, 0, 112),
        (112, 224, 112, 224),
    ]
    covered = torch.zeros(7, 5)
    for c in range(4):
        top, bottom, left, right = cell_box(c, (7, 5))
        covered[top:bottom, left:right] += 1
    assert torch.equal(covered, torch.ones(7, 5))
    with pytest.raises(ValueError):
        cell_box(4, (8, 8))


def test_the_grid_places_each_image_in_its_cell_at_the_input_size():
    images = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 3, 30, 30).clone()
    grid = pointing_grid(images)
    assert grid.shape == (1, 3, 30, 30)
    for cell in range(4):
        top, bottom, left, right = cell_box(cell, (30, 30))
        assert torch.allclose(grid[0, :, top:bottom, left:right], torch.tensor(float(cell)))
    with pytest.raises(ValueError):
        pointing_grid(images[:3])


def test_pointing_score_known_maps():
    for cell in range(4):
        top, bottom, left, right = cell_box(cell, (16, 16))
        exact = np.zeros((16, 16))
        exact[top:bottom, left:right] = 1
        assert pointing_score(exact, cell) == 1.0
        assert pointing_score(exact, (cell + 1) % 4) == 0.0
        assert pointing_score(exact - 5 * (1 - exact), cell) == 1.0  # negative values do not count
    assert pointing_score(np.ones((16, 16)), 2) == 0.25
    assert math.isnan(pointing_score(np.zeros((16, 16)), 0))


def test_random_maps_score_chance():
    generator = torch.Generator().manual_seed(0)
    scores = [pointing_score(torch.rand(32, 32, generator=generator), seed % 4) for seed in range(200)]
    assert np.mean(scores) == pytest.approx(0.25, abs=0.01)


class ChannelEvidence(nn.Module):
    """Four input channels; logit c = mean of ReLU(channel c), read at the layer "features"."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.ReLU()
        self.anchor = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3)) * self.anchor


def test_gradcam_on_a_grid_of_one_class_per_cell_points_at_each_cell():
    images = torch.eye(4).view(4, 4, 1, 1).expand(4, 4, 16, 16).clone()  # image c: channel c is 1
    grid = pointing_grid(images)
    result = explainers.explain(
        ChannelEvidence(), grid, ["gradcam", "gradient"], targets=[0, 1, 2, 3], layer="features"
    )
    for method in ("gradcam", "gradient"):
        assert [pointing_score(result.get(method, c).raw, c) for c in range(4)] == [1.0] * 4
