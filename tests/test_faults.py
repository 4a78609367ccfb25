"""Faults in the app: a request that fails mid-explanation, is interrupted, or whose model download
breaks off leaves the cached model exactly as before (no hooks, same modules, weights and modes)
and the next request works, with the same maps as before.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import test_models_zoo  # noqa: E402
import torch  # noqa: E402
from test_engine import assert_unchanged, snapshot  # noqa: E402
from test_models_zoo import Response  # noqa: E402

import explainers  # noqa: E402
import models  # noqa: E402
from explainers import cam_formulas  # noqa: E402
from webapp import choices, config, files, handlers, state, values  # noqa: E402

hub = test_models_zoo.hub  # a fixture, shared
ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "assets" / "cat_and_coffee.jpg"
METHODS = ["gradcam", "guided_gradcam", "layercam"]


@pytest.fixture(scope="module")
def classifier():
    return models.load(config.DEFAULT_MODEL)


@pytest.fixture(scope="module")
def reference(classifier) -> state.Result:
    """The maps of a request before any fault."""
    return handlers.explain_image(str(IMAGE), methods=METHODS, top_k=2)[-1]


def assert_same_maps(result: state.Result, reference: state.Result) -> None:
    assert set(result.tiles) == set(reference.tiles)
    for key, tile in reference.tiles.items():
        np.testing.assert_allclose(result.tiles[key].raw, tile.raw, rtol=1e-5, atol=1e-7)


def assert_recovers(classifier, before: dict, reference: state.Result) -> None:
    """The model is as it was, and the next request gives the maps it gave before the fault."""
    assert_unchanged(classifier.module, before)
    assert_same_maps(handlers.explain_image(str(IMAGE), methods=METHODS, top_k=2)[-1], reference)


def test_a_method_that_raises_mid_request(classifier, reference, monkeypatch):
    before = snapshot(classifier.module)

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setitem(cam_formulas.GRADIENT_CAMS, "gradcam", broken)
    with pytest.raises(gr.Error, match="unexpected") as info:
        handlers.explain_image(str(IMAGE), methods=METHODS, top_k=2)
    assert "boom" not in str(info.value)
    monkeypatch.undo()
    assert_recovers(classifier, before, reference)


def test_a_layer_that_does_not_fit(classifier, reference):
    before = snapshot(classifier.module)
    head = next(name for name, m in classifier.module.named_modules() if isinstance(m, torch.nn.Linear))
    image = values.load_image(str(IMAGE))
    with pytest.raises(explainers.ExplainerError, match="spatial feature map"):
        state.compute(image, config.DEFAULT_MODEL, head, ["gradcam"], 1, [], False)
    assert_recovers(classifier, before, reference)


def test_an_interrupted_request(classifier, reference, monkeypatch):
    """A request stopped from its progress callback (as a cancelled or dropped request is)."""
    monkeypatch.setattr(config, "MAX_REQUEST_SECONDS", 10_000)  # not refused on a busy machine
    before = snapshot(classifier.module)
    calls = []

    def cancel(fraction, desc=""):
        calls.append(fraction)
        if len(calls) > 2:
            raise KeyboardInterrupt  # not an Exception: nothing may swallow it

    with pytest.raises(KeyboardInterrupt):
        handlers.explain_image(str(IMAGE), methods=["scorecam"], top_k=1, progress=cancel)
    assert len(calls) == 3
    assert_recovers(classifier, before, reference)


def test_concurrent_requests_leave_no_hooks_on_the_cached_models(classifier, reference):
    before = snapshot(classifier.module)
    errors: list[BaseException] = []
    results: list[state.Result] = []

    def user(methods: list[str]) -> None:
        try:
            results.append(handlers.explain_image(str(IMAGE), methods=methods, top_k=2)[-1])
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [
        threading.Thread(target=user, args=(m,)) for m in (METHODS, ["eigencam"], METHODS, ["gradient", "gradcam++"])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(r.methods == METHODS for r in results) == 2
    for r in results:
        if r.methods == METHODS:
            assert_same_maps(r, reference)
    for name in list(models.registry._cache):
        hooks = sum(
            len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
            for m in models.registry._cache[name].module.modules()
        )
        assert hooks == 0, name
    assert_unchanged(classifier.module, before)


def test_a_failed_download_leaves_the_app_working(hub, monkeypatch, classifier, reference):
    from models import downloads

    monkeypatch.setattr(downloads, "reachable", lambda url, timeout=0: True)
    monkeypatch.setattr(torch.hub, "urlopen", lambda request: Response(b"x" * 10_000_000, fail=True))
    model, *_, note, loaded = handlers.on_model_change("resnet18", config.DEFAULT_MODEL)
    assert "not installed on this server" in note and model.value == loaded == config.DEFAULT_MODEL
    assert str(hub) not in note and "/" not in note  # no server path
    assert list(hub.iterdir()) == []  # no half-written weights
    labels = dict((name, label) for label, name in choices.model_choices())
    assert "downloads" in labels["resnet18"]  # still offered, still not "ready"
    _, layer, *_ = handlers.on_model_change(config.DEFAULT_MODEL, config.DEFAULT_MODEL)
    assert layer.value == classifier.default_layer
    assert_same_maps(handlers.explain_image(str(IMAGE), methods=METHODS, top_k=2)[-1], reference)


def test_concurrent_requests_do_not_trip_over_each_others_download_folders(monkeypatch, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(files, "ARCHIVE_ROOT", tmp_path)
    with ThreadPoolExecutor(8) as pool:
        folders = list(pool.map(lambda _: files.new_folder(), range(200)))
    assert len(set(folders)) == 200 and len(list(tmp_path.iterdir())) == 200
