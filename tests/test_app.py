"""The Gradio app (app.py): handler functions without a browser, and the HTTP API via gradio_client.

Runs on the embedded, offline efficientnet_lite0 with fast methods only (CPU, a few seconds).
"""

from __future__ import annotations

import base64
import io
import json
import os
import zipfile
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

import app  # noqa: E402
import explainers  # noqa: E402
import models  # noqa: E402
from servers import running_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COMPOSITE = ROOT / "assets" / "cat_and_coffee.jpg"
FAST = ["gradcam", "layercam"]


@pytest.fixture(scope="module")
def classifier() -> models.Classifier:
    return app.get_model(app.DEFAULT_MODEL)


@pytest.fixture(scope="module")
def result(classifier) -> app.Result:
    """One real run: top-2 classes plus "espresso", two fast methods."""
    outputs = app.explain_image(str(COMPOSITE), methods=FAST, top_k=2, classes=["espresso"])
    assert len(outputs) == len(app.explain_outputs_order())
    return outputs[-1]


def _payload(path: Path, name: str | None = None) -> dict:
    return {"path": str(path), "orig_name": name or path.name, "url": None}


# ---------------------------------------------------------------------------- assets


def test_assets_are_small_licensed_images():
    files = app.example_files()
    assert len(files) >= 5
    assert files[0].name == "cat_and_coffee.jpg"  # the two-object example comes first
    licences = (ROOT / "assets" / "LICENSES.md").read_text()
    total = 0
    for path in files:
        with Image.open(path) as im:
            assert max(im.size) <= 640
        assert path.name in licences
        total += path.stat().st_size
    assert total < 2_000_000


# ---------------------------------------------------------------------------- images


def test_load_image_accepts_payloads_paths_and_data_urls(tmp_path):
    assert app.load_image(_payload(COMPOSITE)).mode == "RGB"
    assert app.load_image(str(COMPOSITE)).size == (640, 640)
    buffer = io.BytesIO()
    Image.new("RGBA", (8, 6), (255, 0, 0, 0)).save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    flat = app.load_image({"path": None, "url": url, "orig_name": "pasted.png"})
    assert flat.size == (8, 6) and flat.getpixel((0, 0)) == (255, 255, 255)  # transparent -> white


def test_load_image_errors_are_for_people(tmp_path, monkeypatch):
    with pytest.raises(app.UserError, match="Please give an image"):
        app.load_image(None)
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    with pytest.raises(app.UserError, match="“notes.jpg” is not an image"):
        app.load_image(_payload(text))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(COMPOSITE.read_bytes()[:2000])
    with pytest.raises(app.UserError, match="damaged"):
        app.load_image(_payload(cut))
    monkeypatch.setattr(app.models.images, "MAX_PIXELS", 100)
    big = tmp_path / "big.png"
    Image.new("RGB", (20, 10)).save(big)
    with pytest.raises(app.UserError, match=r"20×10 pixels.*limit"):
        app.load_image(_payload(big))


# ---------------------------------------------------------------------------- choices


def test_choices_describe_models_layers_methods(classifier):
    models_ = dict((value, label) for label, value in app.model_choices())
    assert models_[app.DEFAULT_MODEL] == app.DEFAULT_MODEL
    for info in models.available_models():
        if not info.ready:
            assert "downloads" in models_[info.name]
    layers = dict((value, label) for label, value in app.layer_choices(classifier))
    shape = next(layer.shape for layer in classifier.layers if layer.name == classifier.default_layer)
    assert layers[classifier.default_layer] == f"{classifier.default_layer} — " + "×".join(map(str, shape))
    assert app.class_choices(classifier)[281] == "281: " + classifier.labels[281]

    available = {name: None for name in explainers.METHODS}
    available["cam"] = "needs a global-average-pooling + linear head"
    labels = dict((value, label) for label, value in app.method_choices(available))
    assert labels["cam"].endswith("(n/a)")
    assert all(("slow" in labels[m]) == info.slow for m, info in explainers.METHODS.items())
    assert "needs a global-average-pooling" in app.availability_note(available)
    assert app.availability_note({m: None for m in explainers.METHODS}) == ""
    assert app.default_methods(available) and "cam" not in app.default_methods(available)
    help_text = app.methods_help()
    assert all(info.title in help_text and info.paper in help_text
               for info in explainers.METHODS.values())


