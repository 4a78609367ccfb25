"""Our maps against the published reference implementation (pytorch-grad-cam) on real models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import explainers
import models

pgc = pytest.importorskip("pytorch_grad_cam", reason="pip install -r requirements-bench.txt")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.fixture(scope="module")
def lite0():
    """The shared cached model; the peer's backward passes leave .grad on its parameters, which
    later tests of the same process (the app's) would see: cleared afterwards."""
    classifier = models.load("efficientnet_lite0", device="cpu")
    x = classifier.preprocess(Image.open(ASSETS / "cat_and_coffee.jpg"))
    yield classifier, x
    classifier.module.zero_grad(set_to_none=True)


@pytest.mark.parametrize(
    "method, peer",
    [
        ("gradcam", "GradCAM"),
        ("gradcam++", "GradCAMPlusPlus"),
        ("xgradcam", "XGradCAM"),
        ("hirescam", "HiResCAM"),
        ("layercam", "LayerCAM"),
        ("ablationcam", "AblationCAM"),
    ],
)
def test_cams_agree_with_pytorch_grad_cam_on_efficientnet_lite0(lite0, method, peer):
    classifier, x = lite0
    ours = explainers.explain(classifier, x, [method], top_k=1 if method == "ablationcam" else 2)  # theirs is slow
    layer = dict(classifier.module.named_modules())[ours.layer]
    targets = ours.targets[0]
    with getattr(pgc, peer)(model=classifier.module, target_layers=[layer]) as cam:
        theirs = cam(
            input_tensor=x.expand(len(targets), -1, -1, -1), targets=[ClassifierOutputTarget(t) for t in targets]
        )
    for i, t in enumerate(targets):
        assert correlation(ours.get(method, t).map, theirs[i]) > 0.99


def test_guided_backprop_agrees_on_a_relu_network():
    """pytorch-grad-cam's guided backprop swaps nn.ReLU only, so compare on a ReLU network
    (on ReLU6 networks it silently returns the plain gradient; ours gates ReLU6 too)."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    ours = explainers.explain(net, x, ["guided_backprop"], targets=[3, 7])
    reference = pgc.GuidedBackpropReLUModel(model=net, device=torch.device("cpu"))
    for t in (3, 7):
        theirs = np.abs(reference(x, target_category=t)).max(axis=-1)
        assert correlation(ours.get("guided_backprop", t).raw, theirs) > 0.999
    assert sum(len(m._forward_hooks) for m in net.modules()) == 0


SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"
SAMPLE_IMAGES = ["n01440764_tench.JPEG", "n02088094_Afghan_hound.JPEG", "n03498962_hatchet.JPEG"]


@pytest.mark.long
@pytest.mark.skipif(not SAMPLE.is_dir(), reason="needs ../shared/data/imagenet-sample")
def test_score_cam_agrees_with_torchcam_on_imagenet_photos():
    """Our default Score-CAM (the authors' weights p_c(X * H_k)) against torchcam's ScoreCAM at
    efficientnet_lite0's default layer. torchcam weighs by a softmax over channels of the masked
    logits, not by the probability, so the maps differ a little: measured r = 0.996, 0.991, 0.971."""
    torchcam = pytest.importorskip("torchcam.methods")
    import torch.nn.functional as F

    classifier = models.load("efficientnet_lite0", device="cpu")
    correlations = []
    for name in SAMPLE_IMAGES:
        x = classifier.preprocess(Image.open(SAMPLE / name))
        ours = explainers.explain(classifier, x, ["scorecam"], top_k=1)
        target = ours.targets[0][0]
        with torchcam.ScoreCAM(classifier.module, target_layer=ours.layer, batch_size=32) as cam:
            with torch.no_grad():
                classifier.module(x)
            theirs = cam(class_idx=target)[0]
        theirs = F.interpolate(theirs[None].float(), size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        correlations.append(correlation(ours.maps[0].map, theirs.numpy()))
    assert min(correlations) >= 0.95 and np.mean(correlations) >= 0.98, correlations
