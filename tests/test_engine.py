"""The engine's promises: shared work, batches, clean models, thread safety, clear errors."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from test_input_gradient_methods import ReluNet
from torch import nn

import explainers
from explainers import cam_formulas

FAST = [
    "cam",
    "gradcam",
    "gradcam++",
    "xgradcam",
    "hirescam",
    "layercam",
    "eigencam",
    "eigengradcam",
    "guided_backprop",
    "guided_gradcam",
    "gradient",
    "integrated_gradients",
    "ablationcam",
    "scorecam",
    "rise",
]


def snapshot(model: nn.Module) -> dict:
    """Everything about a model that an explanation must not change."""
    return {
        "modules": [(name, type(m), id(m)) for name, m in model.named_modules()],
        "training": [m.training for m in model.modules()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [p.grad for p in model.parameters()],
        "hooks": sum(
            len(m._forward_hooks)
            + len(m._forward_pre_hooks)
            + len(m._backward_hooks)
            + len(getattr(m, "_backward_pre_hooks", {}))
            for m in model.modules()
        ),
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["modules"] == before["modules"]
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert all(g is None for g in after["grads"])
    assert after["hooks"] == 0
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key


@pytest.fixture
def net():
    return ReluNet().eval()


def image(seed: int = 0, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, 12, 12, generator=torch.Generator().manual_seed(seed))


def test_contract_single_map_float32_in_unit_range(net):
    heat = explainers.saliency(net, image(), target=2, method="gradcam", layer="features")
    assert heat.dtype == np.float32 and heat.shape == (12, 12)
    assert heat.min() == 0.0 and heat.max() == 1.0


def test_every_method_leaves_the_model_exactly_as_it_was(net):
    net.train()  # a model in training mode is explained in eval mode and handed back in training mode
    before = snapshot(net)
    result = explainers.explain(net, image(), FAST, top_k=2, layer="features")
    assert len(result.maps) == 2 * len(FAST)
    assert_unchanged(net, before)
    net.eval()
    again = explainers.explain(net, image(), FAST, top_k=2, layer="features")
    for a, b in zip(result.maps, again.maps):  # the training-mode call really ran in eval mode
        np.testing.assert_allclose(a.raw, b.raw, rtol=1e-5, atol=1e-7)


def test_an_exception_mid_explanation_leaves_the_model_clean(net, monkeypatch):
    before = snapshot(net)

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setitem(cam_formulas.GRADIENT_CAMS, "gradcam", broken)
    with pytest.raises(RuntimeError, match="boom"):
        explainers.explain(net, image(), ["guided_gradcam", "gradcam"], top_k=2, layer="features")
    assert_unchanged(net, before)
    with pytest.raises(explainers.ExplainerError, match="no layer named"):
        explainers.explain(net, image(), ["gradcam"], layer="nope")
    assert_unchanged(net, before)


def test_interrupt_inside_the_forward_pass_removes_hooks(net):
    before = snapshot(net)
    net.fc.register_forward_hook(lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        explainers.explain(net, image(), ["guided_gradcam"], layer="features")
    net.fc._forward_hooks.clear()
    assert_unchanged(net, before)


def test_a_batch_gives_the_same_maps_as_one_image_at_a_time(net):
    batch = image(5, batch=3)
    together = explainers.explain(net, batch, FAST, top_k=2, layer="features")
    for b in range(3):
        alone = explainers.explain(net, batch[b : b + 1], FAST, top_k=2, layer="features")
        assert together.targets[b] == alone.targets[0]
        for item in alone.maps:
            np.testing.assert_allclose(together.get(item.method, item.target, b).raw, item.raw, rtol=1e-4, atol=1e-6)


def test_explicit_targets_and_top_k(net):
    x = image(1)
    result = explainers.explain(net, x, ["gradcam"], top_k=3, layer="features")
    order = np.argsort(-result.probabilities[0])[:3].tolist()
    assert result.targets == [order]
    assert [c for c, _ in result.top(3)] == order
    explicit = explainers.explain(net, x, ["gradcam"], targets=[3, 0, 3], layer="features")
    assert explicit.targets == [[3, 0]]
    assert explicit.get("gradcam", 0).probability == pytest.approx(float(result.probabilities[0, 0]))
    last = result.top(4)[3][0]
    both = explainers.explain(net, x, ["gradcam"], top_k=2, targets=[order[1], last], layer="features")
    assert both.targets == [[order[0], order[1], last]]


def test_top_k_plus_explicit_classes_in_a_batch_may_differ_in_length(net):
    batch = image(9, batch=2)
    tops = explainers.explain(net, batch, ["gradcam"], top_k=1, layer="features").targets
    extra = tops[0][0]  # already the first image's top class, not (necessarily) the second's
    result = explainers.explain(net, batch, ["gradcam", "scorecam"], top_k=1, targets=[extra], layer="features")
    assert result.targets[0] == [extra]
    assert result.targets[1] == list(dict.fromkeys([tops[1][0], extra]))
    assert len(result.maps) == 2 * sum(len(t) for t in result.targets)
    alone = explainers.explain(net, batch[1:], ["gradcam", "scorecam"], targets=[extra], layer="features")
    np.testing.assert_allclose(result.get("scorecam", extra, 1).raw, alone.maps[1].raw, rtol=1e-4, atol=1e-6)


def test_several_targets_in_one_call_equal_one_call_per_target(net):
    x = image(2)
    together = explainers.explain(net, x, FAST, targets=[0, 1, 2, 3], layer="features")
    for target in range(4):
        alone = explainers.explain(net, x, FAST, targets=[target], layer="features")
        for item in alone.maps:
            np.testing.assert_allclose(together.get(item.method, target).raw, item.raw, rtol=1e-4, atol=1e-6)


def test_two_threads_on_one_model_get_the_maps_of_a_serial_run(net):
    images = [image(s) for s in range(6)]
    methods = ["gradcam", "guided_gradcam", "scorecam", "ablationcam", "gradient"]
    serial = [explainers.explain(net, x, methods, top_k=2, layer="features") for x in images]
    results: dict[int, object] = {}
    errors = []
    barrier = threading.Barrier(2)

    def worker(indices):
        barrier.wait()
        try:
            for _ in range(3):
                for i in indices:
                    results[i] = explainers.explain(net, images[i], methods, top_k=2, layer="features")
        except Exception as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(range(s, 6, 2),)) for s in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, expected in enumerate(serial):
        for a, b in zip(expected.maps, results[i].maps):
            np.testing.assert_allclose(a.raw, b.raw, rtol=1e-5, atol=1e-7)
    assert snapshot(net)["hooks"] == 0


@pytest.mark.parametrize(
    "call, message",
    [
        (dict(methods=["nope"]), "Unknown method"),
        (dict(methods=[]), "at least one method"),
        (dict(methods=["gradcam"], layer=None), "give layer"),
        (dict(methods=["gradcam"], layer="fc"), "spatial feature map"),
        (dict(methods=["eigencam"], layer="features", counterfactual=True), "no counterfactual"),
        (dict(methods=["gradcam"], layer="features", targets=[99]), "between 0 and 3"),
        (dict(methods=["gradcam"], layer="features", top_k=0), "top_k"),
        (dict(methods=["gradcam"], layer="relu"), None),
    ],
)
def test_clear_errors(net, call, message):
    if message is None:  # a valid but unusual layer works
        explainers.explain(net, image(), **call)
        return
    with pytest.raises(explainers.ExplainerError, match=message):
        explainers.explain(net, image(), **call)


def test_layer_used_twice_is_refused():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(self.conv(self.conv(x)).mean(dim=(2, 3)))

    with pytest.raises(explainers.ExplainerError, match="more than once"):
        explainers.explain(Twice(), image(), ["gradcam"], layer="conv")


def test_progress_reaches_one_and_names_slow_methods(net):
    seen = []
    explainers.explain(
        net, image(), ["gradcam", "scorecam"], top_k=1, layer="features", progress=lambda f, m: seen.append((f, m))
    )
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(m == "Score-CAM" for _, m in seen)


def test_layer_gradient_skips_the_graph_before_the_layer(net):
    """With only layer-gradient methods, the forward pass records no graph before the layer."""
    recorded = []
    net.conv1.register_forward_hook(lambda m, i, o: recorded.append(o.requires_grad))
    explainers.explain(net, image(), ["gradcam", "layercam"], top_k=2, layer="features")
    assert recorded == [False]
