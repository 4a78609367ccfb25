"""The Gradio app (app.py): handler functions without a browser, and the HTTP API via gradio_client.

Runs on the embedded, offline efficientnet_lite0 with fast methods only (CPU, a few seconds).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import zipfile
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from results_page import picture, read_results  # noqa: E402
from servers import running_app  # noqa: E402

import app  # noqa: E402
import explainers  # noqa: E402
import models  # noqa: E402
from explainers import export  # noqa: E402
from webapp import budget, choices, config, errors, faithfulness, handlers, results_view, state, values  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COMPOSITE = ROOT / "assets" / "cat_and_coffee.jpg"
FAST = ["gradcam", "layercam"]


@pytest.fixture(scope="module")
def classifier() -> models.Classifier:
    return models.load(config.DEFAULT_MODEL)


@pytest.fixture(scope="module")
def result(classifier) -> state.Result:
    """One real run: top-2 classes plus "espresso", two fast methods."""
    outputs = handlers.explain_image(str(COMPOSITE), methods=FAST, top_k=2, classes=["espresso"])
    assert len(outputs) == len(handlers.explain_outputs_order())
    return outputs[-1]


def _payload(path: Path, name: str | None = None) -> dict:
    return {"path": str(path), "orig_name": name or path.name, "url": None}


# ---------------------------------------------------------------------------- assets


def test_assets_are_small_licensed_images():
    files = choices.example_files()
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
    assert values.load_image(_payload(COMPOSITE)).mode == "RGB"
    assert values.load_image(str(COMPOSITE)).size == (640, 640)
    buffer = io.BytesIO()
    Image.new("RGBA", (8, 6), (255, 0, 0, 0)).save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    flat = values.load_image({"path": None, "url": url, "orig_name": "pasted.png"})
    assert flat.size == (8, 6) and flat.getpixel((0, 0)) == (255, 255, 255)  # transparent -> white


def test_load_image_errors_are_for_people(tmp_path, monkeypatch):
    with pytest.raises(errors.UserError, match="Please give an image"):
        values.load_image(None)
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    with pytest.raises(errors.UserError, match="“notes.jpg” is not an image"):
        values.load_image(_payload(text))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(COMPOSITE.read_bytes()[:2000])
    with pytest.raises(errors.UserError, match="damaged"):
        values.load_image(_payload(cut))
    monkeypatch.setattr(models.images, "MAX_PIXELS", 100)
    big = tmp_path / "big.png"
    Image.new("RGB", (20, 10)).save(big)
    with pytest.raises(errors.UserError, match=r"20×10 pixels.*limit"):
        values.load_image(_payload(big))


def test_rather_than_adds_a_contrast_row_beside_each_class(classifier):
    view, _, archive, status, _, result = handlers.explain_image(
        str(COMPOSITE), methods=FAST, top_k=1, classes=["281: tabby", "967: espresso"], rather_than="967: espresso"
    )
    top = result.predictions[0][0]
    contrast = explainers.Contrast(281, 967)
    expected = [top, explainers.Contrast(top, 967)] if top not in (281, 967) else []
    assert result.targets == [*expected, 281, contrast, 967]  # no "espresso rather than espresso"
    table = read_results(view)
    headers = [row.header for row in table.rows]
    assert headers[-2].startswith("tabby rather than espresso") and "classes 281 − 967" in headers[-2]
    assert headers[-2].endswith("% of the pair")
    assert all(len(row.tiles) == len(FAST) + 1 for row in table.rows)
    own, against = result.tiles[("gradcam", 281, False)], result.tiles[("gradcam", contrast, False)]
    assert not np.allclose(own.raw, against.raw)  # y_tabby - y_espresso, not y_tabby
    probabilities = dict((c, p) for c, _, p in result.predictions)
    tabby, espresso = probabilities[281], probabilities.get(967)
    if espresso is not None:
        assert against.probability == pytest.approx(tabby / (tabby + espresso), rel=1e-3)
    with zipfile.ZipFile(archive) as zf:
        info = json.loads(zf.read("cat_and_coffee.json"))
        assert "cat_and_coffee_gradcam_contrast-281-967-tabby_rather_than_espresso.png" in zf.namelist()
    row = info["targets"][result.targets.index(contrast)]
    assert (row["target"], row["label"], row["kind"], row["classes"]) == (
        "contrast-281-967",
        "tabby rather than espresso",
        "contrast",
        [281, 967],
    )
    with pytest.raises(gr.Error, match="Unknown class 'zzzz'"):
        handlers.explain_image(str(COMPOSITE), methods=FAST, top_k=1, rather_than="zzzz")


# ---------------------------------------------------------------------------- choices


def test_layer_labels_show_token_layouts_and_the_default_reason():
    from token_nets import tiny_swin, tiny_vit

    vit = models.Classifier(
        "vit", tiny_vit(), [f"class {i}" for i in range(10)], models.Preprocessing(96, (96, 96)), "cpu"
    )
    labels = dict((value, label) for label, value in choices.layer_choices(vit))
    assert labels["blocks.1.norm1"] == "blocks.1.norm1 — 48×6×6 (tokens, 1 prefix)"
    assert "first norm" in choices.layer_info(vit)
    swin = models.Classifier(
        "swin", tiny_swin(), [f"class {i}" for i in range(10)], models.Preprocessing(64, (64, 64)), "cpu"
    )
    labels = dict((value, label) for label, value in choices.layer_choices(swin))
    assert labels[swin.default_layer] == "layers.1.blocks.1.norm2 — 48×8×8 (tokens)"


def test_choices_describe_models_layers_methods(classifier):
    models_ = dict((value, label) for label, value in choices.model_choices())
    assert models_[config.DEFAULT_MODEL] == config.DEFAULT_MODEL
    for info in models.available_models():
        if not info.ready:
            assert "downloads" in models_[info.name]
    layers = dict((value, label) for label, value in choices.layer_choices(classifier))
    shape = next(layer.shape for layer in classifier.layers if layer.name == classifier.default_layer)
    assert layers[classifier.default_layer] == f"{classifier.default_layer} — " + "×".join(map(str, shape))
    assert "before pooling" in choices.layer_info(classifier)
    assert choices.class_choices(classifier)[281] == "281: " + classifier.labels[281]

    available = {name: None for name in explainers.METHODS}
    available["cam"] = "needs a global-average-pooling + linear head"
    labels = dict((value, label) for label, value in choices.method_choices(available))
    assert labels["cam"].endswith("(n/a)")
    assert all(("slow" in labels[m]) == info.slow for m, info in explainers.METHODS.items())
    assert "needs a global-average-pooling" in choices.availability_note(available)
    assert choices.availability_note({m: None for m in explainers.METHODS}) == ""
    assert choices.default_methods(available) and "cam" not in choices.default_methods(available)
    help_text = choices.methods_help()
    assert all(info.title in help_text and info.paper in help_text for info in explainers.METHODS.values())


def test_parse_classes(classifier):
    assert values.parse_classes(classifier, ["281: tabby", "281", 967]) == [281, 967]
    espresso = classifier.search_classes("espresso", limit=1)[0][0]
    assert values.parse_classes(classifier, "espresso, 1") == [espresso, 1]
    assert values.parse_classes(classifier, None) == []
    with pytest.raises(errors.UserError, match="Class 5000 is out of range"):
        values.parse_classes(classifier, ["5000"])
    with pytest.raises(errors.UserError, match="Unknown class 'qwertyuiop'"):
        values.parse_classes(classifier, ["qwertyuiop"])
    with pytest.raises(errors.UserError, match="Ambiguous class 'cat': .*282 tiger cat"):
        values.parse_classes(classifier, "cat")  # the CLI's parser: same answer, same words
    with pytest.raises(errors.UserError, match="at most 10"):
        values.parse_classes(classifier, list(range(11)))


# ---------------------------------------------------------------------------- explain + render


def test_explain_image_returns_grid_predictions_and_archive(result, classifier):
    espresso = classifier.search_classes("espresso", limit=1)[0][0]
    assert len(result.targets) == 3 and result.targets[2] == espresso
    assert result.methods == FAST
    assert set(result.tiles) == {(m, t, False) for m in FAST for t in result.targets}
    tile = result.tiles[("gradcam", espresso, False)]
    assert tile.map.shape == classifier.input_size and 0 <= tile.map.min() <= tile.map.max() <= 1
    assert result.crop.size == classifier.input_size[::-1]

    view, grid, archive = results_view.present(result, "viridis", 0.4, False)
    table = read_results(view)
    assert table.columns == ["class", "input", "Grad-CAM", "LayerCAM"]  # labels outside the maps
    assert [row.header.split("class")[0] for row in table.rows] == [result.labels[t] for t in result.targets]
    assert all("%" in row.header for row in table.rows)  # class and probability head each row
    for row in table.rows:
        assert len(row.tiles) == 1 + len(FAST) and row.tiles[0] == table.rows[0].tiles[0]
        assert len(row.times) == len(FAST) and all(t.endswith(" s") for t in row.times)
        assert all(picture(tile).size == classifier.input_size[::-1] for tile in row.tiles)
    with Image.open(grid) as im:
        assert im.width > 3 * classifier.input_size[1]

    assert Path(archive).name == "cat_and_coffee-efficientnet_lite0-explained.zip"
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        overlays = {
            f"cat_and_coffee_{m}_{t}-{result.labels[t].replace(' ', '_')}{suffix}"
            for m in FAST
            for t in result.targets
            for suffix in (".png", "_photo.jpg")
        }
        assert (
            names
            == {"cat_and_coffee_input.png", "cat_and_coffee_grid.png", "cat_and_coffee_maps.npz", "cat_and_coffee.json"}
            | overlays
        )
        info = json.loads(zf.read("cat_and_coffee.json"))
        maps = np.load(io.BytesIO(zf.read("cat_and_coffee_maps.npz")))
        with Image.open(io.BytesIO(zf.read(info["maps"][0]["photo_file"]))) as photo:
            assert photo.size == (640, 640)  # the whole uploaded photo, at its resolution
    assert info["model"] == config.DEFAULT_MODEL and len(info["maps"]) == 6
    assert [t["class"] for t in info["targets"]] == result.targets
    assert len(info["predictions"]) >= 5 and info["image"] == "cat_and_coffee.jpg"
    np.testing.assert_array_equal(maps[f"gradcam/{espresso}/raw"], tile.raw)

    label = results_view.predictions_label(result)
    assert len(label) >= 5 and abs(sum(label.values()) - sum(p for *_, p in result.predictions)) < 1e-6
    assert "maps" in results_view.status_line(result) and "computed at" in results_view.status_line(result)


def test_rerender_does_not_run_the_engine(result):
    calls = state.ENGINE_CALLS
    faint = handlers.rerender(result, "jet", 0.1, False)
    strong = handlers.rerender(result, "jet", 0.9, True)
    assert state.ENGINE_CALLS == calls
    faint_tile, strong_tile = (read_results(out[0]).rows[0].tiles[1] for out in (faint, strong))
    a, b = picture(faint_tile), picture(strong_tile)
    assert np.abs(np.asarray(a, float) - np.asarray(b, float)).mean() > 5
    view, grid, download, prepare = strong
    assert download.value is None and prepare.visible  # no zip written for a re-render
    archive, hidden = handlers.prepare_download(result)  # built on request, in the new colours
    with zipfile.ZipFile(archive) as zf:
        info = json.loads(zf.read("cat_and_coffee.json"))
        with Image.open(io.BytesIO(zf.read(info["maps"][0]["file"]))) as saved:  # the PNG of the JPEG shown
            assert np.abs(np.asarray(saved.convert("RGB"), float) - np.asarray(b, float)).mean() < 2
    assert (info["colormap"], info["opacity"], info["shared_scale"]) == ("jet", 0.9, True)
    assert not hidden.visible and state.ENGINE_CALLS == calls
    skipped = handlers.rerender(None, "jet", 0.5, False)
    assert len(skipped) == 4


def test_shared_scale_is_per_method(result):
    own = export.display_maps(result.explained(), shared=False)
    shared = export.display_maps(result.explained(), shared=True)
    for method in result.methods:
        peak = max(float(shared[(method, t, False)].max()) for t in result.targets)
        assert peak == pytest.approx(1.0, abs=1e-5)
    assert set(own) == set(shared)


def test_errors_are_messages_not_tracebacks(tmp_path, monkeypatch):
    with pytest.raises(gr.Error, match="Please tick at least one method"):
        handlers.explain_image(str(COMPOSITE), methods=[])
    with pytest.raises(gr.Error, match="Please give an image"):
        handlers.explain_image(None, methods=FAST)
    with pytest.raises(gr.Error, match="no layer “nope”"):
        handlers.explain_image(str(COMPOSITE), layer="nope", methods=FAST)
    with pytest.raises(gr.Error, match="Nothing to explain"):
        handlers.explain_image(str(COMPOSITE), methods=FAST, top_k=0)
    with pytest.raises(gr.Error, match="Unknown method"):
        handlers.explain_image(str(COMPOSITE), methods=["magic"])
    text = tmp_path / "a.txt"
    text.write_text("hello")
    with pytest.raises(gr.Error, match="not an image"):
        handlers.explain_image(str(text), methods=FAST)

    def offline(name, device=None):
        raise models.ModelNotAvailableError(
            "resnet50 needs resnet50-11ad3fa6.pth: place it in ~/.cache/torch/hub/checkpoints/"
        )

    monkeypatch.setattr(models, "load", offline)
    with pytest.raises(gr.Error, match="not installed on this server") as info:
        handlers.explain_image(str(COMPOSITE), model="resnet50-not-loaded", methods=FAST)
    assert "cache" not in str(info.value) and "place it" not in str(info.value)
    model, *unchanged, model_note, loaded = handlers.on_model_change(
        "resnet50-not-loaded", config.DEFAULT_MODEL, FAST, ["967: espresso"]
    )
    assert model.value == loaded == config.DEFAULT_MODEL  # the previous model stays selected
    assert all(update == gr.skip() for update in unchanged)  # nothing else changes
    assert "not installed on this server" in model_note and "Still using" in model_note
    assert "cache" not in model_note and "/" not in model_note
    monkeypatch.undo()

    def broken(*args, **kwargs):
        raise RuntimeError("internal detail")

    monkeypatch.setattr(state, "compute", broken)
    with pytest.raises(gr.Error) as info:
        handlers.explain_image(str(COMPOSITE), methods=FAST)
    assert "internal detail" not in str(info.value) and "unexpected" in str(info.value)


def test_unavailable_and_non_counterfactual_methods_are_skipped(monkeypatch, classifier):
    real = explainers.availability

    def fake(model, layer=None):
        reasons = dict(real(model, layer))
        reasons["gradcam"] = "pretend it does not fit"
        return reasons

    monkeypatch.setattr(explainers, "availability", fake)
    usable, skipped = handlers.usable_methods(
        classifier, classifier.default_layer, ["gradcam", "layercam"], counterfactual=False
    )
    assert usable == ["layercam"] and skipped == ["Grad-CAM (pretend it does not fit)"]
    result = handlers.explain_image(str(COMPOSITE), methods=["gradcam", "layercam"], top_k=1)
    assert read_results(result[0]).notes == ["Skipped: Grad-CAM (pretend it does not fit)."]
    with pytest.raises(errors.UserError, match="None of the chosen methods"):
        handlers.usable_methods(classifier, classifier.default_layer, ["gradcam"], False)
    kept, skipped = handlers.usable_methods(
        classifier, classifier.default_layer, ["layercam", "gradient"], counterfactual=True
    )
    assert kept == ["layercam", "gradient"] and skipped == []  # Gradient keeps its class rows


def test_model_and_layer_handlers_rebuild_the_controls(classifier):
    model, layer, methods, classes, note, model_note, loaded = handlers.on_model_change(
        config.DEFAULT_MODEL, config.DEFAULT_MODEL, ["layercam", "magic"], ["967: espresso", "281: not a tabby"]
    )
    assert model == gr.skip() and loaded == config.DEFAULT_MODEL and model_note == ""
    assert layer.value == classifier.default_layer
    assert len(layer.choices) == len(classifier.layers)
    assert methods.value == ["layercam"]  # the chosen methods that still apply are kept ...
    assert [value for _, value in classes.choices] == choices.class_choices(classifier)  # classes, then sets
    assert classes.value == ["967: espresso"]  # ... and the typed classes the model has
    _, _, defaults, none, *_ = handlers.on_model_change(config.DEFAULT_MODEL, None, None, None)
    assert (
        defaults.value == choices.default_methods(choices.method_availability(classifier, classifier.default_layer))
        and none.value == []
    )
    methods2, note2 = handlers.on_layer_change(config.DEFAULT_MODEL, classifier.default_layer, ["gradcam", "magic"])
    assert methods2.value == ["gradcam"]
    assert isinstance(note2, str)


def test_why_not_adds_a_row_under_each_class(classifier):
    methods = ["gradcam", "gradient"]  # Gradient has no "why not" form
    calls = state.ENGINE_CALLS
    outputs = handlers.explain_image(str(COMPOSITE), methods=methods, top_k=2, counterfactual=True)
    result = outputs[-1]
    assert state.ENGINE_CALLS == calls + 2  # the maps for, then the "why not" maps
    classes = result.targets
    assert result.counterfactual and len(classes) == 2
    assert set(result.tiles) == {(m, t, False) for m in methods for t in classes} | {
        ("gradcam", t, True) for t in classes
    }
    for t in classes:  # a "why not" map is not the map for the class
        assert not np.allclose(result.tiles[("gradcam", t, True)].raw, result.tiles[("gradcam", t, False)].raw)
    table = read_results(outputs[0])
    assert table.columns[2:] == ["Grad-CAM", "Gradient"]
    headers = [row.header for row in table.rows]
    assert len(headers) == 4
    for i, t in enumerate(classes):  # each class row, then its "why not" row right under it
        name = result.labels[t]
        assert headers[2 * i].startswith(name) and headers[2 * i + 1].startswith("why not" + name)
        assert len(table.rows[2 * i].tiles) == 3 and len(table.rows[2 * i + 1].tiles) == 2  # no Gradient cell
        assert "(why not)" in table.rows[2 * i + 1].captions[1] and "(why not)" not in table.rows[2 * i].captions[1]
    assert table.notes == ["No “why not” maps for: Gradient (no such form)."]
    redrawn = read_results(handlers.rerender(result, "gray", 0.5, True)[0])  # one scale per method and kind
    assert [row.header for row in redrawn.rows] == headers and state.ENGINE_CALLS == calls + 2
    assert outputs[3].startswith("**6 maps**")
    with zipfile.ZipFile(outputs[2]) as zf:
        info = json.loads(zf.read(next(n for n in zf.namelist() if n.endswith(".json"))))
        keys = set(np.load(io.BytesIO(zf.read(next(n for n in zf.namelist() if n.endswith(".npz"))))).files)
        names = zf.namelist()
    assert {m["key"] for m in info["maps"]} == {f"gradcam-cf/{t}" for t in classes} | {
        f"{m}/{t}" for m in methods for t in classes
    }
    assert {f"gradcam-cf/{t}/raw" for t in classes} <= keys and {f"gradcam/{t}/raw" for t in classes} <= keys
    assert len({m["file"] for m in info["maps"]}) == 6 and all(m["file"] in names for m in info["maps"])


def test_why_not_rows_count_towards_the_map_limit_and_the_estimate(monkeypatch, classifier):
    monkeypatch.setattr(config, "MAX_MAPS", 4)
    handlers.checked_request(config.DEFAULT_MODEL, None, ["gradcam", "gradient"], 2, [], False)
    with pytest.raises(errors.UserError, match="That is 6 maps"):
        handlers.checked_request(config.DEFAULT_MODEL, None, ["gradcam", "gradient"], 2, [], True)
    layer = classifier.default_layer
    plain = handlers.estimated_seconds(classifier, layer, ["scorecam", "gradient"], 2)
    why_not = handlers.estimated_seconds(classifier, layer, ["scorecam", "gradient"], 2, (2, ["scorecam"]))
    assert why_not == pytest.approx(plain + handlers.estimated_seconds(classifier, layer, ["scorecam"], 2))


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
    view, predictions, archive, status, grid = client.predict(
        image=handle_file(str(COMPOSITE)), methods=FAST, top_k=2, classes=["espresso"], api_name="/explain"
    )
    table = read_results(view)
    assert len(table.rows) == 3 and all(len(row.tiles) == len(FAST) + 1 for row in table.rows)
    assert predictions["label"] and len(predictions["confidences"]) >= 5
    assert table.rows[0].header.startswith(predictions["confidences"][0]["label"])
    assert picture(table.rows[0].tiles[1]).size == (224, 224)  # inside the answer: nothing to fetch
    assert zipfile.is_zipfile(archive) and Path(grid).is_file()
    assert "6 maps" in status

    with pytest.raises(Exception, match="Please tick at least one method"):
        client.predict(image=handle_file(str(COMPOSITE)), methods=[], api_name="/explain")


def test_an_empty_or_near_empty_map_says_so_in_its_caption():
    from types import SimpleNamespace

    empty = state.Tile("scorecam", 1, np.zeros((4, 4), np.float32), np.zeros((4, 4), np.float32), 0.5, 0.1, True)
    result = SimpleNamespace(labels={1: "goldfish"})
    assert results_view.tile_caption(result, empty) == (
        "Score-CAM (why not) · goldfish · 50.0% · 0.10 s · no evidence found (empty map)"
    )
    full = state.Tile("gradcam", 1, np.ones((4, 4), np.float32), np.ones((4, 4), np.float32), 0.5, 0.1, False)
    assert results_view.tile_caption(result, full) == "Grad-CAM · goldfish · 50.0% · 0.10 s"
    faint = np.zeros((40, 50), np.float32)
    faint[0, :10] = 0.3  # positive on 0.5 % of the pixels
    near_empty = state.Tile("gradcam", 1, faint, faint, 0.5, 0.1, True)
    assert results_view.tile_caption(result, near_empty) == (
        "Grad-CAM (why not) · goldfish · 50.0% · 0.10 s · almost no evidence: positive on 0.5 % of pixels"
    )


def test_a_tile_says_how_many_masks_rise_drew(classifier, monkeypatch):
    import functools
    from types import SimpleNamespace

    tile = state.Tile(
        "rise", 1, np.ones((4, 4), np.float32), np.ones((4, 4), np.float32), 0.5, 0.1, False, {"masks": 1000}
    )
    result = SimpleNamespace(labels={1: "goldfish"})
    assert results_view.tile_caption(result, tile) == "RISE · goldfish · 50.0% · 0.10 s · 1000 masks"
    few_masks = functools.partial(explainers.explain, options=explainers.Options(rise_masks=16))
    monkeypatch.setattr(state.explainers, "explain", few_masks)
    computed = state.compute(Image.open(COMPOSITE), config.DEFAULT_MODEL, None, ["rise"], 0, [281], False)
    assert computed.tiles[("rise", 281, False)].settings == {"masks": 16}  # the engine's, carried over


def test_the_budget_costs_rise_on_the_models_device(classifier):
    from types import SimpleNamespace

    on = {device: SimpleNamespace(layers=classifier.layers, device=device) for device in ("cpu", "cuda")}
    cpu, cuda = (budget.layer_passes(on[d], classifier.default_layer, ["rise"], 1) for d in ("cpu", "cuda"))
    assert cuda > 7 * cpu  # 8000 masks on a GPU, 1000 on the CPU


# ---------------------------------------------------------------------------- faithfulness panel


@pytest.fixture(scope="module")
def faithfulness_result():
    return state.compute(Image.open(COMPOSITE), config.DEFAULT_MODEL, None, ["gradcam", "gradient"], 2, [], False)


def test_faithfulness_panel_measures_every_map(faithfulness_result):
    from matplotlib.figure import Figure

    figure, table, checks = faithfulness.measure_faithfulness(faithfulness_result)
    assert not checks.visible  # no "why not" rows
    assert isinstance(figure, Figure) and len(figure.axes) == 2  # one panel per method family
    rows = table.value["data"]
    assert [(r[0], r[1]) for r in rows] == [
        (m, faithfulness_result.labels[t]) for t in faithfulness_result.targets for m in ("Grad-CAM", "Gradient")
    ]
    for _, _, deletion, insertion, drop, increase in rows:
        assert 0 <= deletion <= 1 and 0 <= insertion <= 1 and 0 <= drop <= 100
        assert increase in ("yes", "no")
    gradcam_top = rows[0]
    assert gradcam_top[2] < gradcam_top[3]  # a faithful map: deletion falls before insertion rises


def test_sanity_check_of_gradcam_judges_it_against_controls_and_needs_a_result(faithfulness_result):
    classifier = models.load(config.DEFAULT_MODEL)
    references = faithfulness.reference_images(classifier, faithfulness_result.inputs)
    assert len(references) == len(choices.example_files()) - 1  # the input itself is left out
    figure, note = faithfulness.sanity_check(faithfulness_result, "gradcam")
    assert re.match(r"\*\*Grad-CAM (passes|fails) the sanity check", note), note
    assert f"{len(references)} example images" in note and "fails above" not in note
    control_rows = [line for line in note.splitlines() if line.startswith("| control:")]
    assert len(control_rows) == 3 and not any("n/a" in row for row in note.splitlines())
    assert "| image dependence: trained maps of different images" in note
    (ax,) = figure.axes
    assert [line.get_label() for line in ax.lines] == ["Grad-CAM", "Grad-CAM: largest control"]
    with pytest.raises(gr.Error, match="Explain an image first"):
        faithfulness.sanity_check(None, "gradcam")
    with pytest.raises(gr.Error, match="methods of the current result"):
        faithfulness.sanity_check(faithfulness_result, "scorecam")


def test_why_not_maps_get_the_counterfactual_check():
    result = state.compute(Image.open(COMPOSITE), config.DEFAULT_MODEL, None, ["gradcam", "layercam"], 1, [], True)
    figure, table, checks = faithfulness.measure_faithfulness(result)
    assert figure is not None and [r[0] for r in table.value["data"]] == ["Grad-CAM", "LayerCAM"]  # class rows
    assert checks.visible and checks.headers == faithfulness.COUNTERFACTUAL_HEADERS
    rows = checks.value["data"]
    assert [r[0] for r in rows] == ["Grad-CAM", "LayerCAM"]
    for _, _, region, shifted, verdict in rows:
        if verdict.startswith("no region"):
            assert region == shifted == "–"
        else:
            assert verdict == ("yes" if region > shifted else "no")
    assert any(not r[4].startswith("no region") for r in rows)  # LayerCAM's "why not" map has a region


# ---------------------------------------------------------------------------- streaming, notes


def test_fast_maps_come_first_then_the_slow_ones_then_the_grid_and_zip():
    outputs = list(handlers.explain_stream(str(COMPOSITE), methods=["gradcam", "smoothgrad"], top_k=1))
    assert len(outputs) == 3
    first, final, last = (read_results(out[0]) for out in outputs)
    assert first.columns[2:] == ["Grad-CAM"] and "still computing: SmoothGrad" in outputs[0][3]
    assert final.columns[2:] == ["Grad-CAM", "SmoothGrad"] and "still" not in outputs[1][3]
    assert last == final and outputs[2][3] == outputs[1][3]  # the same maps, now with their files
    assert [(out[2], out[4]) for out in outputs[:2]] == [(None, None), (None, None)]  # no zip, no grid yet
    assert zipfile.is_zipfile(outputs[2][2]) and Path(outputs[2][4]).is_file()
    assert outputs[2][-1] is outputs[1][-1] and outputs[2][-1].methods == ["gradcam", "smoothgrad"]
    only_fast = list(handlers.explain_stream(str(COMPOSITE), methods=FAST, top_k=1))
    assert len(only_fast) == 2  # nothing slow: the maps, then the grid and the zip


def test_a_streamed_run_computes_each_method_once(monkeypatch):
    real, asked = state.compute, []

    def recorded(image, model, layer, methods, *args, **kwargs):
        asked.append(list(methods))
        return real(image, model, layer, methods, *args, **kwargs)

    monkeypatch.setattr(state, "compute", recorded)
    outputs = list(handlers.explain_stream(str(COMPOSITE), methods=["smoothgrad", "gradcam"], top_k=1))
    assert asked == [["gradcam"], ["smoothgrad"]]  # the fast maps first, then only the slow ones
    result = outputs[-1][-1]
    assert result.methods == ["smoothgrad", "gradcam"] and {key[0] for key in result.tiles} == {"gradcam", "smoothgrad"}
    assert (
        result.tiles[("gradcam", result.targets[0], False)]
        is outputs[0][-1].tiles[("gradcam", result.targets[0], False)]
    )


def test_a_tiny_image_is_explained_with_a_note(tmp_path):
    tiny = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (200, 30, 30)).save(tiny)
    view, *_ = handlers.explain_image(str(tiny), methods=["gradcam"], top_k=1)
    assert any("only 1×1 pixels" in note for note in read_results(view).notes)
    assert values.tiny_image_note(Image.new("RGB", (32, 32))) == ""
    assert values.tiny_image_note(Image.new("RGB", (640, 31)))


def test_examples_come_with_the_classes_they_are_for():
    composite = handlers.example_preset({"path": str(COMPOSITE), "orig_name": COMPOSITE.name})
    assert composite == ["281: tabby", "967: espresso"]
    assert handlers.example_preset(str(ROOT / "assets" / "cat.jpg")) == gr.skip()


def test_the_estimate_speaks_only_for_slow_runs():
    assert handlers.estimate_note(config.DEFAULT_MODEL, None, FAST, 2, []) == ""
    note = handlers.estimate_note(config.DEFAULT_MODEL, None, ["scorecam", "gradcam"], 3, [])
    assert re.search(r"About \*\*\d+ s\*\* for 3 class\(es\) with Score-CAM", note)
    with_contrasts = handlers.estimate_note(config.DEFAULT_MODEL, None, ["scorecam"], 3, [], "967")
    assert "3 class(es) and their contrasts" in with_contrasts
