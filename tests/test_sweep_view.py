"""The "Which layer?" view's handlers without a browser: the table's rows, columns, tiles and scores,
the recommendation, the skipped methods, the estimate, messages for hostile inputs, the engine slot
and the time limit; and the note for empty "why not" maps.

Runs on the embedded efficientnet_lite0 with the fewest deletion / insertion steps (CPU, seconds).
"""

from __future__ import annotations

import dataclasses
import os
import re
from html.parser import HTMLParser
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

import explainers  # noqa: E402
import models  # noqa: E402
from explainers import sweep as layer_sweep  # noqa: E402
from webapp import budget, config, handlers, state, sweep_view, uploads, why_not_note  # noqa: E402
from webapp.errors import UserError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COMPOSITE = ROOT / "assets" / "cat_and_coffee.jpg"
CAT = ROOT / "assets" / "cat.jpg"  # efficientnet_lite0's "why not" Grad-CAM of its top class is empty at bn2
STEPS = 3
GRADIENT_FAMILY = {"gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigengradcam"}
LAYERS = ["bn2", "blocks.2.1.conv_pwl", "blocks.5.0.conv_pwl"]  # out of the model's order on purpose
IN_ORDER = ["blocks.2.1.conv_pwl", "blocks.5.0.conv_pwl", "bn2"]


class _Table(HTMLParser):
    """The sweep's HTML: column headers (layer names, the recommended one), per row the method,
    its tiles' files, its cells' score text and which cell is marked best; the notes and verdict."""

    VOID = {"img", "br"}

    def __init__(self) -> None:
        super().__init__()
        self.columns: list[str] = []
        self.recommended: list[str] = []
        self.rows: list[dict] = []
        self.notes: list[str] = []
        self.verdict = ""
        self._open: list[tuple[str, str, int]] = []  # (tag, class, where its text starts)
        self._text = ""

    def _inside(self, tag: str) -> bool:
        return any(opened == tag for opened, _, _ in self._open)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = attrs.get("class") or ""
        if tag == "img" and self._inside("tbody"):
            self.rows[-1]["tiles"].append(Path(attrs["src"].removeprefix("gradio_api/file=")))
        if tag == "tr" and self._inside("tbody"):
            self.rows.append({"method": "", "tiles": [], "scores": [], "best": []})
        if tag == "td" and "sweep-best" in classes:
            self.rows[-1]["best"].append(len(self.rows[-1]["scores"]))
        if tag not in self.VOID:
            self._open.append((tag, classes, len(self._text)))

    def handle_data(self, data):
        self._text += data

    def handle_endtag(self, tag):
        opened, classes, start = self._open.pop()
        assert opened == tag, (opened, tag)
        text = self._text[start:].strip()
        if tag == "code" and self._inside("thead"):
            self.columns.append(text)
            if "sweep-recommended" in self._open[-1][1]:
                self.recommended.append(text)
        elif tag == "th" and "sweep-method" in classes:
            self.rows[-1]["method"] = text
        elif tag == "div" and "sweep-scores" in classes:
            self.rows[-1]["scores"].append(text)
        elif tag == "li":
            self.notes.append(text)
        elif tag == "p" and "sweep-verdict" in classes:
            self.verdict = text


def read_sweep(page: str) -> _Table:
    table = _Table()
    table.feed(page)
    return table


@pytest.fixture(autouse=True)
def few_steps(monkeypatch):
    monkeypatch.setattr(sweep_view, "STEP_CHOICES", (STEPS,))


@pytest.fixture(scope="module")
def classifier() -> models.Classifier:
    return models.load(config.DEFAULT_MODEL)


