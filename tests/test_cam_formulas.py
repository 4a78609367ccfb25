"""Every CAM-family method against its paper's formula, on networks whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nets import FixedFeatures, GapLinearNet, TwoLayerHead

import explainers
from explainers.cam_formulas import principal_projection
from explainers.engine import normalise

SIZE = 32


def upsample(maps: torch.Tensor, size: int = SIZE) -> np.ndarray:
    """[h, w] -> [size, size] the way the engine must do it (bilinear, half-pixel centres)."""
    return F.interpolate(maps[None, None].float(), size=(size, size), mode="bilinear", align_corners=False)[
        0, 0
    ].numpy()


def raw(net, x, method, target, layer="features", counterfactual=False) -> np.ndarray:
    return (
        explainers.explain(net, x, [method], targets=[target], layer=layer, counterfactual=counterfactual).maps[0].raw
    )


@pytest.fixture(scope="module")
def gap_net():
    net = GapLinearNet().eval()
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        activations = net.features(net.conv(x))[0]  # [C, h, w]
    return net, x, activations


def test_cam_is_the_classifier_weighted_sum(gap_net):
    net, x, a = gap_net
    for c in range(4):
        expected = torch.einsum("k,khw->hw", net.fc.weight[c].detach(), a)
        np.testing.assert_allclose(raw(net, x, "cam", c), upsample(expected.clamp(min=0)), atol=1e-5)
        np.testing.assert_allclose(
            raw(net, x, "cam", c, counterfactual=True), upsample((-expected).clamp(min=0)), atol=1e-5
        )


@pytest.mark.parametrize("method", ["gradcam", "hirescam", "xgradcam"])
def test_on_gap_linear_networks_gradient_cams_equal_cam_up_to_scale(gap_net, method):
    """Grad-CAM paper, sec. 3.1: with GAP + one linear layer, dY/dA_kij = w_k / (h w)."""
    net, x, a = gap_net
    area = a.shape[1] * a.shape[2]
    for c in range(4):
        for counterfactual in (False, True):
            cam = raw(net, x, "cam", c, counterfactual=counterfactual)
            np.testing.assert_allclose(
                raw(net, x, method, c, counterfactual=counterfactual), cam / area, rtol=1e-4, atol=1e-7
            )


def test_layercam_keeps_only_positive_gradients(gap_net):
    net, x, a = gap_net
    area = a.shape[1] * a.shape[2]
    for c in range(4):
        weights = net.fc.weight[c].detach()
        expected = torch.einsum("k,khw->hw", weights.clamp(min=0), a) / area
        np.testing.assert_allclose(raw(net, x, "layercam", c), upsample(expected), rtol=1e-4, atol=1e-7)
        flipped = torch.einsum("k,khw->hw", (-weights).clamp(min=0), a) / area
        np.testing.assert_allclose(
            raw(net, x, "layercam", c, counterfactual=True), upsample(flipped), rtol=1e-4, atol=1e-7
        )


def test_gradcam_plus_plus_closed_form_on_gap_linear(gap_net):
    """alpha_kij = g^2 / (2 g^2 + S_k g^3) with g = w_k / (h w) and S_k = sum_ij A_kij."""
    net, x, a = gap_net
    area = a.shape[1] * a.shape[2]
    totals = a.sum(dim=(1, 2))
    for c in range(4):
        g = net.fc.weight[c].detach() / area
        alpha = g**2 / (2 * g**2 + totals * g**3)
        weights = area * alpha * g.clamp(min=0)
        expected = torch.einsum("k,khw->hw", weights, a).clamp(min=0)
        np.testing.assert_allclose(raw(net, x, "gradcam++", c), upsample(expected), rtol=1e-4, atol=1e-7)


def head_gradients(net: TwoLayerHead, x: torch.Tensor, layer: str, target: int):
    """Activations and d(logit)/d(activations) computed by hand, without the engine."""
    pre = net.conv(x)
    a = pre if layer == "conv" else torch.clamp(pre, 0, 6)
    a = a.detach().requires_grad_(True)
    after = torch.clamp(a, 0, 6) if layer == "conv" else a
    logits = net.fc(torch.relu(net.mix(after)).mean(dim=(2, 3)))
    (g,) = torch.autograd.grad(logits[0, target], a)
    return a.detach()[0], g[0]


def reference_maps(a: torch.Tensor, g: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each paper's formula written out channel by channel, in float64."""
    a, g = a.double(), g.double()
    out = {}
    out["gradcam"] = sum(g[k].mean() * a[k] for k in range(len(a)))
    out["hirescam"] = sum(g[k] * a[k] for k in range(len(a)))
    out["layercam"] = sum(g[k].clamp(min=0) * a[k] for k in range(len(a)))
    out["xgradcam"] = sum((g[k] * a[k]).sum() / (a[k].sum() + 1e-7) * a[k] for k in range(len(a)))
    pp = 0
    for k in range(len(a)):
        denominator = 2 * g[k] ** 2 + a[k].sum() * g[k] ** 3
        alpha = torch.where(denominator != 0, g[k] ** 2 / torch.where(denominator != 0, denominator, 1), 0)
        pp = pp + (alpha * g[k].clamp(min=0)).sum() * a[k]
    out["gradcam++"] = pp
    return {name: m.clamp(min=0).float() for name, m in out.items()}


