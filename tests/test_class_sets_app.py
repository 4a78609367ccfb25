"""Class sets in the app ("all dogs (118 classes)" in the classes box): the entries offered, how
they are read, the rows they give (the same maps as explaining the ClassSet through
explainers.explain) and the messages for entries that cannot be used.

Runs on the embedded, offline efficientnet_lite0 with fast methods only (CPU, a few seconds).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from results_page import read_results  # noqa: E402

import explainers  # noqa: E402
import models  # noqa: E402
from explainers import request  # noqa: E402
from explainers.targets import IMAGENET_CLASS_SETS  # noqa: E402
from webapp import choices, config, handlers, values  # noqa: E402
from webapp.errors import UserError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COMPOSITE = ROOT / "assets" / "cat_and_coffee.jpg"
FAST = ["gradcam", "layercam"]
DOGS = "all dogs (118 classes)"


@pytest.fixture(scope="module")
def classifier() -> models.Classifier:
    return models.load(config.DEFAULT_MODEL)


def not_imagenet(classes: int = 1000) -> SimpleNamespace:
    """A classifier whose classes are not ImageNet-1k's (what the parser and choices read)."""
    labels = [f"part {i}" for i in range(classes)]
    return SimpleNamespace(name="parts", labels=labels, num_classes=classes, search_classes=lambda *a, **k: [])


def test_the_classes_box_offers_the_class_sets_after_the_classes(classifier):
    entries = choices.class_choices(classifier)
    single = choices.single_class_choices(classifier)
    assert entries[: len(single)] == single and len(single) == classifier.num_classes
    sets = entries[len(single) :]
    assert DOGS in sets and "all cats (13 classes)" in sets and "all butterflies (6 classes)" in sets
    assert len(sets) == len(IMAGENET_CLASS_SETS)
    for entry, word in zip(sets, IMAGENET_CLASS_SETS):  # each entry reads back as its set
        assert values.parse_targets(classifier, [entry]) == [explainers.imagenet_class_set(word)]
    assert choices.class_set_choices(not_imagenet()) == []  # 1000 classes, but not ImageNet's


def test_class_sets_are_read_beside_classes(classifier):
    dogs, cats = explainers.imagenet_class_set("dog"), explainers.imagenet_class_set("cat")
    assert values.parse_targets(classifier, ["281: tabby", DOGS, "All Cats", "all dogs", "espresso"]) == [
        281,
        dogs,
        cats,
        classifier.labels.index("espresso"),
    ]
    assert values.parse_targets(classifier, "all dogs, 281") == [dogs, 281]  # the API's string form
    assert request.parse_targets(classifier, "all dogs") == [dogs]  # the CLI's parser, the same words
    assert values.parse_classes(classifier, ["281: tabby"]) == [281]


@pytest.mark.parametrize(
    "entries, rather_than, message",
    [
        (["all unicorns"], None, "Unknown class 'all unicorns'"),
        ([DOGS] * 3 + [str(i) for i in range(config.MAX_CLASSES)], None, "at most 10 per run"),
        ([DOGS], "967: espresso", "“…rather than” compares single classes.*all dogs"),
    ],
)
def test_bad_class_entries_get_messages(classifier, entries, rather_than, message):
    with pytest.raises(UserError, match=message):
        values.parse_targets(classifier, entries, rather_than)


def test_a_class_set_needs_imagenet_classes_and_a_single_class_stays_single(classifier):
    with pytest.raises(UserError, match="for ImageNet-1k models; the classes of parts are not"):
        values.parse_targets(not_imagenet(), [DOGS])
    with pytest.raises(UserError, match=r"'all dogs \(118 classes\)' is a set of classes; a single class"):
        values.parse_classes(classifier, [DOGS])  # e.g. the "…rather than" class


def test_a_class_set_row_is_the_class_set_explained(classifier):
    view, _, archive, _, _, result = handlers.explain_image(str(COMPOSITE), methods=FAST, top_k=1, classes=[DOGS])
    dogs = explainers.imagenet_class_set("dog")
    top = result.predictions[0][0]
    assert result.targets == [top, dogs]
    reference = explainers.explain(classifier, result.inputs, FAST, targets=[dogs])
    for method in FAST:
        tile = result.tiles[(method, dogs, False)]
        np.testing.assert_allclose(tile.raw, reference.get(method, dogs).raw, rtol=1e-4, atol=1e-6)
        assert not np.allclose(tile.raw, result.tiles[(method, top, False)].raw)
    with torch.no_grad():
        probabilities = classifier.module(result.inputs).softmax(dim=1)[0]
    expected = float(probabilities[list(dogs.classes)].sum())  # the set's probability: the sum of its classes'
    assert result.tiles[("gradcam", dogs, False)].probability == pytest.approx(expected, rel=1e-4)
    rows = read_results(view).rows
    assert len(rows) == 2 and rows[1].header.startswith("dog") and len(rows[1].tiles) == len(FAST) + 1
    with zipfile.ZipFile(archive) as zf:
        info = json.loads(zf.read("cat_and_coffee.json"))
        assert "cat_and_coffee_gradcam_set-dog-dog.png" in zf.namelist()
    row = info["targets"][1]
    assert (row["target"], row["kind"], row["classes"]) == ("set-dog", "class set", list(dogs.classes))


def test_a_class_set_row_says_how_many_classes_it_holds():
    view = handlers.explain_image(str(COMPOSITE), methods=["gradcam"], top_k=0, classes=[DOGS])[0]
    header = read_results(view).rows[0].header
    assert "118 classes" in header and "ClassSet" not in header


def test_why_not_adds_a_row_under_a_class_set(classifier):
    dogs = explainers.imagenet_class_set("dog")
    result = handlers.explain_image(str(COMPOSITE), methods=FAST, top_k=0, classes=[DOGS], counterfactual=True)[-1]
    reference = explainers.explain(classifier, result.inputs, FAST, targets=[dogs], counterfactual=True)
    for method in FAST:
        np.testing.assert_allclose(
            result.tiles[(method, dogs, True)].raw, reference.get(method, dogs).raw, rtol=1e-4, atol=1e-6
        )


def test_rather_than_with_a_class_set_is_refused_with_a_message():
    with pytest.raises(gr.Error, match="compares single classes"):
        handlers.explain_image(str(COMPOSITE), methods=FAST, top_k=0, classes=[DOGS], rather_than="967: espresso")
    with pytest.raises(gr.Error, match="is a set of classes"):
        handlers.explain_image(str(COMPOSITE), methods=FAST, top_k=1, rather_than=DOGS)


def test_a_model_change_keeps_a_class_set_and_rather_than_offers_single_classes():
    other = "efficientnet_lite1"  # another embedded ImageNet-1k model
    classes = handlers.on_model_change(other, config.DEFAULT_MODEL, FAST, ["281: tabby", DOGS])[3]
    assert classes.value == ["281: tabby", DOGS]
    offered = [value for _, value in handlers.rather_than_choices(other, None).choices]
    assert "967: espresso" in offered and DOGS not in offered
