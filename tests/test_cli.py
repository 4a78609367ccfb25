"""The command line, python -m explainers: files written, their contents, errors and exit codes.

Runs the real engine on the embedded efficientnet_lite0 (offline) with the fast methods.
"""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import models
from explainers import cli, export
from models.preprocessing import Preprocessing

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["gradcam", "layercam"]
SIZE = (224, 224)  # efficientnet_lite0's input


def _picture(w=200, h=150, seed=0) -> Image.Image:
    """A small synthetic photo: a smooth background and a few bright blobs."""
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    rng = np.random.default_rng(seed)
    rgb = np.stack([xx, yy, 1 - xx], axis=-1) * 180
    for _ in range(3):
        cx, cy, r = rng.random() * 0.8 + 0.1, rng.random() * 0.6 + 0.1, 0.08
        rgb[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.integers(0, 256, 3)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    _picture(seed=0).save(folder / "good.png")
    _picture(160, 240, seed=1).save(folder / "second photo.jpg", quality=90)
    (folder / "broken.png").write_bytes(b"this is not an image at all")
    data = (folder / "second photo.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "notes.txt").write_text("not an input")
    return folder


@pytest.fixture(scope="module")
def batch(inputs, tmp_path_factory):
    """One in-process run over the whole folder: two good images, two bad ones."""
    out = tmp_path_factory.mktemp("batch") / "out"
    before = sorted(p.name for p in inputs.iterdir())
    capture = tmp_path_factory.mktemp("stderr") / "stderr.txt"
    with open(capture, "w+") as err:
        saved, sys.stderr = sys.stderr, err
        try:
            code = cli.main(
                [str(inputs), "--methods", ",".join(METHODS), "--top-k", "2", "--device", "cpu", "--out", str(out)]
            )
        finally:
            sys.stderr = saved
        err.seek(0)
        stderr = err.read()
    assert sorted(p.name for p in inputs.iterdir()) == before  # nothing written beside the inputs
    return code, out, stderr


def test_bad_images_fail_the_run_but_not_the_others(batch):
    code, out, stderr = batch
    assert code == 1
    assert "broken.png: error:" in stderr and "truncated.jpg: error:" in stderr
    assert "2 of 4 images failed" in stderr
    assert "Traceback" not in stderr and "\r" not in stderr  # no bar when stderr is no terminal
    assert "[1/4]" in stderr and "good.png" in stderr  # one line per image
    names = {p.name for p in out.iterdir()}
    assert not any(n.startswith(("broken", "truncated", "notes")) for n in names)
    for stem in ("good", "second_photo"):
        assert {f"{stem}.json", f"{stem}_grid.png", f"{stem}_maps.npz"} <= names


def test_json_record(batch):
    _, out, _ = batch
    import models

    classifier = models.load("efficientnet_lite0", "cpu")
    record = json.loads((out / "good.json").read_text())
    assert record["model"] == "efficientnet_lite0"
    assert record["layer"] == classifier.default_layer
    assert record["device"] == "cpu"
    assert record["methods"] == METHODS
    predictions = record["predictions"]
    assert len(predictions) == 5
    probabilities = [p["probability"] for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001
    assert all(classifier.labels[p["class"]] == p["label"] for p in predictions)
    assert [t["class"] for t in record["targets"]] == [p["class"] for p in predictions[:2]]
    assert len(record["maps"]) == len(METHODS) * 2
    for item in record["maps"]:
        assert item["method"] in METHODS and item["seconds"] >= 0
        assert item["label"] == classifier.labels[item["target"]]
        assert (out / item["file"]).is_file()


def test_overlays_and_grid(batch):
    _, out, _ = batch
    record = json.loads((out / "good.json").read_text())
    for target in record["targets"]:
        for method in METHODS:
            label = target["label"].replace(" ", "_")
            path = out / f"good_{method}_{target['class']}-{label}.png"
            with Image.open(path) as im:
                assert im.size == SIZE and im.mode == "RGB"
    with Image.open(out / "good_grid.png") as im:  # 2 rows (classes) x 3 columns (input + methods)
        assert 3 * SIZE[0] < im.width < 4 * SIZE[0] + 64  # + the row labels
        assert 2 * SIZE[1] < im.height < 3 * SIZE[1]


def test_npz_maps(batch):
    _, out, _ = batch
    record = json.loads((out / "good.json").read_text())
    with np.load(out / "good_maps.npz") as data:
        keys = set(data.files)
        expected = {f"{m}/{t['class']}/{form}" for m in METHODS for t in record["targets"] for form in ("map", "raw")}
        assert keys == expected
        for key in keys:
            array = data[key]
            assert array.shape == SIZE[::-1] and array.dtype == np.float32
            if key.endswith("/map"):
                assert 0.0 <= array.min() and array.max() <= 1.0


def test_subprocess_targets_by_name_and_index(inputs, tmp_path):
    out = tmp_path / "deep" / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "explainers",
            str(inputs / "good.png"),
            "--methods",
            "layercam",
            "--targets",
            "tabby,285",
            "--shared-scale",
            "--colormap",
            "inferno",
            "--opacity",
            "0.7",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("[1/1] good.png: ")
    assert {p.name for p in out.iterdir()} == {
        "good.json",
        "good_grid.png",
        "good_maps.npz",
        "good_input.png",
        "good_layercam_281-tabby.png",
        "good_layercam_285-Egyptian_cat.png",
        "good_layercam_281-tabby_photo.jpg",
        "good_layercam_285-Egyptian_cat_photo.jpg",
    }
    record = json.loads((out / "good.json").read_text())
    assert [t["class"] for t in record["targets"]] == [281, 285]
    assert record["shared_scale"] is True and record["colormap"] == "inferno"
    assert list(tmp_path.iterdir()) == [tmp_path / "deep"]  # written only inside --out


def test_contrast_and_class_set_targets(inputs, tmp_path):
    out = tmp_path / "out"
    assert (
        cli.main(
            [
                str(inputs / "good.png"),
                "--methods",
                "gradcam",
                "--targets",
                "281",
                "--contrast",
                "tabby:espresso",
                "--class-set",
                "dog",
                "--device",
                "cpu",
                "-q",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert {p.name for p in out.iterdir()} >= {
        "good_gradcam_281-tabby.png",
        "good_gradcam_contrast-281-967-tabby_rather_than_espresso.png",
        "good_gradcam_set-dog-dog.png",
        "good_gradcam_contrast-281-967-tabby_rather_than_espresso_photo.jpg",
    }
    record = json.loads((out / "good.json").read_text())
    assert record["targets"][0]["class"] == 281
    contrast, dogs = record["targets"][1:]
    assert contrast["target"] == "contrast-281-967" and contrast["classes"] == [281, 967]
    assert contrast["label"] == "tabby rather than espresso" and contrast["kind"] == "contrast"
    assert dogs["target"] == "set-dog" and dogs["classes"] == list(range(151, 269))
    with np.load(out / "good_maps.npz") as maps:
        assert {"gradcam/contrast-281-967/raw", "gradcam/set-dog/map"} <= set(maps.files)
    # p(tabby) / (p(tabby) + p(espresso)) and the sum of the 118 dog classes' probabilities
    assert 0 < contrast["probability"] < 1 and 0 <= dogs["probability"] <= 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--methods", "gradcam,nosuch"], "unknown method 'nosuch'"),
        (["--model", "no_such_model"], "no_such_model"),
        (["--layer", "no.such.layer"], "unknown layer 'no.such.layer'"),
        (["--targets", "cat"], "ambiguous class 'cat'"),
        (["--targets", "zzzz"], "unknown class 'zzzz'"),
        (["--targets", "1000"], "out of range"),
        (["--opacity", "3"], "--opacity"),
        (["--top-k", "2", "--targets", "1"], "not allowed"),
        (["--contrast", "tabby"], "give two classes as A:B"),
        (["--contrast", "tabby:281"], "the two classes are the same"),
        (["--class-set", "unicorn"], "No ImageNet class set named 'unicorn'"),
        (["--methods", "gradient,eigencam", "--counterfactual"], "none of gradient, eigencam has a 'why not' form"),
        (["--attack", "zzzz"], "unknown class 'zzzz'"),
        (["--attack", "281,282"], "--attack: give one class"),
        (["--attack", "any", "--targets", "281"], "--attack explains"),
        (["--attack", "any", "--counterfactual"], "--attack explains"),
        (["--epsilon", "2"], "--epsilon and --attack-steps go with --attack"),
        (["--attack", "any", "--epsilon", "0"], "--epsilon"),
        (["--attack", "any", "--epsilon", "nan"], "--epsilon"),
        (["--attack", "any", "--epsilon", "256"], "at most 255 levels"),
        (["--attack", "any", "--attack-steps", "0"], "--attack-steps"),
    ],
)
def test_bad_arguments_exit_2(inputs, tmp_path, capsys, args, message):
    out = tmp_path / "out"
    code = cli.main([str(inputs / "good.png"), "--device", "cpu", "--out", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("python -m explainers: error:")
    assert not out.exists()  # checked before anything is written


def test_subprocess_bad_method_is_one_line(inputs, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "explainers",
            str(inputs / "good.png"),
            "--methods",
            "gradcamm",
            "--out",
            str(tmp_path / "out"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "did you mean gradcam" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "out").exists()


def test_no_image_is_a_usage_error(capsys):
    assert cli.main([]) == 2
    assert "no IMAGE" in capsys.readouterr().err


def test_listings(capsys):
    assert cli.main(["--list-methods", "--list-models"]) == 0
    listed = capsys.readouterr().out
    assert "gradcam" in listed and "scorecam" in listed and "efficientnet_lite0" in listed
    assert cli.main(["--list-layers", "--model", "efficientnet_lite0", "--device", "cpu"]) == 0
    layers = capsys.readouterr().out.splitlines()
    assert any(line.startswith("* ") for line in layers) and len(layers) > 10
    assert layers[-1].startswith("Default layer (*): ") and "before pooling" in layers[-1]


def test_list_layers_shows_token_layouts_and_the_default_reason():
    from token_nets import tiny_vit

    classifier = models.Classifier(
        "vit", tiny_vit(), [f"class {i}" for i in range(10)], Preprocessing(96, (96, 96)), "cpu"
    )
    out = io.StringIO()
    cli.list_layers(classifier, out)
    lines = out.getvalue().splitlines()
    default = next(line for line in lines if line.startswith("* "))
    assert "blocks.1.norm1" in default and default.endswith("tokens, 1 prefix")
    assert "first norm" in lines[-1] and "blocks.1.norm1" in lines[-1]


def test_same_stem_from_two_folders_is_not_overwritten(tmp_path, capsys):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        _picture(64, 64, seed=2).save(tmp_path / name / "pic.png")
    out = tmp_path / "out"
    code = cli.main(
        [
            str(tmp_path / "a"),
            str(tmp_path / "b" / "pic.png"),
            str(tmp_path / "a" / "pic.png"),
            "--methods",
            "gradcam",
            "--device",
            "cpu",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert code == 0 and capsys.readouterr().err == ""
    names = {p.name for p in out.iterdir()}
    assert {"pic.json", "pic-2.json"} <= names and "pic-3.json" not in names  # a/pic.png once


def test_load_image_applies_exif_orientation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    Image.new("RGB", (40, 20), (200, 10, 10)).save(tmp_path / "rotated.jpg", exif=exif)
    Image.new("LA", (8, 6)).save(tmp_path / "gray.png")
    Image.new("RGB", (1, 1), (9, 8, 7)).save(tmp_path / "dot.png")
    assert cli.load_image(tmp_path / "rotated.jpg").size == (20, 40)
    image = cli.load_image(tmp_path / "gray.png")
    assert image.mode == "RGB" and image.size == (8, 6)
    assert cli.load_image(tmp_path / "dot.png").getpixel((0, 0)) == (9, 8, 7)  # 1×1, as in the app
    with pytest.raises(cli.BadImage, match="“missing.png” was not found"):
        cli.load_image(tmp_path / "missing.png")


def test_load_image_has_the_app_limits(tmp_path):
    Image.new("L", (2, 41)).save(tmp_path / "strip.png")
    with pytest.raises(cli.BadImage, match="2×41 pixels: too long and thin"):
        cli.load_image(tmp_path / "strip.png")


def test_out_that_cannot_be_created_is_one_line_exit_2(inputs, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    code = cli.main(
        [str(inputs / "good.png"), "--methods", "gradcam", "--device", "cpu", "--out", str(tmp_path / "file" / "out")]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("python -m explainers: error: --out ") and "cannot create the directory" in err


def test_safe_names():
    assert export.safe_name("gradcam++") == "gradcampp"
    assert export.safe_name("T-shirt/tee") == "T-shirt_tee"
    assert export.safe_name("../..", "x") == "x"
    assert export.safe_name("great white shark") == "great_white_shark"
    assert export.stem_of("my cat & coffee.JPG") == "my_cat_coffee"


@pytest.mark.parametrize("size", [(640, 480), (300, 500), (224, 224), (1001, 999)])
def test_photo_box_is_the_part_the_model_sees(size):
    """A map mapped back through the resize and crop lands where the crop came from."""
    preprocessing = Preprocessing(256, (224, 224))
    x, y = np.meshgrid(np.linspace(0, 255, size[0]), np.linspace(0, 255, size[1]))
    photo = Image.fromarray(np.stack([x, y, np.zeros_like(x)], -1).round().astype(np.uint8))
    crop = np.asarray(preprocessing.crop(photo), dtype=float)
    left, top, right, bottom = export.photo_box(preprocessing, size)
    step_x, step_y = 255 / (size[0] - 1), 255 / (size[1] - 1)
    assert crop[0, 0, 0] == pytest.approx(left * step_x, abs=2 + step_x)
    assert crop[-1, -1, 0] == pytest.approx(right * step_x, abs=2 + 2 * step_x)
    assert crop[0, 0, 1] == pytest.approx(top * step_y, abs=2 + step_y)
    assert crop[-1, -1, 1] == pytest.approx(bottom * step_y, abs=2 + 2 * step_y)


def test_photo_overlay_has_the_photo_size_and_colours_only_the_crop(inputs, tmp_path):
    photo = Image.new("RGB", (400, 240), (128, 128, 128))
    photo.save(tmp_path / "wide.png")
    out = tmp_path / "out"
    assert (
        cli.main([str(tmp_path / "wide.png"), "--methods", "gradcam", "--device", "cpu", "--out", str(out), "-q"]) == 0
    )
    record = json.loads((out / "wide.json").read_text())
    with Image.open(out / record["maps"][0]["photo_file"]) as im:
        assert im.size == (400, 240)
        pixels = np.asarray(im, dtype=int)
    preprocessing = models.load(cli.DEFAULT_MODEL).preprocessing
    left, _, right, _ = (round(v) for v in export.photo_box(preprocessing, (400, 240)))
    assert 0 < left < right < 400  # a centre crop of a wide photo
    outside = np.concatenate([pixels[:, : left - 8], pixels[:, right + 8 :]], axis=1)  # JPEG blocks
    assert np.abs(outside - 128).mean() < 1.5  # the photo as it was (but for JPEG ringing)
    assert np.abs(pixels[:, left + 2 : right - 2] - 128).mean() > 20  # the map, coloured


COMPOSITE = ROOT / "assets" / "cat_and_coffee.jpg"


def test_attack_writes_the_clean_and_the_adversarial_layout_within_the_budget(tmp_path, capsys):
    """--attack espresso --epsilon 2: the adversarial PNG differs from the clean crop by at most 2
    levels, the model sees espresso in it as saved, and the clean maps are explain()'s."""
    import explainers
    from explainers import attack

    out = tmp_path / "out"
    args = [str(COMPOSITE), "--attack", "espresso", "--epsilon", "2", "--methods", "gradcam", "--device", "cpu"]
    assert cli.main([*args, "--out", str(out)]) == 0
    line = capsys.readouterr().err
    assert line.count("\n") == 1 and " -> espresso (" in line and "L-inf 2 of 2 levels" in line
    record = json.loads((out / "cat_and_coffee_attack.json").read_text())
    assert record["success"] is True and record["target"] == {"class": 967, "label": "espresso"}
    assert record["adversarial"][0]["class"] == 967 and record["clean"][0]["class"] != 967
    original = record["clean"][0]["class"]
    assert [c["class"] for c in record["classes"]] == [original, 967]
    assert len(record["clean"]) == len(record["adversarial"]) == 3
    assert all((out / name).is_file() for name in record["files"].values())
    with (
        Image.open(out / "cat_and_coffee_input.png") as clean,
        Image.open(out / record["files"]["adversarial_image"]) as adv,
    ):
        change = np.abs(np.asarray(adv, dtype=int) - np.asarray(clean, dtype=int))
        classifier = models.load(cli.DEFAULT_MODEL, "cpu")
        assert int(classifier.module(attack.crop_input(classifier, adv)).argmax()) == 967  # as saved
    assert 0 < change.max() <= 2 == record["linf_levels"]
    with Image.open(out / "cat_and_coffee_difference.png") as difference:  # amplified: 2 levels -> 0 or 255
        assert difference.size == SIZE and {0, 255} <= set(np.unique(np.asarray(difference)))
    expected = explainers.explain(
        classifier, classifier.preprocess(models.open_image(COMPOSITE)), ["gradcam"], targets=[original, 967]
    )
    with (
        np.load(out / "cat_and_coffee_maps.npz") as clean_maps,
        np.load(out / "cat_and_coffee_adversarial_maps.npz") as adv_maps,
    ):
        assert (
            set(clean_maps.files)
            == set(adv_maps.files)
            == {f"gradcam/{c}/{f}" for c in (original, 967) for f in ("map", "raw")}
        )
        for c in (original, 967):
            assert np.array_equal(clean_maps[f"gradcam/{c}/raw"], expected.get("gradcam", c).raw)
        assert not np.array_equal(clean_maps["gradcam/967/raw"], adv_maps["gradcam/967/raw"])
    adversarial_record = json.loads((out / "cat_and_coffee_adversarial.json").read_text())
    assert adversarial_record["predictions"][0]["class"] == 967
    assert "photo_file" not in adversarial_record["maps"][0]  # the adversarial image is the crop alone


def test_untargeted_attack_changes_the_top_class(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(
        [str(COMPOSITE), "--attack", "any", "--epsilon", "4", "--attack-steps", "5", "--methods", "layercam"]
        + ["--device", "cpu", "--out", str(out)]
    )
    assert code == 0
    record = json.loads((out / "cat_and_coffee_attack.json").read_text())
    assert record["target"] == "any" and record["steps"] == 5 and record["linf_levels"] <= 4
    assert record["success"] is True and record["adversarial"][0]["class"] != record["clean"][0]["class"]
    assert record["adversarial"][0]["label"] in capsys.readouterr().err


def test_why_not_maps_are_added_beside_the_class_maps_as_in_the_app(tmp_path):
    """--counterfactual adds "why not" maps (for the methods that have them) to the class maps, and
    the CLI's folder is the app's zip: the same names, json (but for timings), npz keys and arrays,
    and the same bytes of every picture but the grid (whose captions are timings)."""
    import io
    import zipfile

    pytest.importorskip("gradio")  # the app (absent where only the engine is installed)
    from webapp import handlers

    methods = ["gradcam", "gradient"]  # gradient: no "why not" form
    archive = handlers.explain_image(
        str(COMPOSITE), methods=methods, top_k=0, classes=["281", "967: espresso"], counterfactual=True
    )[2]
    args = ["--methods", ",".join(methods), "--targets", "281,espresso", "--counterfactual", "--device", "cpu"]
    assert cli.main([str(COMPOSITE), *args, "-q", "--out", str(tmp_path)]) == 0
    folder = {p.name: p for p in tmp_path.iterdir()}
    assert {"cat_and_coffee_gradcam_281-tabby.png", "cat_and_coffee_gradcam-cf_281-tabby.png"} <= set(folder)
    assert not any("gradient-cf" in name for name in folder)
    with zipfile.ZipFile(archive) as zf:
        assert set(zf.namelist()) == set(folder)
        app_record, cli_record = (
            json.loads(zf.read("cat_and_coffee.json")),
            json.loads(folder["cat_and_coffee.json"].read_text()),
        )
        untimed = [{k: v for k, v in m.items() if k != "seconds"} for m in cli_record["maps"]]
        assert untimed == [{k: v for k, v in m.items() if k != "seconds"} for m in app_record["maps"]]
        assert [(m["key"]) for m in cli_record["maps"]] == [
            "gradcam/281",
            "gradient/281",
            "gradcam-cf/281",
            "gradcam/967",
            "gradient/967",
            "gradcam-cf/967",
        ]
        drop = ("maps", "device", "image")
        assert {k: v for k, v in app_record.items() if k not in drop} == {
            k: v for k, v in cli_record.items() if k not in drop
        }
        assert cli_record["counterfactual"] is True
        with (
            np.load(io.BytesIO(zf.read("cat_and_coffee_maps.npz"))) as app_maps,
            np.load(folder["cat_and_coffee_maps.npz"]) as cli_maps,
        ):
            assert set(app_maps.files) == set(cli_maps.files)
            for key in app_maps.files:
                assert np.array_equal(app_maps[key], cli_maps[key]), key
        pictures = [n for n in folder if n.endswith((".png", ".jpg")) and n != "cat_and_coffee_grid.png"]
        assert len(pictures) == 1 + 2 * 6  # the input, each map on the crop and on the photo
        for name in pictures:
            assert zf.read(name) == folder[name].read_bytes(), name
