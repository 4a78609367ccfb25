"""The cascading-randomisation sanity check, its Spearman correlation, and its verdict against controls
on small models whose answer is known: a map that ignores the image is flagged whatever its Spearman
figure, a map that ignores the model fails, a map that depends on both passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nets import FixedFeatures, GapLinearNet, LinearPixels
from PIL import Image
from torch import nn

import models
from explainers.metrics_sanity import (
    IMAGE_INDEPENDENT,
    SANITY_THRESHOLD,
    SURVIVAL_MARGIN,
    SanityControls,
    SanityResult,
    average_ranks,
    cascading_randomisation,
    centre_gaussian,
    modules_in_forward_order,
    spearman,
    stage_cuts,
)

ASSETS = __import__("pathlib").Path(__file__).resolve().parents[1] / "assets"


def test_spearman_known_values():
    assert average_ranks(torch.tensor([3.0, 1.0, 2.0, 2.0])).tolist() == [4.0, 1.0, 2.5, 2.5]
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert spearman(a, [2.0, 1.0, 4.0, 3.0, 5.0]) == pytest.approx(1 - 6 * 4 / (5 * 24))
    assert spearman(a, a**3) == pytest.approx(1.0)
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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: the model there, the images on the CPU")
def test_a_model_on_the_gpu_takes_images_from_the_cpu():
    net = GapLinearNet().cuda()
    x = random_images(2, size=16)  # on the CPU, as explainers.evaluate passes them
    assert modules_in_forward_order(net, x) == ["conv", "fc"]
    result = cascading_randomisation(net, x, ["gradcam"], [0, 1], layer="features", stages=2, seed=0)
    assert result.spearman["gradcam"].shape == (2, 2)


class SquaredEnergy(nn.Module):
    """logits = fc(mean(x^2)): the input gradient is w_c * 2x / n, the same map up to scale whatever
    the weights are, so gradient maps cannot change when the model is randomised."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.pow(2).mean(dim=(1, 2, 3))[:, None])


def random_images(count: int, size: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_a_map_that_ignores_the_model_fails():
    x = random_images(4)
    result = cascading_randomisation(SquaredEnergy(), x, ["gradient"], [0, 1, 2, 0])
    assert result.stages == ["fc"] and result.randomised == [1]
    np.testing.assert_allclose(result.spearman["gradient"], 1.0)
    # The map is |x|: other images' maps and the noise's map do not resemble it, nor does a centre blob.
    controls = result.controls["gradient"].means()
    assert max(controls["other_images"], controls["noise"], controls["centre"]) < 0.3
    verdict = result.verdict("gradient")
    assert verdict.outcome == "fails" and verdict.excess > 0.7 and result.fails("gradient")
    assert "shows the image, not the model" in verdict.explanation()


def test_a_map_independent_of_the_image_that_survives_randomisation_is_flagged():
    activations = centre_gaussian((6, 6))[None, None].repeat(2, axis=1) * np.array([1.0, 0.5])[None, :, None, None]
    model = FixedFeatures(torch.tensor(activations, dtype=torch.float32))
    result = cascading_randomisation(model, random_images(3), ["eigencam"], [0, 1, 2], layer="features")
    assert result.final("eigencam") == pytest.approx(1.0, abs=0.01)  # Eigen-CAM ignores the weights here
    controls = result.controls["eigencam"].means()
    assert controls["between_images"] == pytest.approx(1.0) and controls["other_images"] == pytest.approx(1.0, abs=0.01)
    assert result.verdict("eigencam").outcome == "image-independent" and result.fails("eigencam")


def test_a_map_independent_of_the_image_is_flagged_even_when_randomisation_changes_it():
    # The input gradient of a linear model is its weight row: the same map of a class for every image,
    # and a new one when the weights are redrawn. Adebayo's test alone would pass it.
    result = cascading_randomisation(LinearPixels(), random_images(3, size=8), ["gradient"], [0, 1, 2])
    assert result.final("gradient") < min(SANITY_THRESHOLD, 0.3)  # passes the fixed threshold
    verdict = result.verdict("gradient")
    assert verdict.between_images == pytest.approx(1.0) and IMAGE_INDEPENDENT < 1.0
    assert verdict.outcome == "image-independent" and verdict.flagged and result.fails("gradient")
    assert "hardly depends on the image" in verdict.explanation()


def test_a_map_of_the_image_and_the_model_passes():
    x = random_images(4, size=16, seed=3)
    result = cascading_randomisation(GapLinearNet(), x, ["gradcam"], [0, 1, 2, 3], layer="features")
    verdict = result.verdict("gradcam")
    assert verdict.between_images < 0.5 and verdict.excess <= SURVIVAL_MARGIN
    assert verdict.outcome == "passes" and not result.fails("gradcam")


def verdict_of(final: float, other: float, noise: float, centre: float, between: float) -> str:
    """The outcome for hand-set figures (one image, one stage)."""
    result = SanityResult(["top"], [1], {"m": np.array([[final]])})
    result.controls["m"] = SanityControls(*(np.array([v]) for v in (other, noise, centre, between, 0.0)))
    return result.verdict("m").outcome


def test_the_verdict_rule():
    assert verdict_of(0.74, 0.72, 0.80, 0.83, 0.5) == "passes"  # survives only as much as the controls
    assert verdict_of(0.74, 0.30, 0.40, 0.60, 0.5) == "fails"  # 0.14 above the largest control
    assert verdict_of(0.65, 0.30, 0.40, 0.55, 0.5) == "passes"  # 0.10 above: not more than the margin
    assert verdict_of(0.05, 0.10, 0.00, 0.20, IMAGE_INDEPENDENT) == "image-independent"
    assert verdict_of(0.99, 0.99, 0.99, 0.99, 0.99) == "image-independent"
    assert verdict_of(0.60, np.nan, 0.30, 0.20, np.nan) == "fails"  # no references: the other controls
    legacy = SanityResult(["top"], [1], {"m": np.array([[0.6]])})  # no controls: the fixed threshold
    assert legacy.fails("m") and not SanityResult(["top"], [1], {"m": np.array([[0.4]])}).fails("m")


def test_centre_gaussian_ranks_do_not_depend_on_sigma():
    small, large = centre_gaussian((9, 11), 0.1), centre_gaussian((9, 11), 0.6)
    assert small.shape == (9, 11) and small.argmax() == np.ravel_multi_index((4, 5), (9, 11))
    assert spearman(small, large) == pytest.approx(1.0)


def test_one_image_uses_the_references_for_the_other_images_control():
    x, references = random_images(1, size=16, seed=3), random_images(3, size=16, seed=4)
    alone = cascading_randomisation(GapLinearNet(), x, ["gradcam"], [1], layer="features")
    assert np.isnan(alone.controls["gradcam"].other_images).all()
    assert "not checked" in alone.verdict("gradcam").explanation()
    with_references = cascading_randomisation(
        GapLinearNet(), x, ["gradcam"], [1], layer="features", references=references
    )
    controls = with_references.controls["gradcam"]
    assert np.isfinite(controls.other_images).all() and np.isfinite(controls.between_images).all()
    np.testing.assert_array_equal(with_references.spearman["gradcam"], alone.spearman["gradcam"])


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
    assert result.verdict("gradcam").outcome == "passes"
    after = classifier.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    again = cascading_randomisation(classifier, x, ["gradcam"], [target], stages=3, seed=0)
    np.testing.assert_array_equal(again.spearman["gradcam"], result.spearman["gradcam"])
