"""Vision transformers (timm ViT, DeiT, Swin; random weights): every CAM method on token layers,
the default layers, and agreement with pytorch-grad-cam given its hand-written reshape transforms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from token_nets import tiny_swin, tiny_vit

import explainers
import models

timm = pytest.importorskip("timm")
ASSETS = Path(__file__).resolve().parents[1] / "assets"
CAM_METHODS = [
    "gradcam",
    "gradcam++",
    "xgradcam",
    "hirescam",
    "layercam",
    "scorecam",
    "ablationcam",
    "eigencam",
    "eigengradcam",
]


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def assert_informative(result: explainers.Explanation) -> None:
    """Every map finite and not constant."""
    for item in result.maps:
        assert np.isfinite(item.raw).all(), (item.method, item.target)
        assert item.raw.max() > item.raw.min() and item.map.max() == 1.0, (item.method, item.target)


def classifier_of(module: torch.nn.Module, size: int) -> models.Classifier:
    labels = [f"class {i}" for i in range(module.num_classes)]
    return models.Classifier("test", module, labels, models.Preprocessing(size, (size, size)), "cpu")


@pytest.mark.parametrize(
    "make, size, layer, prefix",
    [
        (tiny_vit, 96, "blocks.1.norm1", 1),
        (lambda: tiny_vit(distilled=True), 96, "blocks.1.norm1", 2),
        (tiny_swin, 64, "layers.1.blocks.1.norm2", 0),
    ],
)
def test_every_cam_method_gives_maps_on_small_transformers(make, size, layer, prefix):
    classifier = classifier_of(make(), size)
    assert classifier.default_layer == layer
    info = {item.name: item for item in classifier.layers}[layer]
    assert info.is_token_layer and info.prefix_tokens == prefix
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    result = explainers.explain(classifier, x, CAM_METHODS, top_k=2)
    assert result.layer == layer and len(result.maps) == 2 * len(CAM_METHODS)
    assert_informative(result)


def test_guided_fusions_on_a_vit_with_relu_mlps():
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    result = explainers.explain(
        tiny_vit(relu=True), x, ["guided_gradcam", "guided_layercam"], targets=[0, 4], layer="blocks.1.norm1"
    )
    assert_informative(result)


@pytest.mark.parametrize(
    "name, layer, prefix",
    [
        ("vit_tiny_patch16_224", "blocks.11.norm1", 1),
        ("deit_tiny_distilled_patch16_224", "blocks.11.norm1", 2),
        ("swin_tiny_patch4_window7_224", "layers.3.blocks.1.norm2", 0),
    ],
)
def test_timm_transformers_default_layer_and_gradient_cams(name, layer, prefix):
    torch.manual_seed(0)
    classifier = classifier_of(timm.create_model(name, pretrained=False), 224)
    assert classifier.default_layer == layer
    assert layer in classifier.default_layer_reason
    info = {item.name: item for item in classifier.layers}[layer]
    assert info.shape == (
        (192 if "tiny_" in name and "swin" not in name else 768),
        *((7, 7) if "swin" in name else (14, 14)),
    )
    assert info.prefix_tokens == prefix
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    methods = ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam", "eigengradcam"]
    if "swin" not in name:  # Swin-T's 768 channels make Ablation-CAM slow on a CPU
        methods.append("ablationcam")
    assert_informative(explainers.explain(classifier, x, methods, top_k=2))


# ----------------------------------------------------------------------------- pytorch-grad-cam

pgc = pytest.importorskip("pytorch_grad_cam", reason="pip install -r requirements-bench.txt")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402


def vit_reshape(tensor: torch.Tensor, height: int = 14, width: int = 14) -> torch.Tensor:
    """pytorch-grad-cam's ViT reshape transform (its tutorial): drop the class token, tokens to a grid."""
    result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


def swin_reshape(tensor: torch.Tensor, height: int = 7, width: int = 7) -> torch.Tensor:
    """pytorch-grad-cam's Swin reshape transform (its swinT example)."""
    result = tensor.reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


def photo(module: torch.nn.Module) -> torch.Tensor:
    from models.timm_zoo import preprocessing_of

    return preprocessing_of(module)(Image.open(ASSETS / "cat_and_coffee.jpg"))


@pytest.mark.parametrize(
    "name, layer, reshape, pairs",
    [
        ("vit_small_patch16_224", "blocks.11.norm1", vit_reshape, [("gradcam", "GradCAM"), ("layercam", "LayerCAM")]),
        ("swin_tiny_patch4_window7_224", "layers.3.blocks.1.norm2", swin_reshape, [("gradcam", "GradCAM")]),
    ],
)
def test_agrees_with_pytorch_grad_cam_on_timm_transformers(name, layer, reshape, pairs):
    torch.manual_seed(0)
    module = timm.create_model(name, pretrained=False).eval()
    x = photo(module)
    ours = explainers.explain(module, x, [method for method, _ in pairs], top_k=2, layer=layer)
    targets = ours.targets[0]
    for method, peer in pairs:
        with getattr(pgc, peer)(
            model=module, target_layers=[module.get_submodule(layer)], reshape_transform=reshape
        ) as cam:
            theirs = cam(
                input_tensor=x.expand(len(targets), -1, -1, -1), targets=[ClassifierOutputTarget(t) for t in targets]
            )
        for i, target in enumerate(targets):
            assert correlation(ours.get(method, target).map, theirs[i]) >= 0.99, (method, target)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in module.modules())


def test_dynamic_image_size_uses_the_grid_of_this_input():
    module = tiny_vit(dynamic_img_size=True)
    x = torch.randn(1, 3, 96, 160, generator=torch.Generator().manual_seed(3))  # a 6 x 10 grid
    ours = explainers.explain(module, x, ["gradcam"], targets=[1, 7], layer="blocks.1.norm1")
    with pgc.GradCAM(
        model=module, target_layers=[module.blocks[1].norm1], reshape_transform=lambda t: vit_reshape(t, 6, 10)
    ) as cam:
        theirs = cam(input_tensor=x.expand(2, -1, -1, -1), targets=[ClassifierOutputTarget(t) for t in (1, 7)])
    for i, target in enumerate((1, 7)):
        assert ours.get("gradcam", target).map.shape == (96, 160)
        assert correlation(ours.get("gradcam", target).map, theirs[i]) >= 0.999