def test_parse_classes(classifier):
    assert app.parse_classes(classifier, ["281: tabby", "281", 967]) == [281, 967]
    espresso = classifier.search_classes("espresso", limit=1)[0][0]
    assert app.parse_classes(classifier, "espresso, 1") == [espresso, 1]
    assert app.parse_classes(classifier, None) == []
    with pytest.raises(app.UserError, match="does not exist"):
        app.parse_classes(classifier, ["5000"])
    with pytest.raises(app.UserError, match="No class"):
        app.parse_classes(classifier, ["qwertyuiop"])


# ---------------------------------------------------------------------------- explain + render


def test_explain_image_returns_grid_predictions_and_archive(result, classifier):
    espresso = classifier.search_classes("espresso", limit=1)[0][0]
    assert len(result.targets) == 3 and result.targets[2] == espresso
    assert result.methods == FAST
    assert set(result.tiles) == {(m, t) for m in FAST for t in result.targets}
    tile = result.tiles[("gradcam", espresso)]
    assert tile.map.shape == classifier.input_size and 0 <= tile.map.min() <= tile.map.max() <= 1
    assert result.crop.size == classifier.input_size[::-1]

    gallery, grid, archive = app._present(result, "viridis", 0.4, False)
    assert len(gallery) == 3 * (len(FAST) + 1)  # each row: the input, then one tile per method
    captions = [caption for _, caption in gallery]
    assert captions[0].startswith("Input · ")
    assert captions[1].startswith("Grad-CAM · " + result.labels[result.targets[0]])
    assert captions[2].startswith("LayerCAM · ") and captions[2].endswith(" s")
    assert "%" in captions[1]
    with Image.open(grid) as im:
        assert im.width > 3 * classifier.input_size[1]

    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        assert {"input.png", "grid.png", "maps.npz", "predictions.json"} <= names
        assert sum(n.startswith("overlays/") and n.endswith(".png") for n in names) == 6
        info = json.loads(zf.read("predictions.json"))
        maps = np.load(io.BytesIO(zf.read("maps.npz")))
    assert info["model"] == app.DEFAULT_MODEL and len(info["maps"]) == 6
    assert info["explained_classes"] == result.targets
    assert len(info["top_predictions"]) >= 5
    np.testing.assert_array_equal(maps[f"gradcam__{espresso}__raw"], tile.raw)

    label = app.predictions_label(result)
    assert len(label) >= 5 and abs(sum(label.values()) - sum(p for *_, p in result.predictions)) < 1e-6
    assert "maps" in app.status_line(result) and "computed at" in app.status_line(result)


def test_rerender_does_not_run_the_engine(result):
    calls = app.ENGINE_CALLS
    faint = app.rerender(result, "jet", 0.1, False)
    strong = app.rerender(result, "jet", 0.9, True)
    assert app.ENGINE_CALLS == calls
    with Image.open(faint[0][1][0]) as a, Image.open(strong[0][1][0]) as b:
        assert np.abs(np.asarray(a, float) - np.asarray(b, float)).mean() > 5
    gallery, grid, download, prepare = strong
    assert download.value is None and prepare.visible  # no zip written for a re-render
    archive, hidden = app.prepare_download(result)  # built on request, in the new colours
    with zipfile.ZipFile(archive) as zf:
        info = json.loads(zf.read("predictions.json"))
        assert zf.read(info["maps"][0]["overlay"]) == Path(strong[0][1][0]).read_bytes()
    assert info["display"] == {"colormap": "jet", "opacity": 0.9, "shared_scale": True}
    assert not hidden.visible and app.ENGINE_CALLS == calls
    skipped = app.rerender(None, "jet", 0.5, False)
    assert len(skipped) == 4


def test_shared_scale_is_per_method(result):
    own = app._display_maps(result, shared=False)
    shared = app._display_maps(result, shared=True)
    for method in result.methods:
        peak = max(float(shared[(method, t)].max()) for t in result.targets)
        assert peak == pytest.approx(1.0, abs=1e-5)
    assert set(own) == set(shared)


