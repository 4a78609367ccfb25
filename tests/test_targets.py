"""Targets beyond a class index: a contrast "a rather than b" and a set of classes, in closed form."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nets import GapLinearNet, LinearPixels

import explainers
from explainers import ClassSet, Contrast

SIZE = 32


def upsample(maps: torch.Tensor) -> np.ndarray:
    return F.interpolate(maps[None, None].float(), size=(SIZE, SIZE), mode="bilinear", align_corners=False)[
        0, 0
    ].numpy()


@pytest.fixture(scope="module")
def gap():
    net = GapLinearNet().eval()
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        activations = net.features(net.conv(x))[0]
        logits = net(x)[0]
    return net, x, activations, logits


def cam_of(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """sum_k weights_k A_k before the final ReLU."""
    return torch.einsum("k,khw->hw", weights, activations)


@pytest.mark.parametrize("counterfactual", [False, True])
def test_contrast_map_of_a_gap_linear_network_is_the_difference_of_the_class_maps(gap, counterfactual):
    """Grad-CAM on GAP + linear: dY/dA_k = w_k / (h w), so the contrast's map is the ReLU of the
    difference of the two classes' maps before their ReLU (CAM, HiResCAM and Ablation-CAM alike)."""
    net, x, a, logits = gap
    sign = -1.0 if counterfactual else 1.0
    w, area = net.fc.weight.detach(), a.shape[1] * a.shape[2]
    result = explainers.explain(
        net,
        x,
        ["cam", "gradcam", "hirescam", "ablationcam"],
        layer="features",
        targets=[Contrast(1, 3)],
        counterfactual=counterfactual,
    )
    difference = sign * (cam_of(w[1], a) - cam_of(w[3], a))
    np.testing.assert_allclose(result.get("cam", Contrast(1, 3)).raw, upsample(difference.clamp(min=0)), atol=1e-5)
    for method in ("gradcam", "hirescam"):
        np.testing.assert_allclose(
            result.get(method, Contrast(1, 3)).raw, upsample((difference / area).clamp(min=0)), rtol=1e-4, atol=1e-7
        )
    # Ablation-CAM: channel k's score drop is (w_1k - w_3k) mean(A_k), over |y_1 - y_3|
    drops = (w[1] - w[3]) * a.mean(dim=(1, 2)) / (logits[1] - logits[3]).abs()
    np.testing.assert_allclose(
        result.get("ablationcam", Contrast(1, 3)).raw,
        upsample((sign * cam_of(drops, a)).clamp(min=0)),
        rtol=1e-4,
        atol=1e-6,
    )
    item = result.maps[0]
    assert item.target == Contrast(1, 3) and item.label == "1 rather than 3"
    p = F.softmax(logits, dim=0)
    assert item.probability == pytest.approx(float(p[1] / (p[1] + p[3])), rel=1e-5)


def test_contrast_integrated_gradients_of_a_linear_model():
    """Exact on a linear model: x (w_a - w_b), summed over colours, through the final ReLU."""
    net = LinearPixels(8).eval()
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    w = net.fc.weight.detach().reshape(3, 3, 8, 8)
    got = explainers.explain(net, x, ["integrated_gradients"], targets=[Contrast(2, 0)]).maps[0].raw
    np.testing.assert_allclose(got, (x[0] * (w[2] - w[0])).sum(dim=0).clamp(min=0).numpy(), rtol=1e-4, atol=1e-6)


def test_class_set_map_in_closed_form(gap):
    """The set's score log sum_S exp(y_c) has gradient q_c = softmax over the set: on GAP + linear
    Grad-CAM is the q-weighted mix of the classes' weights; the probability is sum_S p_c."""
    net, x, a, logits = gap
    classes = [0, 2, 3]
    w, area = net.fc.weight.detach(), a.shape[1] * a.shape[2]
    q = F.softmax(logits[classes], dim=0)
    target = ClassSet(classes, "three")
    result = explainers.explain(net, x, ["gradcam", "cam"], layer="features", targets=[target])
    expected = cam_of((q[:, None] * w[classes]).sum(dim=0), a)
    np.testing.assert_allclose(
        result.get("gradcam", target).raw, upsample((expected / area).clamp(min=0)), rtol=1e-4, atol=1e-7
    )
    np.testing.assert_allclose(result.get("cam", target).raw, upsample(expected.clamp(min=0)), atol=1e-5)
    item = result.get("gradcam", target)
    assert item.label == "three"
    assert item.probability == pytest.approx(float(F.softmax(logits, dim=0)[classes].sum()), rel=1e-5)


def test_a_class_set_of_one_class_is_that_class(gap):
    net, x, _, _ = gap
    methods = ["gradcam", "gradcam++", "layercam", "scorecam", "ablationcam", "guided_gradcam", "smoothgrad"]
    single = explainers.explain(net, x, methods, layer="features", targets=[2, ClassSet([2])])
    for method in methods:
        np.testing.assert_allclose(
            single.get(method, ClassSet([2])).raw, single.get(method, 2).raw, rtol=1e-4, atol=1e-7
        )
    assert single.targets == [[2, ClassSet([2])]]
    assert isinstance(single.maps[0].target, int)


def test_score_cam_weighs_a_class_set_by_its_summed_probability():
    """Score-CAM's weight of a set is sum_S p_c(X * H_k): the set's map before the ReLU is the
    sum of the classes' maps before theirs, which a set of all classes makes a known constant-weight sum."""
    net = GapLinearNet().eval()
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    everything = ClassSet(range(4), "all")
    got = explainers.explain(net, x, ["scorecam"], layer="features", targets=[everything]).maps[0].raw
    with torch.no_grad():
        a = net.features(net.conv(x))[0]
    varying = (a.flatten(1).amax(1) > a.flatten(1).amin(1)).float()  # constant channels get weight 0
    np.testing.assert_allclose(got, upsample(cam_of(varying, a).clamp(min=0)), rtol=1e-4, atol=1e-6)


def test_bad_targets_are_refused_and_imagenet_sets_resolve():
    net = GapLinearNet().eval()
    with pytest.raises(explainers.ExplainerError, match="between 0 and 3"):
        explainers.explain(net, torch.randn(1, 3, 8, 8), ["gradcam"], layer="features", targets=[Contrast(1, 9)])
    with pytest.raises(explainers.ExplainerError, match="two different"):
        Contrast(2, 2)
    dogs = explainers.imagenet_class_set("Dog")
    assert len(dogs.classes) == 118 and dogs.classes[0] == 151 and dogs.name == "dog"
    labels = (Path(__file__).resolve().parents[1] / "models" / "imagenet_classes.txt").read_text().splitlines()
    assert labels[dogs.classes[0]] == "Chihuahua" and labels[dogs.classes[-1]] == "Mexican hairless"
    assert {labels[c] for c in explainers.imagenet_class_set("domestic cat").classes} >= {"tabby", "Siamese cat"}
    assert explainers.imagenet_class_set(" Butterflies ") == explainers.imagenet_class_set("butterfly")  # plurals too
    with pytest.raises(explainers.ExplainerError, match="No ImageNet class set"):
        explainers.imagenet_class_set("unicorn")
