"""The "Does noise fool it?" view's handler (webapp/attack_view.py) without a browser: the saved
adversarial image keeps to the budget and fools the model, the clean maps are the Explain button's,
and hostile or impossible requests get a message. Runs on the embedded efficientnet_lite0 (CPU)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from results_page import FILE_ROUTE  # noqa: E402

import models  # noqa: E402
from explainers import attack  # noqa: E402
from webapp import attack_view, budget, choices, config, handlers, state  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COMPOSITE = ROOT / "assets" / "cat_and_coffee.jpg"
EPSILON = 3


def _files(page: str) -> dict[str, Path]:
    """Every picture the view's HTML shows, by file name."""
    import re

    paths = [Path(src[len(FILE_ROUTE) :]) for src in re.findall(r"src='([^']+)'", page)]
    assert paths and all(path.is_file() for path in paths)
    return {path.name: path for path in paths}


def _levels(path: Path) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture.convert("RGB"), dtype=int)


@pytest.fixture(scope="module")
def espresso():
    """One attack: make the model see espresso, within 3 levels, with Grad-CAM and Eigen-CAM."""
    return attack_view.attack_image(
        str(COMPOSITE), methods=["gradcam", "eigencam"], target="967: espresso", epsilon=EPSILON, steps=10
    )


def test_the_saved_adversarial_image_keeps_to_the_budget_and_fools_the_model(espresso):
    page, status, png = espresso
    shown = _files(page)
    clean, adversarial = _levels(shown["cat_and_coffee_input.png"]), _levels(Path(png))
    assert Path(png).name == "cat_and_coffee_adversarial.png" and Path(png).name in shown
    assert 0 < np.abs(adversarial - clean).max() <= EPSILON  # L-inf, in 0-255 levels, of the files
    classifier = models.load(config.DEFAULT_MODEL)
    with Image.open(png) as saved:
        assert int(classifier.module(attack.crop_input(classifier, saved)).argmax()) == 967
    assert "→ espresso" in status and f"at most {np.abs(adversarial - clean).max()} of 255 levels" in status
    difference = _levels(shown["cat_and_coffee_difference.png"])
    assert difference.shape == clean.shape and {0, 255} <= set(np.unique(difference))  # amplified


def test_the_clean_maps_are_the_explain_buttons_maps(espresso):
    """The clean image's overlays are byte for byte those of the Explain button's download (same
    names: the export's), and the adversarial image's espresso map differs from the clean one."""
    page, _, _ = espresso
    shown = _files(page)
    before = next(name for name in shown if name.startswith("cat_and_coffee_gradcam_") and "967" not in name)
    key = before.removeprefix("cat_and_coffee_gradcam_").removesuffix(".png")  # "285-Egyptian_cat"
    archive = handlers.explain_image(
        str(COMPOSITE), methods=["gradcam", "eigencam"], top_k=0, classes=[key.split("-")[0], "967"]
    )[2]
    overlays = [f"cat_and_coffee_{m}_{k}.png" for m in ("gradcam", "eigencam") for k in (key, "967-espresso")]
    with zipfile.ZipFile(archive) as zf:
        for name in overlays:
            assert zf.read(name) == shown[name].read_bytes(), name
    adversarial = _levels(shown["cat_and_coffee_adversarial_gradcam_967-espresso.png"])
    assert np.abs(adversarial - _levels(shown["cat_and_coffee_gradcam_967-espresso.png"])).mean() > 1


def test_the_maps_table_has_a_clean_and_an_adversarial_row_per_class(espresso):
    from results_page import read_results

    page, _, _ = espresso
    table = read_results(page[page.index("<table class='attack-table'>") :])
    assert table.columns[-2:] == ["Grad-CAM", "Eigen-CAM"]
    assert len(table.rows) == 4  # the clean top class and espresso, each on both images
    assert ["on the clean image" in row.header for row in table.rows] == [True, False, True, False]
    assert "espresso" in table.rows[2].header and "the target" in table.rows[2].header
    for row in table.rows:
        assert len(row.files) == 3  # the image at the head, then one map per method
        kind = "clean" if "on the clean image" in row.header else "adversarial"
        assert row.files[0].name == (
            "cat_and_coffee_input.png" if kind == "clean" else "cat_and_coffee_adversarial.png"
        )


