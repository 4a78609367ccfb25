"""Gradient, SmoothGrad, Integrated Gradients and guided backpropagation against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nets import LinearPixels
from torch import nn

import explainers

SIZE = 8


@pytest.fixture(scope="module")
def linear():
    net = LinearPixels(SIZE).eval()
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    return net, x


def class_weights(net: LinearPixels, c: int) -> torch.Tensor:
    return net.fc.weight[c].detach().reshape(3, SIZE, SIZE)


@pytest.mark.parametrize("method", ["gradient", "smoothgrad"])
def test_gradient_maps_of_a_linear_model_are_its_weights(linear, method):
    net, x = linear
    for c in range(3):
        got = explainers.explain(net, x, [method], targets=[c]).maps[0].raw
        np.testing.assert_allclose(got, class_weights(net, c).abs().amax(dim=0).numpy(), rtol=1e-5)


def test_integrated_gradients_of_a_linear_model_is_input_times_weight(linear):
    """Exact for linear models, and complete: the attributions add up to f(x) - f(0)."""
    net, x = linear
    for c in range(3):
        attribution = (x[0] * class_weights(net, c)).sum(dim=0)
        got = explainers.explain(net, x, ["integrated_gradients"], targets=[c]).maps[0].raw
        np.testing.assert_allclose(got, attribution.clamp(min=0).numpy(), rtol=1e-4, atol=1e-6)
        with torch.no_grad():
            difference = net(x)[0, c] - net(torch.zeros_like(x))[0, c]
        assert float(attribution.sum()) == pytest.approx(float(difference), rel=1e-4)
        flipped = explainers.explain(net, x, ["integrated_gradients"], targets=[c], counterfactual=True).maps[0].raw
        np.testing.assert_allclose(flipped, (-attribution).clamp(min=0).numpy(), rtol=1e-4, atol=1e-6)


def test_guided_backprop_needs_relus(linear):
    net, x = linear
    with pytest.raises(explainers.ExplainerError, match="ReLU"):
        explainers.explain(net, x, ["guided_backprop"])
    assert "ReLU" in explainers.availability(net)["guided_backprop"]


class ReluNet(nn.Module):
    """conv -> ReLU(in-place) -> conv -> ReLU6(in-place) ["features"] -> GAP -> linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(11)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.features = nn.ReLU6(inplace=True)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.features(self.conv2(self.relu(self.conv1(x)))).mean(dim=(2, 3)))


def guided_reference(net: ReluNet, x: torch.Tensor, target: int, sign: float = 1.0) -> torch.Tensor:
    """Springenberg et al.'s rule, by hand: at every ReLU, grad_in = [x > 0] [grad_out > 0] grad_out
    (for ReLU6 the forward mask is [0 < x < 6])."""
    z1 = net.conv1(x)
    z2 = net.conv2(torch.relu(z1))
    area = z2.shape[2] * z2.shape[3]
    g = sign * net.fc.weight[target].detach()[None, :, None, None].expand_as(z2) / area
    g = g.clamp(min=0) * ((z2 > 0) & (z2 < 6))
    (g,) = torch.autograd.grad(z2, z1, g, retain_graph=True)  # through conv2 and the first ReLU
    g = g.clamp(min=0)  # torch already applied [z1 > 0]; guided also blocks negative gradients
    (g,) = torch.autograd.grad(z1, x, g)
    return g[0]


@pytest.mark.parametrize("counterfactual", [False, True])
def test_guided_backprop_follows_the_rule_for_relu_and_relu6_in_place(counterfactual):
    net = ReluNet().eval()
    x = torch.randn(1, 3, 12, 12, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    result = explainers.explain(
        net,
        x.detach(),
        ["guided_backprop", "gradient"] if not counterfactual else ["guided_backprop"],
        targets=[0, 1, 2, 3],
        counterfactual=counterfactual,
    )
    for target in range(4):
        expected = guided_reference(net, x, target, -1.0 if counterfactual else 1.0).abs().amax(dim=0)
        np.testing.assert_allclose(result.get("guided_backprop", target).raw, expected.numpy(), rtol=1e-5, atol=1e-8)
    if not counterfactual:  # the plain gradient from the same forward pass is not gated
        logits = net(x)
        (plain,) = torch.autograd.grad(logits[0, 2], x)
        np.testing.assert_allclose(
            result.get("gradient", 2).raw, plain[0].abs().amax(dim=0).numpy(), rtol=1e-5, atol=1e-8
        )


def test_guided_gradcam_is_guided_backprop_times_upsampled_gradcam():
    net = ReluNet().eval()
    x = torch.randn(1, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    result = explainers.explain(
        net, x, ["guided_gradcam", "guided_backprop", "gradcam"], targets=[1, 3], layer="features"
    )
    for target in (1, 3):
        expected = result.get("guided_backprop", target).raw * result.get("gradcam", target).raw
        np.testing.assert_allclose(result.get("guided_gradcam", target).raw, expected, rtol=1e-5, atol=1e-10)


def test_any_cam_fuses_with_guided_backprop():
    net = ReluNet().eval()
    x = torch.randn(1, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    result = explainers.explain(
        net, x, ["guided_layercam", "guided_backprop", "layercam"], targets=[0], layer="features"
    )
    expected = result.get("guided_backprop", 0).raw * result.get("layercam", 0).raw
    np.testing.assert_allclose(result.get("guided_layercam", 0).raw, expected, rtol=1e-5, atol=1e-10)
    assert explainers.method_info("guided_scorecam").slow


def test_smoothgrad_is_repeatable_and_averages_noisy_gradients():
    net = ReluNet().eval()
    x = torch.randn(1, 3, 12, 12, generator=torch.Generator().manual_seed(4))
    first = explainers.explain(net, x, ["smoothgrad"], targets=[0]).maps[0].raw
    again = explainers.explain(net, x, ["smoothgrad"], targets=[0]).maps[0].raw
    np.testing.assert_array_equal(first, again)
    plain = explainers.explain(net, x, ["gradient"], targets=[0]).maps[0].raw
    assert not np.allclose(first, plain)  # the noise matters on a non-linear network


def test_vectorised_and_per_target_backward_passes_agree_with_guided_gates():
    """The vectorised path (used on CUDA) and the per-target path (used on the CPU) give the same
    gradients, also through the guided gates."""
    from explainers.gradients import batched_grad, target_directions
    from explainers.taps import GuidedSwitch, guided_relus

    net = ReluNet().eval()
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(6)).requires_grad_(True)
    switch = GuidedSwitch()
    with guided_relus(net, switch):
        logits = net(x)
    directions = target_directions(4, torch.tensor([[0, 1, 3], [2, 1, 0]]))
    with switch.active():
        vectorised = batched_grad(logits, x, directions, vectorised=True)
        looped = batched_grad(logits, x, directions, vectorised=False)
    assert vectorised.shape == (3, 2, 3, 12, 12)
    torch.testing.assert_close(vectorised, looped)
    assert (vectorised != 0).any()