def test_errors_are_messages_not_tracebacks(tmp_path, monkeypatch):
    with pytest.raises(gr.Error, match="Please tick at least one method"):
        app.explain_image(str(COMPOSITE), methods=[])
    with pytest.raises(gr.Error, match="Please give an image"):
        app.explain_image(None, methods=FAST)
    with pytest.raises(gr.Error, match="no layer “nope”"):
        app.explain_image(str(COMPOSITE), layer="nope", methods=FAST)
    with pytest.raises(gr.Error, match="Nothing to explain"):
        app.explain_image(str(COMPOSITE), methods=FAST, top_k=0)
    with pytest.raises(gr.Error, match="Unknown method"):
        app.explain_image(str(COMPOSITE), methods=["magic"])
    text = tmp_path / "a.txt"
    text.write_text("hello")
    with pytest.raises(gr.Error, match="not an image"):
        app.explain_image(str(text), methods=FAST)

    def offline(name, device=None):
        raise models.ModelNotAvailableError("resnet50 needs resnet50-11ad3fa6.pth: place it in "
                                            "~/.cache/torch/hub/checkpoints/")

    monkeypatch.setattr(app.models, "load", offline)
    for attempt in (lambda: app.explain_image(str(COMPOSITE), model="resnet50-not-loaded",
                                              methods=FAST),
                    lambda: app.on_model_change("resnet50-not-loaded")):
        with pytest.raises(gr.Error, match="not installed on this server") as info:
            attempt()
        assert "cache" not in str(info.value) and "place it" not in str(info.value)

    def broken(*args, **kwargs):
        raise RuntimeError("internal detail")

    monkeypatch.setattr(app, "compute", broken)
    with pytest.raises(gr.Error) as info:
        app.explain_image(str(COMPOSITE), methods=FAST)
    assert "internal detail" not in str(info.value) and "unexpected" in str(info.value)


def test_unavailable_and_non_counterfactual_methods_are_skipped(monkeypatch, classifier):
    real = explainers.availability

    def fake(model, layer=None):
        reasons = dict(real(model, layer))
        reasons["gradcam"] = "pretend it does not fit"
        return reasons

    monkeypatch.setattr(app.explainers, "availability", fake)
    with pytest.warns(UserWarning, match="pretend it does not fit"):
        usable = app._usable_methods(classifier, classifier.default_layer, ["gradcam", "layercam"],
                                     counterfactual=False)
    assert usable == ["layercam"]
    with pytest.raises(app.UserError, match="None of the chosen methods"):
        app._usable_methods(classifier, classifier.default_layer, ["gradcam"], False)
    no_cf = [m for m, info in explainers.METHODS.items() if not info.counterfactual]
    if no_cf:
        with pytest.warns(UserWarning, match="why not"):
            kept = app._usable_methods(classifier, classifier.default_layer,
                                       ["layercam", no_cf[0]], counterfactual=True)
        assert kept == ["layercam"]


def test_model_and_layer_handlers_rebuild_the_controls(classifier):
    layer, methods, classes, note = app.on_model_change(app.DEFAULT_MODEL)
    assert layer.value == classifier.default_layer
    assert len(layer.choices) == len(classifier.layers)
    assert set(methods.value) <= set(explainers.METHODS) and methods.value
    assert len(classes.choices) == classifier.num_classes and classes.value == []
    methods2, note2 = app.on_layer_change(app.DEFAULT_MODEL, classifier.default_layer,
                                          ["gradcam", "magic"])
    assert methods2.value == ["gradcam"]
    assert isinstance(note2, str)


def test_counterfactual_run(classifier):
    cf = [m for m in FAST if explainers.METHODS[m].counterfactual]
    outputs = app.explain_image(str(COMPOSITE), methods=cf, top_k=1, counterfactual=True)
    result = outputs[-1]
    assert result.counterfactual and all(t.counterfactual for t in result.tiles.values())
    assert "(why not)" in outputs[0][1][1]


