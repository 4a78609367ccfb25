"""Score-CAM and Ablation-CAM against their papers' definitions, written channel by channel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nets import TwoLayerHead

import explainers

SIZE = 16


def head_net() -> TwoLayerHead:
    """TwoLayerHead whose channel 0 is constant (zero weights, bias 1 -> ReLU6 gives 1)."""
    net = TwoLayerHead(channels=5, classes=3).eval()
    with torch.no_grad():
        net.conv.weight[0] = 0
        net.conv.bias[0] = 1.0
    return net


def activations_of(net: TwoLayerHead, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.clamp(net.conv(x), 0, 6)[0]


def upsampled_sum(weights, a) -> np.ndarray:
    cam = sum(w * a[k] for k, w in enumerate(weights)).clamp(min=0)
    return F.interpolate(cam[None, None], size=(SIZE, SIZE), mode="bilinear", align_corners=False)[0, 0].numpy()


def score_cam_reference(net, x, target: int, sign: float = 1.0, baseline: bool = False) -> np.ndarray:
    """Wang et al. 2020, Algorithm 1, one masked forward pass per channel: the weight is p_c(X * H_k)
    as in the authors' code, or with eq. 4's baseline, p_c(X * H_k) - p_c(X * 0)."""
    a = activations_of(net, x)
    with torch.no_grad():
        baseline = F.softmax(net(torch.zeros_like(x)), dim=1)[0, target] if baseline else 0.0
        weights = []
        for k in range(len(a)):
            mask = F.interpolate(a[k][None, None], size=(SIZE, SIZE), mode="bilinear", align_corners=False)
            if mask.max() == mask.min():
                weights.append(0.0)
                continue
            mask = (mask - mask.min()) / (mask.max() - mask.min())
            weights.append(sign * float(F.softmax(net(x * mask), dim=1)[0, target] - baseline))
    return upsampled_sum(weights, a)


def ablation_reference(net, x, target: int, sign: float = 1.0, baseline: bool = False) -> np.ndarray:
    """Desai & Ramaswamy 2020, eq. 3 with channel k set to zero, divided by |y_c| (the paper: y_c):
    w_k = (y_c - y_c^k) / |y_c|."""
    a = activations_of(net, x)

    def head(features):
        return net.fc(torch.relu(net.mix(features[None])).mean(dim=(2, 3)))[0, target]

    with torch.no_grad():
        y = head(a)
        weights = []
        for k in range(len(a)):
            ablated = a.clone()
            ablated[k] = 0
            weights.append(sign * float((y - head(ablated)) / y.abs()))
    return upsampled_sum(weights, a)


@pytest.mark.parametrize("counterfactual, baseline", [(False, False), (False, True), (True, False)])
@pytest.mark.parametrize("method, reference", [("scorecam", score_cam_reference), ("ablationcam", ablation_reference)])
def test_perturbation_methods_match_the_paper(method, reference, counterfactual, baseline):
    """Score-CAM: the authors' form by default, the paper's baseline form as an option and for
    every counterfactual map (negated plain probabilities would all be negative)."""
    net = head_net()
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(7))
    sign = -1.0 if counterfactual else 1.0
    result = explainers.explain(
        net,
        x,
        [method],
        targets=[0, 1, 2],
        layer="features",
        counterfactual=counterfactual,
        options=explainers.Options(batch_size=2, score_cam_baseline=baseline),
    )
    for target in range(3):
        expected = reference(net, x, target, sign, baseline or counterfactual)
        got = result.get(method, target).raw
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_ablation_runs_only_the_part_after_the_layer_once_per_chunk():
    net = head_net()
    calls = {"conv": 0}
    net.conv.register_forward_hook(lambda *args: calls.__setitem__("conv", calls["conv"] + 1))
    x = torch.randn(1, 3, SIZE, SIZE)
    explainers.explain(
        net, x, ["ablationcam"], targets=[0, 1], layer="features", options=explainers.Options(batch_size=64)
    )
    assert calls["conv"] == 2  # the shared forward pass + one ablation chunk for all channels, all targets


def test_score_cam_serves_all_targets_with_one_masked_pass_per_channel():
    net = head_net()
    seen = []
    net.conv.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[0]))
    x = torch.randn(1, 3, SIZE, SIZE)
    explainers.explain(
        net, x, ["scorecam"], targets=[0, 1, 2], layer="features", options=explainers.Options(batch_size=64)
    )
    # shared forward (1) + the 4 varying channels in one batch, for 3 targets
    assert sorted(seen) == [1, 4]


def test_channels_with_the_same_mask_share_one_forward_pass():
    from explainers.perturbation import distinct_masks

    base = torch.rand(4, 4, generator=torch.Generator().manual_seed(0))
    other = torch.rand(4, 4, generator=torch.Generator().manual_seed(1))
    activations = torch.stack([base, 2 * base + 0.5, torch.full((4, 4), 3.0), other, base])
    representatives, slot = distinct_masks(activations)
    assert sorted(representatives.tolist()) == [0, 3]
    assert slot[2] == -1  # constant: no mask, weight 0
    assert slot[0] == slot[1] == slot[4] != slot[3]


def oom_above(net: TwoLayerHead, limit: int, allowed_calls: int = 10**9):
    """Makes the network's head raise the CUDA allocator's error for batches above `limit`, or
    for every call after the first `allowed_calls`."""
    calls = {"n": 0}

    def check(module, inputs):
        calls["n"] += 1
        if inputs[0].shape[0] > limit or calls["n"] > allowed_calls:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    return net.mix.register_forward_pre_hook(check)


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_out_of_memory_retries_with_smaller_batches(method):
    net = head_net()
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(9))
    expected = explainers.explain(net, x, [method], targets=[0, 2], layer="features")
    handle = oom_above(net, limit=1)
    got = explainers.explain(
        net, x, [method], targets=[0, 2], layer="features", options=explainers.Options(batch_size=8)
    )
    handle.remove()
    for a, b in zip(expected.maps, got.maps):
        np.testing.assert_allclose(a.raw, b.raw, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_out_of_memory_at_batch_one_is_a_clear_message_and_leaves_the_model_clean(method):
    net = head_net()
    handle = oom_above(net, limit=10**9, allowed_calls=1)  # the shared forward pass fits, nothing else
    with pytest.raises(explainers.ExplainerError, match="Out of memory"):
        explainers.explain(net, torch.randn(1, 3, SIZE, SIZE), [method], layer="features")
    handle.remove()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())
    explainers.explain(net, torch.randn(1, 3, SIZE, SIZE), [method], layer="features")  # still works


def test_ablation_cam_keeps_its_sign_for_a_class_with_a_negative_logit():
    """Dividing by |y_c| (ours) rather than y_c (paper, pytorch-grad-cam): for a class whose logit
    is negative, the channel that supports the class still gets a positive weight."""
    from nets import FixedFeatures

    activations = torch.zeros(1, 2, 4, 4)
    activations[0, 0, :2] = 1.0  # channel 0: top half
    activations[0, 1, 2:] = 1.0  # channel 1: bottom half
    net = FixedFeatures(activations, classes=2).eval()
    with torch.no_grad():
        net.fc.weight.copy_(torch.tensor([[1.0, -3.0], [0.0, 0.0]]))  # class 0: channel 0 helps, 1 hurts
        net.fc.bias.zero_()
    x = torch.zeros(1, 3, 4, 4)
    logit = float(net(x)[0, 0].detach())
    assert logit < 0  # 0.5 * 1 - 0.5 * 3
    got = explainers.explain(net, x, ["ablationcam"], targets=[0], layer="features").maps[0].raw
    # w_0 = (y - y^0) / |y| = 0.5 / 1 > 0, w_1 = -1.5 / 1 < 0: the map shows the top half only
    np.testing.assert_allclose(got[:2], 0.5, rtol=1e-5)
    np.testing.assert_allclose(got[2:], 0.0, atol=1e-7)
