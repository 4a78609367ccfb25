"""One archive layout: the web app's zip and the command line's folder hold the same files,
names, npz keys and json record for the same request (explainers/export.py)."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import zipfile
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from explainers import cli, export  # noqa: E402
from webapp import handlers  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "assets" / "cat_and_coffee.jpg"
TIMINGS = ("seconds", "device")


def _without_timings(record: dict) -> dict:
    out = {k: v for k, v in record.items() if k not in TIMINGS and k != "image"}
    out["maps"] = [{k: v for k, v in m.items() if k not in TIMINGS} for m in record["maps"]]
    return out


def test_the_app_zip_and_the_cli_folder_have_one_layout(tmp_path):
    archive = handlers.explain_image(
        str(IMAGE),
        methods=["gradcam", "layercam"],
        top_k=0,
        classes=["281", "967: espresso"],
        colormap="inferno",
        opacity=0.6,
    )[2]
    assert (
        cli.main(
            [
                str(IMAGE),
                "--methods",
                "gradcam,layercam",
                "--targets",
                "281,espresso",
                "--colormap",
                "inferno",
                "--opacity",
                "0.6",
                "--device",
                "cpu",
                "-q",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    folder = {p.name: p for p in tmp_path.iterdir()}
    with zipfile.ZipFile(archive) as zf:
        assert set(zf.namelist()) == set(folder)
        app_record = json.loads(zf.read("cat_and_coffee.json"))
        cli_record = json.loads(folder["cat_and_coffee.json"].read_text())
        assert _without_timings(app_record) == _without_timings(cli_record)
        with (
            np.load(io.BytesIO(zf.read("cat_and_coffee_maps.npz"))) as app_maps,
            np.load(folder["cat_and_coffee_maps.npz"]) as cli_maps,
        ):
            assert (
                set(app_maps.files)
                == set(cli_maps.files)
                == {f"{m}/{c}/{form}" for m in ("gradcam", "layercam") for c in (281, 967) for form in ("map", "raw")}
            )
            for key in app_maps.files:
                np.testing.assert_allclose(app_maps[key], cli_maps[key], atol=1e-5)
        overlay = app_record["maps"][0]["file"]
        assert overlay == "cat_and_coffee_gradcam_281-tabby.png"
        assert zf.read(overlay) == folder[overlay].read_bytes()


def test_contrast_and_class_set_maps_get_stable_keys_and_file_safe_names(tmp_path):
    from types import SimpleNamespace

    from explainers import ClassSet, Contrast

    labels = [f"class {i}" for i in range(10)]
    labels[2], labels[7] = "tabby/cat", "espresso"
    targets = [2, Contrast(2, 7), ClassSet((3, 4)), ClassSet((5, 6), "pets")]
    maps = [
        SimpleNamespace(
            method="gradcam++",
            target=t,
            counterfactual=False,
            probability=0.25,
            seconds=0.1,
            map=np.full((8, 8), 0.5, np.float32),
            raw=np.full((8, 8), float(i), np.float32),
        )
        for i, t in enumerate(targets)
    ]
    explained = export.Explained(
        name="pic.png",
        model="net",
        layer="layer4",
        device="cpu",
        input_size=(8, 8),
        crop=Image.new("RGB", (8, 8)),
        labels=labels,
        methods=["gradcam++"],
        targets=targets,
        probabilities={t: 0.25 for t in targets},
        predictions=[(2, 0.5)],
        maps=maps,
    )
    info = export.write_folder(tmp_path, explained, export.Display())
    assert [m["file"] for m in info["maps"]] == [
        "pic_gradcampp_2-tabby_cat.png",
        "pic_gradcampp_contrast-2-7-tabby_cat_rather_than_espresso.png",
        "pic_gradcampp_set-3-4-class_3_p_class_4.png",
        "pic_gradcampp_set-pets-pets.png",
    ]
    assert all((tmp_path / m["file"]).is_file() for m in info["maps"])
    assert [m["target"] for m in info["maps"]] == [2, "contrast-2-7", "set-3-4", "set-pets"]
    assert info["targets"][0] == {"class": 2, "label": "tabby/cat", "probability": 0.25}
    assert info["targets"][1]["label"] == "tabby/cat rather than espresso"
    with np.load(tmp_path / "pic_maps.npz") as arrays:
        assert float(arrays["gradcam++/contrast-2-7/raw"][0, 0]) == 1.0
        assert float(arrays["gradcam++/set-pets/raw"][0, 0]) == 3.0
    assert export.row_title(Contrast(2, 7), labels) == "tabby/cat rather than espresso"
    assert export.row_title(2, labels) == "2 tabby/cat"


def test_a_class_map_and_its_why_not_map_are_kept_apart(tmp_path):
    from types import SimpleNamespace

    labels = ["tabby", "espresso"]

    def saliency(counterfactual: bool) -> SimpleNamespace:
        value = 0.9 if counterfactual else 0.1
        return SimpleNamespace(
            method="gradcam",
            target=0,
            counterfactual=counterfactual,
            probability=0.25,
            seconds=0.1,
            map=np.full((8, 8), value, np.float32),
            raw=np.full((8, 8), value, np.float32),
        )

    explained = export.Explained(
        name="pic.png",
        model="net",
        layer="layer4",
        device="cpu",
        input_size=(8, 8),
        crop=Image.new("RGB", (8, 8)),
        labels=labels,
        methods=["gradcam"],
        targets=[0],
        probabilities={0: 0.25},
        predictions=[(0, 0.25)],
        maps=[saliency(True), saliency(False)],
        counterfactual=True,
    )
    assert explained.rows() == [(0, False), (0, True)]  # the class's row, then its "why not" row
    assert explained.get("gradcam", 0).counterfactual is False
    assert explained.get("gradcam", 0, counterfactual=True).counterfactual is True
    info = export.write_folder(tmp_path, explained, export.Display(colormap="gray", opacity=1.0))
    assert sorted(m["file"] for m in info["maps"]) == ["pic_gradcam-cf_0-tabby.png", "pic_gradcam_0-tabby.png"]
    with (
        Image.open(tmp_path / "pic_gradcam_0-tabby.png") as evidence_for,
        Image.open(tmp_path / "pic_gradcam-cf_0-tabby.png") as against,
    ):
        assert np.asarray(evidence_for.convert("L")).mean() < np.asarray(against.convert("L")).mean()
    with np.load(tmp_path / "pic_maps.npz") as arrays:
        assert float(arrays["gradcam/0/raw"][0, 0]) == np.float32(0.1)
        assert float(arrays["gradcam-cf/0/raw"][0, 0]) == np.float32(0.9)
    with Image.open(tmp_path / "pic_grid.png") as grid:
        only_for = dataclasses.replace(explained, maps=[saliency(False)])
        one_row = export.draw_grid(only_for, export.draw_overlays(only_for, export.Display()))
        assert grid.height > one_row.height  # two rows of maps


def test_pictures_are_lossless_pngs_of_their_rgb_pixels(tmp_path):
    from PIL import Image

    from explainers import export

    rng = np.random.default_rng(0)
    for height, width in [(1, 1), (1, 5), (7, 1), (224, 224), (31, 97)]:
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        export.save_picture(Image.fromarray(pixels), tmp_path / "p.png")
        with Image.open(tmp_path / "p.png") as saved:
            assert saved.format == "PNG" and saved.mode == "RGB"
            np.testing.assert_array_equal(np.asarray(saved), pixels)
    grey = Image.fromarray(rng.integers(0, 256, (5, 6), dtype=np.uint8), "L")
    with Image.open(io.BytesIO(export.png_bytes(grey))) as saved:
        np.testing.assert_array_equal(np.asarray(saved), np.asarray(grey.convert("RGB")))


def test_a_large_photo_is_reduced_by_a_whole_factor_and_its_box_with_it():
    """fit_photo: a photo over MAX_PHOTO_SIDE becomes the means of factor x factor blocks (the
    smallest whole factor that fits), the crop's box scaled by the same factor; one that fits
    comes back as it is."""
    side = export.MAX_PHOTO_SIDE
    pixels = np.random.default_rng(0).integers(0, 256, (side + 100, 2 * side + 10, 3), dtype=np.uint8)
    fitted, box = export.fit_photo(Image.fromarray(pixels), (30.0, 60.0, 930.0, 960.0))
    assert fitted.size == (-(-(2 * side + 10) // 3), -(-(side + 100) // 3)) and max(fitted.size) <= side
    assert box == (10.0, 20.0, 310.0, 320.0)
    block = pixels[300:303, 600:603].reshape(-1, 3).mean(0)
    assert np.abs(np.asarray(fitted, dtype=float)[100, 200] - block).max() <= 0.5  # a block's mean
    small = Image.fromarray(pixels[:500, :700])
    assert export.fit_photo(small, (1.0, 2.0, 3.0, 4.0)) == (small, (1.0, 2.0, 3.0, 4.0))
    gray, _ = export.fit_photo(small.convert("L"), (0.0, 0.0, 1.0, 1.0))
    assert gray.mode == "RGB" and gray.size == small.size
