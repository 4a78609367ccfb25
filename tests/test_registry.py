"""The method registry: a method is one unit declaring what it needs; the engine knows no method."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nets import GapLinearNet

import explainers
from explainers import Method, MethodInfo, Needs

ENGINE = Path(explainers.__file__).with_name("engine.py")


def test_no_method_name_appears_in_the_engine():
    source = ENGINE.read_text()
    for name in explainers.METHODS:
        assert not re.search(rf"[\"']{re.escape(name)}[\"']", source), name


@pytest.fixture
def registered():
    """Registers test-only methods for one test, and removes them after."""
    names = []

    def add(method: Method) -> Method:
        explainers.register(method)
        names.append(method.info.name)
        return method

    yield add
    for name in names:
        explainers.unregister(name)


def test_a_method_added_in_a_test_runs_through_the_engine(registered):
    """A gradient x activation map (HiResCAM written again) and a plain channel mean, each declaring
    its needs; the engine records what they need and nothing else."""
    seen = {}

    def gradient_times_activation(context, progress):
        record = context.recording
        seen["grads"] = record.layer_grads is not None
        return (record.layer_grads * record.activations).sum(dim=-3).clamp(min=0)

    def channel_mean(context, progress):
        seen["mean_grads"] = context.recording.layer_grads
        return context.recording.activations.mean(dim=1)[None]

    registered(
        Method(
            MethodInfo(
                "test_gxa",
                "Test GxA",
                "cam",
                "a test",
                "gradient x activation",
                counterfactual=True,
                needs=Needs(layer=True, layer_gradient=True),
            ),
            gradient_times_activation,
        )
    )
    registered(
        Method(
            MethodInfo("test_mean", "Test mean", "cam", "a test", "channel mean", counterfactual=False),
            channel_mean,
            no_counterfactual="Test mean has no class.",
        )
    )
    net = GapLinearNet().eval()
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert "test_gxa" in explainers.METHODS and explainers.availability(net, "features")["test_gxa"] is None
    result = explainers.explain(net, x, ["test_gxa", "hirescam", "guided_test_gxa"], top_k=2, layer="features")
    for target in result.targets[0]:
        np.testing.assert_allclose(result.get("test_gxa", target).raw, result.get("hirescam", target).raw, rtol=1e-6)
    assert seen["grads"]
    alone = explainers.explain(net, x, ["test_mean"], layer="features")
    assert seen["mean_grads"] is None  # no method asked for gradients: none were taken
    with torch.no_grad():
        expected = net.features(net.conv(x))[0].mean(dim=0)
    np.testing.assert_allclose(
        alone.maps[0].raw,
        F.interpolate(expected[None, None], size=(16, 16), mode="bilinear", align_corners=False)[0, 0].numpy(),
        rtol=1e-5,
    )
    with pytest.raises(explainers.ExplainerError, match="Test mean has no class"):
        explainers.explain(net, x, ["test_mean"], layer="features", counterfactual=True)


def test_unregistered_methods_are_gone(registered):
    registered(
        Method(
            MethodInfo("test_gone", "Gone", "cam", "a test", "x", counterfactual=False),
            lambda context, progress: context.recording.activations.sum(dim=1)[None],
        )
    )
    explainers.unregister("test_gone")
    assert "test_gone" not in explainers.METHODS
    with pytest.raises(explainers.ExplainerError, match="Unknown method"):
        explainers.explain(GapLinearNet().eval(), torch.randn(1, 3, 8, 8), ["test_gone"], layer="features")
    with pytest.raises(explainers.ExplainerError, match="registered already"):
        explainers.register(explainers.methods.get_method("gradcam"))


def test_a_method_check_makes_it_unavailable_with_its_reason(registered):
    registered(
        Method(
            MethodInfo("test_picky", "Picky", "input-gradient", "a test", "x", counterfactual=False, needs=Needs()),
            lambda context, progress: context.x.sum(dim=1)[None],
            check=lambda module: "Picky refuses every model.",
        )
    )
    net = GapLinearNet().eval()
    assert explainers.availability(net, "features")["test_picky"] == "Picky refuses every model."
    with pytest.raises(explainers.ExplainerError, match="refuses"):
        explainers.explain(net, torch.randn(1, 3, 8, 8), ["test_picky"])


def test_method_info_keeps_its_public_fields():
    for name, info in explainers.METHODS.items():
        assert info.name == name and info.title and info.paper and info.summary
        assert info.kind in ("cam", "perturbation", "input-gradient", "fusion", "attention")
        assert isinstance(info.counterfactual, bool) and isinstance(info.slow, bool)
        assert info.needs_layer == info.needs.layer
    fusion = explainers.method_info("guided_scorecam")
    assert fusion.kind == "fusion" and fusion.slow and fusion.needs_layer and fusion.needs_input_gradient
    assert not explainers.method_info("rise").needs_layer
    with pytest.raises(explainers.ExplainerError, match="Unknown method"):
        explainers.method_info("guided_rise")  # RISE has no layer-resolution map to fuse