@pytest.mark.parametrize(
    "change, message",
    [
        ({"epsilon": 17}, "The budget ε must be a whole number from 1 to 16"),
        ({"epsilon": 0}, "The budget ε must be a whole number from 1 to 16"),
        ({"epsilon": -2}, "The budget ε must be a whole number"),
        ({"epsilon": 2.5}, "The budget ε must be a whole number"),
        ({"epsilon": "1e9"}, "The budget ε must be a whole number"),
        ({"epsilon": float("nan")}, "The budget ε must be a whole number"),
        ({"epsilon": [2]}, "The budget ε must be a whole number"),
        ({"steps": 51}, "Steps must be a whole number from 1 to 50"),
        ({"steps": "ten"}, "Steps must be a whole number"),
        ({"target": "zzzz"}, "Unknown class 'zzzz'"),
        ({"target": 1000}, "out of range"),
        ({"target": {"class": 1}}, "The target must be one class"),
        ({"target": "281, 282"}, "Pick one class"),
        ({"methods": ["nosuch"]}, "Unknown method"),
        ({"methods": []}, "Please tick at least one method"),
        ({"layer": "no.such.layer"}, "has no layer"),
        ({"image": None}, "Please give an image first"),
    ],
)
def test_hostile_values_are_refused_with_a_message(change, message):
    request = dict(image=str(COMPOSITE), methods=["gradcam"], target="967", epsilon=2, steps=2) | change
    with pytest.raises(gr.Error, match=message) as refused:
        attack_view.attack_image(**request)
    assert "Traceback" not in str(refused.value) and "/" not in str(refused.value).replace("0-255", "")


def test_a_web_request_may_use_only_listed_models_and_uploaded_images(tmp_path):
    web = handlers.for_the_web(attack_view.attack_image, frozenset({config.DEFAULT_MODEL}), handlers.upload_policy())
    with pytest.raises(gr.Error, match="Unknown model"):
        web(str(COMPOSITE), "resnet50", None, ["gradcam"], "967", 2, 2)
    Image.new("RGB", (64, 64)).save(tmp_path / "secret.png")
    with pytest.raises(gr.Error):
        web({"path": str(tmp_path / "secret.png"), "orig_name": "secret.png"}, config.DEFAULT_MODEL, None, ["gradcam"])


def test_a_request_over_the_time_limit_is_refused_before_it_runs(monkeypatch):
    monkeypatch.setattr(state.PASS_TIMES, "seconds", lambda classifier: 1.0)  # a very slow server
    ran = []
    monkeypatch.setattr(attack, "explain_attack", lambda *a, **k: ran.append(1))
    with pytest.raises(gr.Error, match=r"50 attack steps .* could take up to about \d+ s.*at most 120 s"):
        attack_view.attack_image(str(COMPOSITE), methods=["gradcam"], epsilon=2, steps=50)
    assert not ran


def test_a_run_past_its_deadline_stops_with_a_message(monkeypatch):
    deadline = budget.Deadline
    monkeypatch.setattr(budget, "Deadline", lambda limit: deadline(-1.0))  # already over
    with pytest.raises(gr.Error, match="Stopped after"):
        attack_view.attack_image(str(COMPOSITE), methods=["gradcam"], epsilon=2, steps=3)


def test_the_attack_runs_in_an_engine_slot(monkeypatch):
    free = []

    def fake(*args, **kwargs):
        free.append(state.ENGINE_SLOTS._value)
        raise attack.ExplainerError("stop here")

    monkeypatch.setattr(attack, "explain_attack", fake)
    idle = state.ENGINE_SLOTS._value
    with pytest.raises(gr.Error, match="stop here"):
        attack_view.attack_image(str(COMPOSITE), methods=["gradcam"], epsilon=2, steps=2)
    assert free == [idle - 1] and state.ENGINE_SLOTS._value == idle


def test_the_target_picker_reads_any_class_names_and_entries():
    classifier = models.load(config.DEFAULT_MODEL)
    assert attack_view.parse_target(classifier, attack_view.ANY_CLASS) is None
    assert attack_view.parse_target(classifier, None) is None
    assert attack_view.parse_target(classifier, "any") is None
    assert attack_view.parse_target(classifier, "967: espresso") == 967
    assert attack_view.parse_target(classifier, "espresso") == 967
    assert attack_view.target_choices_of(classifier)[:2] == [attack_view.ANY_CLASS, "0: tench"]
    assert attack_view.target_choices_of(classifier)[1:] == choices.single_class_choices(classifier)  # no class sets
