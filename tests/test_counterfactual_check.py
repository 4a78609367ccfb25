"""The counterfactual check of "why not" maps on a model whose evidence against a class is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import explainers
from explainers.metrics import CounterfactualCheck, counterfactual_check, gaussian_blur, region_and_shifts

SIZE, SCALE = 32, 40.0
TOP, LEFT, SIDE = 8, 20, 4  # the evidence against class 0: a 4 x 4 region, 16 of the 1024 pixels
SHARE = SIDE * SIDE / SIZE**2  # the check removes exactly the region's area


def region_mask() -> torch.Tensor:
    mask = torch.zeros(SIZE, SIZE)
    mask[TOP : TOP + SIDE, LEFT : LEFT + SIDE] = 1
    return mask


def region_image() -> torch.Tensor:
    return region_mask().expand(1, 3, -1, -1).clone()


class RegionAgainst(nn.Module):
    """logit 0 = -SCALE * (mean over the region - 0.5), logit 1 = 0: the region speaks against
    class 0; read at the layer "features" (the input itself) so that Grad-CAM sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.anchor = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inside = self.features(x)[:, :, TOP : TOP + SIDE, LEFT : LEFT + SIDE].mean(dim=(1, 2, 3))
        return torch.stack([-SCALE * (inside - 0.5) * self.anchor[0], torch.zeros_like(inside)], dim=1)


def log_sigmoid(v: float) -> float:
    return -math.log1p(math.exp(-v))


def test_regions_are_the_top_positive_pixels_and_the_shifted_copies_have_the_same_area():
    noisy = region_mask() + 0.01 * torch.rand(SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    regions, shifted = region_and_shifts(noisy[None], SHARE)
    assert torch.equal(regions[0], region_mask().bool())
    assert shifted.shape == (1, 3, SIZE, SIZE)
    assert [int(s.sum()) for s in shifted[0]] == [SIDE * SIDE] * 3
    assert not (shifted[0] & regions[0]).any()  # moved off the region: half the image away
    assert torch.equal(shifted[0, 2], torch.roll(region_mask().bool(), (SIZE // 2, SIZE // 2), (0, 1)))
    sparse = torch.zeros(SIZE, SIZE)
    sparse[0, :3] = 1  # fewer positive pixels than the share: only they are removed
    assert int(region_and_shifts(sparse[None], 0.1)[0].sum()) == 3


def test_the_check_separates_an_informative_map_from_a_shifted_one():
    informative = region_mask()
    shifted = torch.roll(region_mask(), SIZE // 2, 0)  # the same region, half the image lower
    check = counterfactual_check(RegionAgainst(), region_image(), [informative, shifted], [0, 0], share=SHARE)
    # Removing the region turns logit 0 from -20 into +20; removing anything else changes nothing.
    np.testing.assert_allclose(check.original, log_sigmoid(-SCALE / 2), rtol=1e-5)
    gain = log_sigmoid(SCALE / 2) - log_sigmoid(-SCALE / 2)
    assert check.region_gain[0] == pytest.approx(gain, rel=1e-4) and check.region_gain[1] == pytest.approx(0, abs=1e-5)
    # The shifted map's own shifted copies include the roll back onto the evidence: 1 of 3 copies.
    assert check.shifted_gain[0] == pytest.approx(0, abs=1e-5)
    assert check.shifted_gain[1] == pytest.approx(gain / 3, rel=1e-4)
    assert check.separation[0] > 19 and check.separation[1] < -6
    assert check.win_rate == 0.5 and check.checked == 2
    np.testing.assert_allclose(check.area, SHARE)


def test_the_blur_baseline_removes_less_but_still_separates():
    check = counterfactual_check(RegionAgainst(), region_image(), [region_mask()], [0], share=SHARE, baseline="blur")
    blurred = float(gaussian_blur(region_image())[:, :, TOP : TOP + SIDE, LEFT : LEFT + SIDE].mean())
    expected = log_sigmoid(-SCALE * (blurred - 0.5)) - log_sigmoid(-SCALE / 2)
    assert check.region_gain[0] == pytest.approx(expected, rel=1e-4) and check.separation[0] > 10
    with pytest.raises(ValueError, match="baseline"):
        counterfactual_check(RegionAgainst(), region_image(), [region_mask()], [0], baseline="noise")


def test_an_empty_map_is_not_checked_and_results_combine():
    check = counterfactual_check(
        RegionAgainst(), region_image(), [torch.zeros(SIZE, SIZE), region_mask()], [0, 0], share=SHARE, batch_size=3
    )
    assert math.isnan(check.region_gain[0]) and math.isnan(check.shifted_gain[0]) and check.area[0] == 0
    assert check.checked == 1 and check.win_rate == 1.0
    both = CounterfactualCheck.concatenate([check.pick(1), check.pick(0), check.pick(1)])
    assert len(both.original) == 3 and both.checked == 2 and both.win_rate == 1.0
    assert math.isnan(counterfactual_check(RegionAgainst(), region_image(), [torch.zeros(SIZE, SIZE)], [0]).win_rate)


def test_the_engines_why_not_gradcam_map_passes_the_check():
    model, x = RegionAgainst(), region_image()
    why_not = explainers.explain(model, x, ["gradcam"], targets=[0], layer="features", counterfactual=True)
    raw = why_not.get("gradcam", 0).raw
    assert np.array_equal(raw > 0, region_mask().numpy() > 0)  # the evidence against class 0
    check = counterfactual_check(model, x, [raw], [0], share=SHARE)
    assert check.separation[0] > 19 and check.win_rate == 1.0