@pytest.fixture(scope="module")
def swept(classifier):
    """One real sweep: two gradient-family CAMs, Score-CAM and Gradient (skipped), three layers."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sweep_view, "STEP_CHOICES", (STEPS,))
        page, status = sweep_view.sweep_layers(
            str(COMPOSITE), methods=["gradcam", "scorecam", "layercam", "gradient"], layers=LAYERS
        )
    return page, status


def test_one_row_per_method_one_column_per_layer_in_the_models_order(swept, classifier):
    page, status = swept
    table = read_sweep(page)
    assert table.columns == IN_ORDER
    assert [row["method"] for row in table.rows] == ["Grad-CAM", "LayerCAM"]
    input_tile, *first_maps = table.rows[0]["tiles"]  # the input heads the rows
    assert len(first_maps) == len(table.rows[1]["tiles"]) == len(IN_ORDER)
    for tile in [input_tile, *first_maps, *table.rows[1]["tiles"]]:
        assert tile.is_file()
        assert Image.open(tile).size == tuple(classifier.input_size)
    assert "6 maps" in status and "2 method(s) × 3 layers" in status and f"{STEPS} steps" in status


def test_scores_under_each_map_and_the_recommendation_are_the_engines(swept, classifier):
    page, status = swept
    table = read_sweep(page)
    x = classifier.preprocess(models.open_image(COMPOSITE))
    expected = layer_sweep.sweep(classifier, x, ["gradcam", "layercam"], IN_ORDER, steps=STEPS)
    assert expected.label in status
    for row, method in zip(table.rows, expected.methods):
        for text, layer in zip(row["scores"], IN_ORDER):
            score = expected.scores[method][layer]
            assert f"del {score.deletion:.2f} · ins {score.insertion:.2f}" in text
            assert f"score {score.score:+.2f}" in text
        assert row["best"] == [IN_ORDER.index(expected.recommended(method))]
    assert table.recommended == [expected.recommended()]
    assert f"Recommended layer: {expected.recommended()}" in table.verdict


def test_skipped_methods_are_named_with_their_reasons(swept):
    notes = read_sweep(swept[0]).notes
    assert "Skipped: Score-CAM (runs the network once per channel: too slow to repeat at every layer)." in notes
    assert "Skipped: Gradient (reads no layer)." in notes


def test_only_the_gradient_family_cams_are_swept():
    swept = {m for m in explainers.METHODS if sweep_view.skip_reason(m, False) is None}
    assert swept == GRADIENT_FAMILY
    assert sweep_view.skip_reason("eigencam", False) == "reads no gradient: the same map for every class"
    assert "last layer only" in sweep_view.skip_reason("cam", False)


def test_same_maps_are_noted(classifier):
    layers = ["blocks.6", "blocks"]  # "blocks" returns the output of its last block, "blocks.6"
    page, _ = sweep_view.sweep_layers(str(COMPOSITE), methods=["gradcam"], layers=layers)
    assert any(
        re.fullmatch(r"Grad-CAM: blocks\.6 and blocks give the same map \(r = 1\.000\)", n)
        for n in read_sweep(page).notes
    )


def test_no_layers_chosen_sweeps_the_default_spread(classifier):
    plan = sweep_view.plan_sweep(config.DEFAULT_MODEL, ["gradcam"], None, False)
    assert plan.layers == layer_sweep.default_layers(classifier, sweep_view.MAX_LAYERS)
    assert 6 <= len(plan.layers) <= 8
    assert sweep_view.layer_picker(classifier)["value"] == plan.layers


def test_why_not_sweep_shows_the_counterfactual_check(classifier):
    page, status = sweep_view.sweep_layers(
        str(CAT), methods=["gradcam", "eigencam"], layers=IN_ORDER, counterfactual=True
    )
    table = read_sweep(page)
    assert "“why not” maps" in status and "“why not” check" in status
    assert "Skipped: Eigen-CAM (reads no gradient: the same map for every class)." in table.notes
    bn2 = table.rows[0]["scores"][IN_ORDER.index("bn2")]
    assert "no region to check" in bn2 and "no evidence found (empty map)" in bn2
    assert re.match(r"gain -?\d\.\d\d · shifted -?\d\.\d\d", table.rows[0]["scores"][0])  # blocks.2 has evidence
    assert table.recommended == ["blocks.2.1.conv_pwl"]  # the only layer with a region to check


def test_the_estimate_says_what_runs_and_what_is_skipped(classifier):
    note = sweep_view.sweep_estimate(config.DEFAULT_MODEL, ["gradcam", "scorecam"], IN_ORDER, False)
    assert re.match(r"⏱ About \*\*\d+ s\*\*: 1 method\(s\) × 3 layers, scores with 3 steps\. Skipped: Score-CAM", note)
    assert sweep_view.sweep_estimate(config.DEFAULT_MODEL, ["gradient"], None, False).startswith(
        "⚠️ None of the ticked methods can be swept"
    )


def test_a_sweep_over_the_time_limit_is_refused_with_its_estimate(monkeypatch, classifier):
    monkeypatch.setattr(state.PASS_TIMES, "seconds", lambda classifier: 10.0)
    with pytest.raises(gr.Error, match=r"could take up to about \d+ s.*Pick fewer methods or layers"):
        sweep_view.sweep_layers(str(COMPOSITE), methods=["gradcam"], layers=IN_ORDER)


def test_fewer_steps_when_the_scores_would_take_long(monkeypatch, classifier):
    monkeypatch.setattr(sweep_view, "STEP_CHOICES", (20, 10, 5))
    monkeypatch.setattr(state.PASS_TIMES, "seconds", lambda classifier: 0.05)
    assert sweep_view.plan_sweep(config.DEFAULT_MODEL, ["gradcam"], IN_ORDER, False).steps == 20
    many = sweep_view.plan_sweep(config.DEFAULT_MODEL, sorted(GRADIENT_FAMILY), None, False)
    assert many.steps == 5 and many.seconds > sweep_view.COMFORTABLE_SECONDS


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(methods=[]), "None of the ticked methods can be swept"),
        (
            dict(methods=["scorecam", "gradient"]),
            r"Score-CAM \(runs the network once per channel.*Tick one of Grad-CAM",
        ),
        (dict(methods=["magic"]), "Unknown method “magic”"),
        (dict(layers=["nope"]), "has no spatial layer “nope”"),
        (dict(layers=["x" * 5000]), "has no spatial layer “x{80}…”"),
        (dict(layers=["conv_stem", 3, None]), "has no spatial layer “3”"),
        (dict(layers=[f"blocks.{i}" for i in range(7)] + ["conv_stem", "bn2"]), "That is 9 layers; at most 8"),
        (dict(classes=["no such class"]), "Unknown class 'no such class'"),
        (dict(counterfactual="maybe"), "must be true or false"),
        (dict(image=None), "Please give an image"),
    ],
)
def test_hostile_inputs_get_messages(kwargs, message):
    args = dict(image=str(COMPOSITE), methods=["gradcam"], layers=IN_ORDER) | kwargs
    with pytest.raises(gr.Error, match=message) as info:
        sweep_view.sweep_layers(**args)
    assert "Traceback" not in str(info.value) and str(ROOT) not in str(info.value)


def test_a_file_that_is_not_an_image_gets_a_message(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(gr.Error, match="not an image"):
        sweep_view.sweep_layers(str(text), methods=["gradcam"], layers=IN_ORDER)


def test_web_requests_are_checked_for_model_and_image(tmp_path):
    policy = uploads.UploadPolicy([tmp_path], [COMPOSITE])
    web = handlers.for_the_web(sweep_view.sweep_layers, frozenset({config.DEFAULT_MODEL}), policy)
    with pytest.raises(gr.Error, match="Unknown model “resnet152”") as info:
        web(str(COMPOSITE), "resnet152", ["gradcam"], [], False, IN_ORDER)
    assert info.value.title == "Request refused"
    with pytest.raises(gr.Error) as info:
        web("/etc/passwd", config.DEFAULT_MODEL, ["gradcam"], [], False, IN_ORDER)
    assert info.value.title == "Request refused" and "passwd" not in str(info.value)


def test_an_engine_failure_is_a_message_without_internals(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("internal detail at /srv/secret.py")

    monkeypatch.setattr(layer_sweep, "sweep", broken)
    with pytest.raises(gr.Error, match="unexpected") as info:
        sweep_view.sweep_layers(str(COMPOSITE), methods=["gradcam"], layers=IN_ORDER)
    assert "internal detail" not in str(info.value) and "/srv" not in str(info.value)


def test_the_sweep_runs_in_an_engine_slot_and_stops_at_the_time_limit(monkeypatch):
    free = []
    real = layer_sweep.sweep

    def watched(*args, progress=None, **kwargs):
        free.append(state.ENGINE_SLOTS._value)
        return real(*args, progress=progress, **kwargs)

    monkeypatch.setattr(layer_sweep, "sweep", watched)
    monkeypatch.setattr(config, "MAX_REQUEST_SECONDS", 0.0)  # every progress check is past the limit
    monkeypatch.setattr(budget, "check_estimate", lambda *args: None)
    with pytest.raises(gr.Error, match="Stopped after"):
        sweep_view.sweep_layers(str(COMPOSITE), methods=["gradcam"], layers=IN_ORDER)
    assert free == [config.ENGINE_CONCURRENCY - 1]  # one slot held while it ran ...
    assert state.ENGINE_SLOTS._value == config.ENGINE_CONCURRENCY  # ... and given back


# ---------------------------------------------------------------------------- class sets

DOGS = "all dogs (118 classes)"
SET_LAYERS = ["blocks.5.0.conv_pwl", "bn2"]


def test_a_class_set_is_swept_as_the_engine_sweeps_it_and_named_in_the_status(classifier):
    page, status = sweep_view.sweep_layers(
        str(COMPOSITE), methods=["gradcam"], classes=[DOGS, "espresso"], layers=SET_LAYERS
    )  # the first target is swept
    x = classifier.preprocess(models.open_image(COMPOSITE))
    dogs = explainers.imagenet_class_set("dog")
    expected = layer_sweep.sweep(classifier, x, ["gradcam"], SET_LAYERS, target=dogs, steps=STEPS)
    assert expected.target == dogs
    assert f"**2 maps** of {DOGS} ({expected.probability:.1%}) · 1 method(s) × 2 layers" in status
    (row,) = read_sweep(page).rows
    for text, layer in zip(row["scores"], SET_LAYERS):
        score = expected.scores["gradcam"][layer]
        assert f"del {score.deletion:.2f} · ins {score.insertion:.2f}" in text
    assert read_sweep(page).recommended == [expected.recommended()]


def test_a_why_not_sweep_of_a_class_set(classifier):
    page, status = sweep_view.sweep_layers(
        str(COMPOSITE), methods=["gradcam"], classes=[DOGS], layers=SET_LAYERS, counterfactual=True
    )
    x = classifier.preprocess(models.open_image(COMPOSITE))
    expected = layer_sweep.sweep(
        classifier, x, ["gradcam"], SET_LAYERS, target=explainers.imagenet_class_set("dog"), counterfactual=True
    )
    assert f"**2 “why not” maps** of {DOGS} ({expected.probability:.1%})" in status
    (row,) = read_sweep(page).rows
    for text, layer in zip(row["scores"], SET_LAYERS):
        score = expected.scores["gradcam"][layer]
        assert ("no region to check" in text) if np.isnan(score.score) else (f"score {score.score:+.2f}" in text)


def test_the_api_sweeps_a_class_set():
    from gradio_client import Client, handle_file
    from servers import running_app

    import app

    with running_app(app.build_app()) as url:
        page, status = Client(url, verbose=False).predict(
            image=handle_file(str(COMPOSITE)),
            methods=["gradcam"],
            classes=[DOGS],
            layers=["bn2"],
            api_name="/sweep_layers",
        )
    assert f"**1 map** of {DOGS} (" in status
    assert len(read_sweep(page).rows) == 1


# ---------------------------------------------------------------------------- empty "why not" maps


def why_not_result(path: Path, layer: str) -> state.Result:
    return state.compute(models.open_image(path), config.DEFAULT_MODEL, layer, ["gradcam", "ablationcam"], 1, [], True)


@pytest.fixture(scope="module")
def empty_at_bn2():
    return why_not_result(CAT, "bn2")


def test_an_empty_why_not_map_at_the_pooled_layer_is_explained_and_an_earlier_layer_named(classifier, empty_at_bn2):
    result = empty_at_bn2
    assert why_not_note.empty_why_not_maps(result) == [("gradcam", 282), ("ablationcam", 282)]
    note = why_not_note.empty_why_not_note(result)
    assert note.startswith(
        "ℹ️ The “why not” maps of Grad-CAM, Ablation-CAM are (almost) empty at `bn2` for **tiger cat**."
    )
    assert why_not_note.POOLED_HEAD in note
    earlier = [name for name in layer_sweep.default_layers(classifier) if name != "bn2"]
    expected = layer_sweep.sweep(classifier, result.inputs, ["gradcam"], earlier, target=282, counterfactual=True)
    best = expected.recommended()
    assert f"A quick “why not” sweep of Grad-CAM over {len(earlier)} earlier layers" in note
    assert f"best at **`{best}`** (score {expected.scores['gradcam'][best].score:+.2f}:" in note


def test_no_note_when_the_why_not_maps_show_evidence():
    result = why_not_result(COMPOSITE, "bn2")
    assert why_not_note.empty_why_not_maps(result) == []
    assert why_not_note.empty_why_not_note(result) is None
    assert why_not_note.empty_why_not_note(None) is None


def test_out_of_time_the_note_points_to_the_sweep_view(monkeypatch, empty_at_bn2):
    def out_of_time(*args, **kwargs):
        raise UserError("Stopped after 121 s")

    monkeypatch.setattr(sweep_view, "run_sweep", out_of_time)
    note = why_not_note.empty_why_not_note(empty_at_bn2)
    assert note.endswith(why_not_note.OPEN_SWEEP) and "quick" not in note


def test_at_the_first_layer_the_note_points_to_the_sweep_view_with_the_general_reason():
    result = why_not_result(CAT, "conv_stem")
    key = ("gradcam", 282, True)
    result.tiles[key] = dataclasses.replace(result.tiles[key], raw=np.zeros_like(result.tiles[key].raw))
    assert ("gradcam", 282) in why_not_note.empty_why_not_maps(result)
    note = why_not_note.empty_why_not_note(result)
    assert why_not_note.LITTLE_AGAINST in note and why_not_note.POOLED_HEAD not in note
    assert note.endswith(why_not_note.OPEN_SWEEP)  # no earlier layer to offer


def test_an_empty_why_not_map_of_a_class_set_gets_the_note_and_its_quick_sweep(classifier):
    dogs = explainers.request.parse_class_set(classifier, "dog")
    result = state.compute(models.open_image(COMPOSITE), config.DEFAULT_MODEL, "bn2", ["gradcam"], 0, [dogs], True)
    key = ("gradcam", dogs, True)
    result.tiles[key] = dataclasses.replace(result.tiles[key], raw=np.zeros_like(result.tiles[key].raw))
    assert why_not_note.empty_why_not_maps(result) == [("gradcam", dogs)]
    note = why_not_note.empty_why_not_note(result)
    assert note.startswith("ℹ️ The “why not” map of Grad-CAM is (almost) empty at `bn2` for **dog**.")
    earlier = [name for name in layer_sweep.default_layers(classifier) if name != "bn2"]
    expected = layer_sweep.sweep(classifier, result.inputs, ["gradcam"], earlier, target=dogs, counterfactual=True)
    assert f"best at **`{expected.recommended()}`**" in note  # the set swept, not a class of it


def test_the_page_and_the_api_show_the_empty_why_not_note_under_the_status():
    status = handlers.explain_image(str(CAT), methods=["gradcam"], top_k=1, counterfactual=True)[3]
    streamed = list(handlers.explain_stream(str(CAT), methods=["gradcam"], top_k=1, counterfactual=True))
    for text in (status, streamed[-1][3]):
        assert "**1 map" not in text and "maps** in" in text  # the status line comes first
        assert "(almost) empty at `bn2` for **tiger cat**" in text and "A quick “why not” sweep" in text
    assert all("empty at" not in update[3] for update in streamed[:-1])  # the maps do not wait for it
    plain = handlers.explain_image(str(COMPOSITE), methods=["gradcam"], top_k=1, counterfactual=True)[3]
    assert "empty at" not in plain
