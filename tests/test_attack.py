"""PGD adversarial images: the budget is never exceeded, targets are reached, inputs are untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import explainers
import models
from explainers.attack import attack_image, pgd, to_image, to_pixels

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


class LinearClassifier(nn.Module):
    """logits = W x + b on 3x8x8 images: the smallest budget that flips a class is known."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def clean_pixels() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return (torch.rand(2, 3, 8, 8, generator=generator) * 200 + 20).round() / 255


def levels_needed(model: LinearClassifier, pixels: torch.Tensor, target: int) -> float:
    """The least L-infinity change (levels) that makes `target` the top class of a linear model.

    With margin m_j = (w_j - w_t).x + b_j - b_t to each other class j, moving every pixel by e
    along sign(w_t - w_j) closes m_j at rate ||w_t - w_j||_1 / (255 std) per level; the attack
    must close the largest m_j / rate, which is a lower bound for any perturbation.
    """
    with torch.no_grad():
        x = ((pixels - 0.5) / 0.25).flatten()
        w, b = model.fc.weight, model.fc.bias
        logits = w @ x + b
        need = 0.0
        for j in range(3):
            if j != target and logits[j] >= logits[target]:
                rate = (w[target] - w[j]).abs().sum() / (255 * 0.25)
                need = max(need, float((logits[j] - logits[target]) / rate))
    return need


def test_targeted_attack_reaches_its_class_within_the_budget() -> None:
    model, pixels = LinearClassifier(), clean_pixels()
    with torch.no_grad():
        original = model((pixels - 0.5) / 0.25).argmax(1).tolist()
    targets = [(c + 1) % 3 for c in original]
    needs = [levels_needed(model, pixels[i], targets[i]) for i in range(2)]
    budget = float(np.ceil(max(needs))) + 3
    result = pgd(model, pixels, MEAN, STD, epsilon=budget, target=targets, steps=40, step_size=1)
    assert result.success == [True, True]
    assert result.predicted == targets
    assert max(result.linf_levels) <= budget
    levels = result.pixels * 255
    assert (levels - levels.round()).abs().max() < 1e-4  # real 8-bit images


def test_a_budget_below_the_known_minimum_cannot_reach_the_target() -> None:
    model, pixels = LinearClassifier(), clean_pixels()[:1]
    with torch.no_grad():
        original = int(model((pixels - 0.5) / 0.25).argmax())
    target = (original + 1) % 3
    need = levels_needed(model, pixels[0], target)
    assert need > 2, "the test image must need a real perturbation"
    result = pgd(model, pixels, MEAN, STD, epsilon=np.floor(need * 0.8), target=target, steps=60, step_size=1)
    assert result.success == [False]
    assert result.linf_levels[0] <= np.floor(need * 0.8)


def test_untargeted_attack_changes_the_top_class_and_rounding_respects_the_budget() -> None:
    model, pixels = LinearClassifier(), clean_pixels()
    result = pgd(model, pixels, MEAN, STD, epsilon=40.7, target=None, steps=30)
    assert result.success == [True, True]
    assert all(p != o for p, o in zip(result.predicted, result.original, strict=True))
    assert max(result.linf_levels) <= 40  # whole levels only


def test_the_clean_input_is_unchanged() -> None:
    model, pixels = LinearClassifier(), clean_pixels()
    before = pixels.clone()
    pgd(model, pixels, MEAN, STD, epsilon=8, target=[0, 1], steps=5)
    assert torch.equal(pixels, before)
    assert model.training  # the module's mode is restored
    assert torch.equal(to_pixels(to_image(pixels[0])), pixels[0])


def test_bad_requests_get_a_message() -> None:
    model, pixels = LinearClassifier(), clean_pixels()
    with pytest.raises(explainers.ExplainerError, match="between 0 and 2"):
        pgd(model, pixels, MEAN, STD, target=[5, 0])
    with pytest.raises(explainers.ExplainerError, match="one target per image"):
        pgd(model, pixels, MEAN, STD, target=[0])
    with pytest.raises(explainers.ExplainerError, match="epsilon"):
        pgd(model, pixels, MEAN, STD, epsilon=-1)


def test_attack_on_the_embedded_model_keeps_the_clean_maps() -> None:
    cat_and_coffee = Image.open(Path(__file__).resolve().parents[1] / "assets" / "cat_and_coffee.jpg")
    classifier = models.load("efficientnet_lite0", device="cpu")
    x = classifier.preprocess(cat_and_coffee)
    clean_map = explainers.saliency(classifier, x, target=281, method="gradcam")
    result = attack_image(classifier, cat_and_coffee, target=967, epsilon=4, steps=10)  # espresso
    assert result.success == [True] and result.linf_levels[0] <= 4
    again = classifier.preprocess(result.image())
    assert int(classifier.module(again).argmax()) == 967  # the saved image fools it too
    assert np.array_equal(clean_map, explainers.saliency(classifier, x, target=281, method="gradcam"))
    assert result.difference_image().size == result.image().size


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU here")
def test_attack_and_maps_on_the_gpu_match_the_budget_and_the_saved_image() -> None:
    from explainers.attack import crop_input, explain_attack

    cat_and_coffee = Image.open(Path(__file__).resolve().parents[1] / "assets" / "cat_and_coffee.jpg")
    classifier = models.load("efficientnet_lite0", device="cuda")
    run = explain_attack(classifier, cat_and_coffee, ["gradcam"], target=967, epsilon=3, steps=10)
    assert run.attack.pixels.is_cuda and run.attack.success == [True] and run.attack.linf_levels[0] <= 3
    saved = crop_input(classifier, run.attack.image()).to("cuda")
    assert int(classifier.module(saved).argmax()) == run.predicted == 967
    assert run.classes[1:] == [967] and run.clean.device.startswith("cuda")
    assert run.clean.get("gradcam", run.original).map.shape == (224, 224)