def test_main_parses_flags(monkeypatch):
    seen = {}
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    monkeypatch.setattr(app, "build_app", lambda: "demo")
    monkeypatch.setattr(app, "launch", lambda demo, **kw: seen.update(kw, demo=demo))
    app.main(["--port", "9999", "--share"])
    assert seen == {"demo": "demo", "host": "127.0.0.1", "port": 9999, "share": True}
    app.main(["--host", "0.0.0.0"])
    assert seen["host"] == "0.0.0.0" and seen["port"] == 7860 and seen["share"] is False
    # Hugging Face Spaces sets Gradio's variables; the defaults follow them
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7861")
    app.main([])
    assert seen["host"] == "0.0.0.0" and seen["port"] == 7861


# ---------------------------------------------------------------------------- HTTP API


@pytest.fixture(scope="module")
def server_url():
    with running_app(app.build_app()) as url:
        yield url


def test_api_explain_with_gradio_client(server_url):
    from gradio_client import Client, handle_file

    client = Client(server_url, verbose=False)
    tiles, predictions, archive, status, grid = client.predict(
        image=handle_file(str(COMPOSITE)), methods=FAST, top_k=2, classes=["espresso"],
        api_name="/explain")
    assert len(tiles) == 3 * (len(FAST) + 1)
    assert tiles[1]["caption"].startswith("Grad-CAM · ") and Path(tiles[1]["image"]).is_file()
    assert predictions["label"] and len(predictions["confidences"]) >= 5
    assert predictions["confidences"][0]["label"] in tiles[1]["caption"]
    assert zipfile.is_zipfile(archive) and Path(grid).is_file()
    assert "6 maps" in status

    with pytest.raises(Exception, match="Please tick at least one method"):
        client.predict(image=handle_file(str(COMPOSITE)), methods=[], api_name="/explain")


def test_an_empty_map_says_so_in_its_caption():
    from types import SimpleNamespace

    empty = app.Tile("scorecam", 1, np.zeros((4, 4), np.float32), np.zeros((4, 4), np.float32), 0.5, 0.1, True)
    result = SimpleNamespace(labels={1: "goldfish"})
    assert app.tile_caption(result, empty) == (
        "Score-CAM (why not) · goldfish · 50.0% · 0.10 s · no evidence found (empty map)")
    full = app.Tile("gradcam", 1, np.ones((4, 4), np.float32), np.ones((4, 4), np.float32), 0.5, 0.1, False)
    assert app.tile_caption(result, full) == "Grad-CAM · goldfish · 50.0% · 0.10 s"


# ---------------------------------------------------------------------------- faithfulness panel


@pytest.fixture(scope="module")
def faithfulness_result():
    return app.compute(Image.open(COMPOSITE), app.DEFAULT_MODEL, None, ["gradcam", "gradient"], 2, [], False)


def test_faithfulness_panel_measures_every_map(faithfulness_result):
    from matplotlib.figure import Figure

    figure, table = app.measure_faithfulness(faithfulness_result)
    assert isinstance(figure, Figure) and len(figure.axes) == 2  # one panel per method family
    rows = table.value["data"]
    assert [(r[0], r[1]) for r in rows] == [
        (m, faithfulness_result.labels[t]) for t in faithfulness_result.targets
        for m in ("Grad-CAM", "Gradient")]
    for _, _, deletion, insertion, drop, increase in rows:
        assert 0 <= deletion <= 1 and 0 <= insertion <= 1 and 0 <= drop <= 100
        assert increase in ("yes", "no")
    gradcam_top = rows[0]
    assert gradcam_top[2] < gradcam_top[3]  # a faithful map: deletion falls before insertion rises


def test_sanity_check_of_gradcam_passes_and_needs_a_result(faithfulness_result):
    figure, note = app.sanity_check(faithfulness_result, "gradcam")
    assert note.startswith("**Grad-CAM passes the sanity check**")
    assert len(figure.axes) == 1
    with pytest.raises(gr.Error, match="Explain an image first"):
        app.sanity_check(None, "gradcam")
    with pytest.raises(gr.Error, match="methods of the current result"):
        app.sanity_check(faithfulness_result, "scorecam")


def test_faithfulness_refuses_counterfactual_results(faithfulness_result):
    from dataclasses import replace

    with pytest.raises(gr.Error, match="Why not"):
        app.measure_faithfulness(replace(faithfulness_result, counterfactual=True))
