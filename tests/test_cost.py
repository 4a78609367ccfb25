"""The work estimate a request is refused or admitted by: forward-pass counts per method."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from explainers import ExplainerError, Options, cost


def test_perturbation_methods_cost_one_pass_per_channel_shared_by_all_targets():
    assert cost.method_passes("scorecam", targets=1, channels=512) == 512
    assert cost.method_passes("scorecam", targets=5, channels=512) == 512
    assert cost.method_passes("guided_scorecam", targets=5, channels=512) == 512  # its CAM's cost
    assert cost.method_passes("ablationcam", 3, 512, after_layer=0.25) == 128
    assert cost.method_passes("ablationcam", 3, 512, after_layer=0.0) == 512 * 0.05  # never free


def test_sampling_methods_cost_samples_times_targets_forward_and_backward():
    options = Options(smoothgrad_samples=10, ig_steps=20)
    assert cost.method_passes("smoothgrad", 2, 512, options) == 10 * 2 * 3
    assert cost.method_passes("integrated_gradients", 2, 512, options) == 20 * 2 * 3


def test_gradient_methods_only_share_the_common_passes():
    for method in (
        "gradcam",
        "layercam",
        "eigencam",
        "gradient",
        "guided_backprop",
        "guided_gradcam",
        "attention_rollout",
        "gradient_rollout",
    ):
        assert cost.method_passes(method, 3, 512) == 0, method
    shared = 1 + cost.BACKWARD * 3
    assert cost.request_passes(["gradcam", "layercam"], 3, 512) == shared
    assert cost.request_passes(["scorecam", "scorecam", "gradcam"], 3, 512) == shared + 512
    with pytest.raises(ExplainerError, match="Unknown method"):
        cost.method_passes("magic", 1, 512)


def test_seconds_per_pass_restores_each_modules_own_mode():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout(0.5), nn.ReLU())
    net[1].train()
    net[0].eval()
    seconds = cost.seconds_per_pass(net, (16, 16), batch=4, device="cpu")
    assert 0 < seconds < 5
    assert net[1].training and not net[0].training
    assert not any(p.grad is not None for p in net.parameters())
    assert torch.is_grad_enabled()


def test_rise_costs_one_pass_per_mask_shared_by_all_targets():
    assert cost.method_passes("rise", targets=1, channels=512) == 1000  # the CPU default
    assert cost.method_passes("rise", targets=5, channels=512, device="cuda") == 8000  # the paper's
    assert cost.request_passes(["rise"], 2, 512, Options(rise_masks=300)) == 1 + cost.BACKWARD * 2 + 300
