"""The cascading-randomisation sanity check and its Spearman correlation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import models
from explainers.metrics_sanity import (average_ranks, cascading_randomisation, modules_in_forward_order,
                                       spearman, stage_cuts)
from nets import GapLinearNet

ASSETS = __import__("pathlib").Path(__file__).resolve().parents[1] / "assets"


def test_spearman_known_values():
    assert average_ranks(torch.tensor([3.0, 1.0, 2.0, 2.0])).tolist() == [4.0, 1.0, 2.5, 2.5]
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert spearman(a, [2.0, 1.0, 4.0, 3.0, 5.0]) == pytest.approx(1 - 6 * 4 / (5 * 24))
    assert spearman(a, a ** 3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    assert spearman(np.zeros((3, 3)), np.eye(3)) == 0.0


def test_ties_are_averaged_so_shared_zeros_do_not_correlate_by_position():
    first, second = np.zeros((8, 8)), np.zeros((8, 8))
    first[0, 0], second[7, 7] = 1.0, 1.0  # two different single peaks on a zero background
    assert spearman(first, second) < 0  # ordinal ranks (raster order) would give about +1


def test_modules_in_forward_order_and_stages():
    net = GapLinearNet()
    assert modules_in_forward_order(net, torch.zeros(1, 3, 8, 8)) == ["conv", "fc"]
    assert stage_cuts(5, None) == [1, 2, 3, 4, 5]
    assert stage_cuts(10, 3) == [3, 7, 10]
    assert stage_cuts(2, 8) == [1, 2]


class SquaredEnergy(nn.Module):
    """logits = fc(mean(x^2)): the input gradient is w_c * 2x / n, the same map up to scale whatever
    the weights are, so gradient maps cannot change when the model is randomised."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.pow(2).mean(dim=(1, 2, 3))[:, None])


def test_a_map_that_ignores_the_model_fails():
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    result = cascading_randomisation(SquaredEnergy(), x, ["gradient"], [0, 1])
    assert result.stages == ["fc"] and result.randomised == [1]
    np.testing.assert_allclose(result.spearman["gradient"], 1.0)
    assert result.fails("gradient")


@pytest.fixture(scope="module")
def lite0_cat():
    classifier = models.load("efficientnet_lite0", "cpu")
    return classifier, classifier.preprocess(Image.open(ASSETS / "cat.jpg").convert("RGB"))


def test_gradcam_on_a_trained_network_passes_and_the_caller_model_is_untouched(lite0_cat):
    classifier, x = lite0_cat
    before = {k: v.clone() for k, v in classifier.module.state_dict().items()}
    target = int(classifier.module(x).argmax())
    result = cascading_randomisation(classifier, x, ["gradcam"], [target], stages=3, seed=0)
    assert result.randomised[-1] == len(modules_in_forward_order(classifier.module, x))
    assert result.stages[-1] == "conv_stem"  # the first layer is the last one randomised
    assert result.spearman["gradcam"].shape == (3, 1)
    assert result.final("gradcam") < 0.2 and not result.fails("gradcam")
    after = classifier.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    again = cascading_randomisation(classifier, x, ["gradcam"], [target], stages=3, seed=0)
    np.testing.assert_array_equal(again.spearman["gradcam"], result.spearman["gradcam"])
