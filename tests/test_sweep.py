"""The layer sweep: maps equal single-layer explanations, one forward pass, best-score recommendation, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import explainers
import models
from explainers import cli, rendering, request
from explainers.metrics import counterfactual_check, deletion_insertion
from explainers.sweep import Sweep, WhyNotScore, default_layers, sweep

ROOT = Path(__file__).resolve().parents[1]

GRADIENT_CAMS = ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigengradcam"]
LAYERS = ["act1", "act2", "act3", "copy"]


class ThreeStageNet(nn.Module):
    """conv-ReLU ("act1") -> conv-ReLU ("act2") -> conv-ReLU ("act3") -> Identity ("copy") -> GAP -> linear.

    "copy" repeats "act3", so their maps are the same; the earlier layers see different grids.
    """

    def __init__(self, classes: int = 5, seed: int = 3) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv1, self.act1 = nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU()
        self.conv2, self.act2 = nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU()
        self.conv3, self.act3 = nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
        self.copy = nn.Identity()
        self.fc = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.copy(self.act3(self.conv3(self.act2(self.conv2(self.act1(self.conv1(x)))))))
        return self.fc(a.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def net_and_image():
    torch.manual_seed(0)
    return ThreeStageNet().eval(), torch.randn(1, 3, 32, 32)


@pytest.fixture(scope="module")
def result(net_and_image):
    net, x = net_and_image
    return sweep(net, x, GRADIENT_CAMS, LAYERS, target=2, steps=8)


def test_maps_equal_single_layer_explanations(net_and_image, result):
    net, x = net_and_image
    for layer in LAYERS:
        single = explainers.explain(net, x, GRADIENT_CAMS, targets=[2], layer=layer)
        for method in GRADIENT_CAMS:
            expected = single.get(method, 2)
            np.testing.assert_allclose(result.raw[method][layer], expected.raw, atol=1e-5, err_msg=f"{method}@{layer}")
            np.testing.assert_allclose(result.maps[method][layer], expected.map, atol=1e-5)
    assert result.label is None and result.target == 2
    with torch.no_grad():
        probabilities = torch.softmax(net(x), dim=1)[0]
    assert result.probability == pytest.approx(float(probabilities[2]), abs=1e-6)


def test_early_layers_get_nonzero_maps(result):
    """A gradient cut at a later tap would leave the early layers all zero."""
    assert all(result.raw["gradcam"][layer].std() > 0 for layer in ("act1", "act2"))


def test_one_forward_pass_for_all_layers_and_methods(net_and_image):
    net, x = net_and_image
    calls = []
    handle = net.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    try:
        sweep(net, x, GRADIENT_CAMS, LAYERS, score=False)
    finally:
        handle.remove()
    assert calls == [1]


def test_scores_are_deletion_insertion_and_recommendation_is_the_best(net_and_image, result):
    net, x = net_and_image
    for method in ("gradcam", "layercam"):
        maps = [result.maps[method][layer] for layer in LAYERS]
        curves = deletion_insertion(net, x, maps, [2] * len(LAYERS), steps=8)
        for layer, deletion, insertion in zip(LAYERS, curves.deletion_auc, curves.insertion_auc):
            assert result.scores[method][layer].deletion == pytest.approx(deletion, abs=1e-6)
            assert result.scores[method][layer].insertion == pytest.approx(insertion, abs=1e-6)
        best = max(LAYERS, key=lambda layer: insertion_minus_deletion(result, method, layer))
        assert result.recommended(method) == best
    overall = max(
        LAYERS, key=lambda layer: np.mean([insertion_minus_deletion(result, m, layer) for m in GRADIENT_CAMS])
    )
    assert result.recommended() == overall == result.to_json()["recommended"]


def insertion_minus_deletion(result, method: str, layer: str) -> float:
    score = result.scores[method][layer]
    return score.insertion - score.deletion


def test_same_maps_are_noted(result):
    pairs = {(s.method, s.layers) for s in result.same_maps}
    for method in GRADIENT_CAMS:
        assert (method, ("act3", "copy")) in pairs
    assert ("gradcam", ("act1", "act2")) not in pairs
    assert all(s.r >= 0.99 for s in result.same_maps)


@pytest.mark.parametrize("layers", [["act1", "nope"], [""], ["fc"]])
def test_bad_layers_are_explainer_errors(net_and_image, layers):
    net, x = net_and_image
    with pytest.raises(explainers.ExplainerError):
        sweep(net, x, ["gradcam"], layers, score=False)


def test_non_cam_methods_are_refused(net_and_image):
    net, x = net_and_image
    with pytest.raises(explainers.ExplainerError, match="cannot be swept"):
        sweep(net, x, ["gradcam", "scorecam"], LAYERS, score=False)


def test_default_layers_spread_over_the_unpooled_layers():
    class Layers:
        layers = [type("L", (), {"name": f"l{i}", "pooled": i == 20})() for i in range(21)]

    assert default_layers(Layers()) == ["l0", "l3", "l5", "l8", "l11", "l14", "l16", "l19"]


def test_cli_layers_writes_overlays_and_sweep_json(tmp_path):
    image = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), "RGB").save(image)
    out = tmp_path / "out"
    layers = ["blocks.2", "blocks.4", "bn2"]
    code = cli.main(
        [str(image), "--layers", ",".join(layers), "--methods", "gradcam,layercam", "--targets", "281"]
        + ["--device", "cpu", "--out", str(out), "-q"]
    )
    assert code == 0
    record = json.loads((out / "photo_sweep.json").read_text())
    assert record["layers"] == layers and record["recommended"] in layers and record["target"] == 281
    assert set(record["scores"]["gradcam"]) == set(layers)
    for method in ("gradcam", "layercam"):
        for layer in layers:
            assert (out / record["overlays"][method][layer]).is_file()
    assert cli.main([str(image), "--layers", "blocks.2,nope", "--out", str(out), "-q"]) == cli.EXIT_USAGE
    both = ["--layers", "bn2", "--targets", "281", "--class-set", "dog", "--out", str(out), "-q"]
    assert cli.main([str(image), *both]) == cli.EXIT_USAGE


def test_cli_layers_sweeps_a_class_set(tmp_path):
    image, out = ROOT / "assets" / "cat_and_coffee.jpg", tmp_path / "out"
    code = cli.main(
        [str(image), "--layers", "blocks.4,bn2", "--class-set", "dog", "--device", "cpu", "--out", str(out)]
    )
    assert code == 0
    record = json.loads((out / "cat_and_coffee_sweep.json").read_text())
    assert record["target"] == "set-dog" and record["kind"] == "class set" and len(record["classes"]) == 118
    classifier = models.load("efficientnet_lite0")
    x = classifier.preprocess(Image.open(image).convert("RGB"))
    dogs = request.parse_class_set(classifier, "dog")
    expected = explainers.explain(classifier, x, ["gradcam"], targets=[dogs], layer="bn2")
    saved = np.asarray(Image.open(out / record["overlays"]["gradcam"]["bn2"]).convert("RGB"), float)
    drawn = rendering.overlay(classifier.crop(Image.open(image).convert("RGB")), expected.maps[0].map)
    assert np.abs(saved - np.asarray(drawn, float)).mean() < 0.5  # the set's map, as explain() draws it


def test_pearson_matrix_matches_numpy_and_handles_constant_maps():
    from explainers.sweep import pearson_matrix

    rows = np.random.default_rng(1).random((4, 50))
    np.testing.assert_allclose(pearson_matrix(rows), np.corrcoef(rows), atol=1e-12)
    constant = np.stack([np.zeros(50), np.full(50, 2.0), rows[0]])
    np.testing.assert_allclose(pearson_matrix(constant), [[1, 1, 0], [1, 1, 0], [0, 0, 1]], atol=1e-12)


@pytest.fixture(scope="module")
def why_not(net_and_image):
    net, x = net_and_image
    return sweep(net, x, ["gradcam", "layercam"], LAYERS, target=2, counterfactual=True)


def test_why_not_maps_equal_single_layer_counterfactual_explanations(net_and_image, why_not):
    net, x = net_and_image
    for layer in LAYERS:
        single = explainers.explain(net, x, ["gradcam", "layercam"], targets=[2], layer=layer, counterfactual=True)
        for method in ("gradcam", "layercam"):
            np.testing.assert_allclose(why_not.raw[method][layer], single.get(method, 2).raw, atol=1e-5)
    assert why_not.counterfactual and why_not.to_json()["counterfactual"] is True


def test_why_not_scores_are_the_counterfactual_check(net_and_image, why_not):
    net, x = net_and_image
    for method in ("gradcam", "layercam"):
        maps = np.stack([why_not.raw[method][layer] for layer in LAYERS])
        check = counterfactual_check(net, x, maps, [2] * len(LAYERS))
        for layer, separation in zip(LAYERS, check.separation):
            np.testing.assert_allclose(why_not.scores[method][layer].score, separation, atol=1e-6)


def test_layers_with_empty_why_not_maps_are_never_recommended():
    nan = float("nan")
    scores = {
        "gradcam": {"a": WhyNotScore(nan, nan), "b": WhyNotScore(0.2, 0.1), "c": WhyNotScore(0.3, 0.25)},
        "layercam": {"a": WhyNotScore(0.9, 0.0), "b": WhyNotScore(0.1, 0.05), "c": WhyNotScore(0.0, 0.1)},
    }
    result = Sweep(1, 0.5, None, ["gradcam", "layercam"], ["a", "b", "c"], {}, {}, scores, counterfactual=True)
    assert result.recommended("gradcam") == "b"  # 0.1 against 0.05; "a" is empty
    assert result.recommended("layercam") == "a"
    assert result.recommended() == "b"  # "a" is empty for Grad-CAM
    empty = {m: {layer: WhyNotScore(nan, nan) for layer in "abc"} for m in scores}
    assert Sweep(1, 0.5, None, ["gradcam", "layercam"], ["a", "b", "c"], {}, {}, empty).recommended() is None


def test_methods_without_a_why_not_form_are_refused_in_a_why_not_sweep(net_and_image):
    net, x = net_and_image
    with pytest.raises(explainers.ExplainerError, match="counterfactual"):
        sweep(net, x, ["eigencam"], LAYERS, score=False, counterfactual=True)


def test_progress_is_reported_and_an_exception_it_raises_stops_the_sweep(net_and_image):
    net, x = net_and_image
    seen = []
    sweep(net, x, ["gradcam", "layercam"], LAYERS, steps=4, progress=lambda f, message: seen.append(f))
    assert seen == [0.0, 0.5, 1.0]

    class Stop(Exception):
        pass

    def stop_after_maps(fraction: float, message: str) -> None:
        raise Stop

    with pytest.raises(Stop):
        sweep(net, x, ["gradcam"], LAYERS, steps=4, progress=stop_after_maps)


# ---------------------------------------------------------------------------- class sets

ODD = explainers.ClassSet((1, 3), "odd")  # two of ThreeStageNet's five classes, merged


@pytest.fixture(scope="module")
def set_result(net_and_image):
    net, x = net_and_image
    return sweep(net, x, GRADIENT_CAMS, LAYERS, target=ODD, steps=4)


def set_probability(net: nn.Module, images: torch.Tensor, classes: explainers.ClassSet = ODD) -> np.ndarray:
    """sum_S p_c of each image: the probability a class set is scored by."""
    with torch.no_grad():
        return torch.softmax(net(images), dim=1)[:, list(classes.classes)].sum(dim=1).double().numpy()


def test_class_set_maps_equal_single_layer_explanations(net_and_image, set_result):
    net, x = net_and_image
    for layer in LAYERS:
        single = explainers.explain(net, x, GRADIENT_CAMS, targets=[ODD], layer=layer)
        for method in GRADIENT_CAMS:
            expected = single.get(method, ODD)
            np.testing.assert_allclose(
                set_result.raw[method][layer], expected.raw, atol=1e-5, err_msg=f"{method}@{layer}"
            )
            np.testing.assert_allclose(set_result.maps[method][layer], expected.map, atol=1e-5)
    assert set_result.target == ODD and set_result.label == "odd"
    assert set_result.probability == pytest.approx(float(set_probability(net, x)[0]), abs=1e-6)
    for member in ODD.classes:  # the set's map is neither of its classes' maps
        alone = sweep(net, x, ["gradcam"], ["act2"], target=member, score=False)
        assert np.abs(set_result.maps["gradcam"]["act2"] - alone.maps["gradcam"]["act2"]).max() > 0.1


def test_class_set_scores_follow_the_sets_summed_probability(net_and_image, set_result):
    """Deletion and insertion curves of a class set, rebuilt here by hand: the set's probability
    sum_S p_c on the image with the most salient pixels zeroed, or put back into the blurred image."""
    from explainers.metrics import area, gaussian_blur, saliency_ranks

    net, x = net_and_image
    steps, pixels = 4, x.shape[-1] * x.shape[-2]
    fractions = np.linspace(0, 1, steps + 1)
    counts = torch.round(torch.linspace(0, pixels, steps + 1)).long()
    for method in ("gradcam", "layercam"):
        for layer in LAYERS:
            ranks = saliency_ranks(torch.as_tensor(set_result.maps[method][layer])[None])[0]
            changed = torch.stack([(ranks < n)[None] for n in counts])  # [steps + 1, 1, H, W]
            deletion = set_probability(net, x.masked_fill(changed, 0.0))
            insertion = set_probability(net, torch.where(changed, x, gaussian_blur(x)))
            score = set_result.scores[method][layer]
            assert score.deletion == pytest.approx(float(area(fractions, deletion[None])[0]), abs=1e-5)
            assert score.insertion == pytest.approx(float(area(fractions, insertion[None])[0]), abs=1e-5)


def test_a_class_set_of_one_class_sweeps_as_that_class(net_and_image, result):
    net, x = net_and_image
    alone = sweep(net, x, GRADIENT_CAMS, LAYERS, target=explainers.ClassSet((2,)), steps=8)
    for method in GRADIENT_CAMS:
        for layer in LAYERS:
            np.testing.assert_allclose(alone.raw[method][layer], result.raw[method][layer], atol=1e-5)
            assert alone.scores[method][layer].score == pytest.approx(result.scores[method][layer].score, abs=1e-5)
    assert alone.recommended() == result.recommended()


def test_class_set_why_not_maps_and_scores(net_and_image):
    """The evidence against a class set equals explain(..., counterfactual=True) of the set; its
    score is the counterfactual check of log sum_S p_c."""
    from explainers.metrics import region_and_shifts

    net, x = net_and_image
    why_not = sweep(net, x, ["gradcam", "layercam"], LAYERS, target=ODD, counterfactual=True)
    before = np.log(set_probability(net, x)[0])
    for layer in LAYERS:
        single = explainers.explain(net, x, ["gradcam", "layercam"], targets=[ODD], layer=layer, counterfactual=True)
        for method in ("gradcam", "layercam"):
            raw = why_not.raw[method][layer]
            np.testing.assert_allclose(raw, single.get(method, ODD).raw, atol=1e-5)
            region, shifted = region_and_shifts(torch.as_tensor(raw)[None])
            removed = torch.cat([region[:, None], shifted], dim=1)[0][:, None]  # [4, 1, H, W]
            gains = np.log(set_probability(net, x.masked_fill(removed, 0.0))) - before
            score = why_not.scores[method][layer]
            if not region.any():
                assert np.isnan(score.score)
                continue
            assert score.region_gain == pytest.approx(gains[0], abs=1e-5)
            assert score.shifted_gain == pytest.approx(gains[1:].mean(), abs=1e-5)
    assert why_not.counterfactual and why_not.target == ODD


def test_class_set_sweep_json_names_the_set(set_result):
    record = json.loads(json.dumps(set_result.to_json()))
    assert record["target"] == "set-odd" and record["label"] == "odd"
    assert record["kind"] == "class set" and record["classes"] == [1, 3]
    assert record["recommended"] == set_result.recommended()


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (explainers.Contrast(1, 3), "a class or a class set, not a contrast"),
        (explainers.ClassSet((1, 9)), "between 0 and 4"),
        (7, "between 0 and 4"),
    ],
)
def test_targets_the_sweep_cannot_take_are_explainer_errors(net_and_image, target, message):
    net, x = net_and_image
    with pytest.raises(explainers.ExplainerError, match=message):
        sweep(net, x, ["gradcam"], LAYERS, target=target, score=False)