@pytest.mark.parametrize("layer", ["conv", "features"])
@pytest.mark.parametrize("method", ["gradcam", "hirescam", "layercam", "xgradcam", "gradcam++"])
def test_gradient_cams_match_their_formulas_where_gradients_vary(method, layer):
    """A head with a 1x1 conv and ReLU makes gradients vary in space; the layer "conv" is followed
    by an in-place ReLU6, which must not leak into the captured activations."""
    net = TwoLayerHead().eval()
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    for target in range(3):
        a, g = head_gradients(net, x, layer, target)
        expected = reference_maps(a, g)[method]
        np.testing.assert_allclose(raw(net, x, method, target, layer=layer), upsample(expected), rtol=1e-4, atol=1e-6)
        flipped = reference_maps(a, -g)[method]
        np.testing.assert_allclose(
            raw(net, x, method, target, layer=layer, counterfactual=True), upsample(flipped), rtol=1e-4, atol=1e-6
        )


def test_cam_refuses_heads_that_are_not_gap_plus_linear():
    net = TwoLayerHead().eval()
    x = torch.randn(1, 3, SIZE, SIZE)
    with pytest.raises(explainers.ExplainerError, match="global average pooling"):
        explainers.explain(net, x, ["cam"], layer="features")
    reasons = explainers.availability(net, "features")
    assert "linear" in reasons["cam"] and reasons["gradcam"] is None


def rank_one(seed: int, channels: int = 7, h: int = 6, w: int = 6):
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand(h * w, generator=generator) ** 2
    v = torch.rand(channels, generator=generator)
    activations = (v[:, None] * u[None, :]).reshape(1, channels, h, w)
    return activations, u.reshape(h, w)


@pytest.mark.parametrize("seed", range(6))
def test_eigencam_of_rank_one_activations_is_their_spatial_factor(seed):
    """A = u v^T: the principal direction is v and the projection A v is proportional to u,
    with the sign that points at the activations."""
    activations, u = rank_one(seed)
    net = FixedFeatures(activations).eval()
    x = torch.zeros(1, 3, SIZE, SIZE)
    for target in range(3):
        got = explainers.explain(net, x, ["eigencam"], targets=[target], layer="features").maps[0]
        np.testing.assert_allclose(got.map, normalise(upsample(u)), atol=1e-4)


def test_eigencam_component_picks_the_second_principal_direction():
    h = w = 6
    yy, xx = torch.meshgrid(torch.arange(h) - 2.5, torch.arange(w) - 2.5, indexing="ij")
    u1, u2 = xx.flatten(), yy.flatten()  # zero-mean, orthogonal spatial patterns
    v1 = torch.tensor([1.0, -1.0, 0.0, 0.0]) / 2**0.5
    v2 = torch.tensor([0.0, 0.0, 1.0, 1.0]) / 2**0.5  # positive mean: points at the activations
    activations = (3 * v1[:, None] * u1 + v2[:, None] * u2).reshape(1, 4, h, w)
    net = FixedFeatures(activations).eval()
    x = torch.zeros(1, 3, SIZE, SIZE)
    options = explainers.Options(eigen_component=1)
    got = explainers.explain(net, x, ["eigencam"], layer="features", options=options).maps[0]
    np.testing.assert_allclose(got.map, normalise(upsample(u2.reshape(h, w).clamp(min=0))), atol=1e-4)
    first = explainers.explain(net, x, ["eigencam"], layer="features").maps[0]
    # v1 has zero channel mean, so either sign of u1 is as good a direction: the default is u1's.
    agreement = max(
        np.corrcoef(first.raw.ravel(), upsample(s * u1.reshape(h, w)).clip(0).ravel())[0, 1] for s in (1, -1)
    )
    assert agreement > 0.99


def test_eigengradcam_projects_gradient_times_activation():
    net = TwoLayerHead().eval()
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    a, g = head_gradients(net, x, "features", 1)
    product = (a * g).reshape(len(a), -1).T.double()  # [hw, C]
    _, _, vh = torch.linalg.svd(product - product.mean(0), full_matrices=False)
    projection = product @ vh[0]
    mean_map = product.mean(1)
    if np.corrcoef(projection, mean_map)[0, 1] < 0:
        projection = -projection
    expected = projection.reshape(a.shape[1:]).clamp(min=0).float()
    np.testing.assert_allclose(raw(net, x, "eigengradcam", 1), upsample(expected), rtol=1e-3, atol=1e-6)


def svd_projection(features: torch.Tensor, component: int) -> torch.Tensor:
    """Eigen-CAM's projection written with a full SVD of each centred [h*w, C] matrix, in float64,
    with the sign that correlates positively with the channel mean: the reference form."""
    channels, h, w = features.shape[-3:]
    maps = []
    for one in features.reshape(-1, channels, h * w).double():
        matrix = one.T  # [hw, C]
        _, _, vh = torch.linalg.svd(matrix - matrix.mean(0), full_matrices=False)
        projection = matrix @ vh[component]
        if np.corrcoef(projection.numpy(), matrix.mean(1).numpy())[0, 1] < 0:
            projection = -projection
        maps.append(projection)
    return torch.stack(maps).reshape(*features.shape[:-3], h, w)


@pytest.mark.parametrize(
    "shape",
    [(2, 3, 8, 12, 12), (1, 2, 64, 3, 3), (2, 4, 5, 5)],  # tall [hw > C], wide [hw < C], no target axis
    ids=["tall", "wide", "unbatched"],
)
@pytest.mark.parametrize("component", [0, 1])
def test_principal_projection_equals_the_svd_form_with_its_sign(shape, component):
    generator = torch.Generator().manual_seed(sum(shape) + component)
    # A few strong spatial patterns on top of noise, so that the leading components are well separated.
    *lead, channels, h, w = shape
    patterns = torch.randn(*lead, 3, h * w, generator=generator)
    loadings = torch.randn(*lead, channels, 3, generator=generator) * torch.tensor([6.0, 3.0, 1.5])
    features = (loadings @ patterns).reshape(shape) + 0.1 * torch.randn(shape, generator=generator) + 0.5
    got = principal_projection(features, component)
    expected = svd_projection(features, component)
    assert got.shape == expected.shape == (*lead, h, w)
    np.testing.assert_allclose(got.numpy(), expected.float().numpy(), rtol=1e-4, atol=1e-4)
