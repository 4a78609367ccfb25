"""explainers.diagnose on a network whose answers are known: the class is the brightest colour
channel, and Grad-CAM of class k is channel k itself, so the map of a red square is the square."""

import base64
import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import models
from explainers.diagnose import DatasetError, Settings, diagnose, read_boxes, read_dataset, work
from explainers.diagnose.archive import pack_results, unpack_dataset
from explainers.diagnose.dataset import LabelResolver
from explainers.diagnose.progress import Progress, format_seconds
from explainers.diagnose.report import inline_pictures

COLOURS = ["red", "green", "blue"]
SIZE = (48, 40)  # (W, H): resize 32 then crop 32 cuts 3 columns left and right
SQUARE = (14, 10, 30, 26)  # x0, y0, x1, y1 in the photo, inside the crop


class ChannelNet(nn.Module):
    """[layer "features"] = ReLU(x) at full resolution -> global average pooling -> identity."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3)) * 10


def channel_model() -> models.Classifier:
    plain = models.Preprocessing(32, (32, 32), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    return models.Classifier("channels", ChannelNet(), COLOURS, plain, device="cpu")


def square(colour: int, box=SQUARE, size=SIZE) -> Image.Image:
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    pixels[box[1] : box[3], box[0] : box[2], colour] = 255
    return Image.fromarray(pixels)


@pytest.fixture()
def folder(tmp_path):
    """Class folders: two images per colour, and one red square filed under green (a known error)."""
    root = tmp_path / "data"
    for index, colour in enumerate(COLOURS):
        (root / colour).mkdir(parents=True)
        for n in range(2):
            square(index).save(root / colour / f"{colour}{n}.png")
    square(0).save(root / "green" / "mislabelled.png")
    return root


def settings(**changes) -> Settings:
    return Settings(methods=("gradcam",), layer="features", **changes)


def run(folder, out, **options):
    return diagnose(folder, channel_model(), out, settings(), quiet=True, **options)


def test_summary_of_a_known_model(folder, tmp_path):
    out = tmp_path / "out"
    summary = run(folder, out)
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["model"] == "channels" and summary["layer"] == "features" and summary["methods"] == ["gradcam"]
    assert summary["images"] == 7 and summary["complete"] and summary["failed"] == []
    assert summary["accuracy"] == pytest.approx(6 / 7)
    assert [(c["name"], c["images"], c["correct"]) for c in summary["per_class"]] == [
        ("red", 2, 2),
        ("green", 3, 2),
        ("blue", 2, 2),
    ]
    assert summary["confusions"] == [
        {"label": 1, "label_name": "green", "predicted": 0, "predicted_name": "red", "count": 1}
    ]
    (wrong,) = summary["misclassified"]
    assert (wrong["file"], wrong["label"], wrong["predicted"]) == ("green/mislabelled.png", 1, 0)
    red_seen = np.asarray(channel_model().crop(square(0)), dtype=np.float64)[..., 0] / 255  # what the model sees
    assert wrong["probability"] == pytest.approx(1 / (1 + 2 * np.exp(-10 * red_seen.mean())), abs=1e-5)
    assert set(wrong["maps"]) == {"0", "1"}
    with np.load(out / wrong["maps"]["0"]["gradcam"]["file"]) as stored:
        red, green = stored[wrong["maps"]["0"]["gradcam"]["key"]], stored[wrong["maps"]["1"]["gradcam"]["key"]]
    # Grad-CAM of red is the red channel the model sees (normalised); of green, nothing.
    np.testing.assert_allclose(red, red_seen / red_seen.max(), atol=1e-3)
    assert green.max() == 0
    # The 15 % box is the square, in the photo's pixels (within a resized pixel); no box without evidence.
    np.testing.assert_allclose(wrong["boxes"]["0"]["gradcam"], SQUARE, atol=1.3)
    assert wrong["boxes"]["1"]["gradcam"] is None
    boxes = summary["localisation"]["boxes"]
    assert len(boxes) == 7 and boxes["green/mislabelled.png"] == wrong["boxes"]
    np.testing.assert_allclose(boxes["blue/blue0.png"]["2"]["gradcam"], SQUARE, atol=1.3)


def test_localisation_scores_with_ground_truth_boxes(folder, tmp_path):
    table = tmp_path / "boxes.csv"
    # Right boxes for the red images, a wrong one for blue0 (IoU 0), none for the others.
    table.write_text("file,x0,y0,x1,y1\nred/red0.png,14,10,30,26\nred1.png,14,10,30,26\nblue/blue0.png,31,0,48,9\n")
    summary = diagnose(folder, channel_model(), tmp_path / "out", settings(), boxes=table, quiet=True)
    scores = summary["localisation"]["per_method"]["gradcam"]
    assert summary["localisation"]["images_with_boxes"] == 3
    assert scores["box_accuracy"] == pytest.approx(2 / 3) and scores["top1_localisation"] == pytest.approx(2 / 3)
    assert scores["pointing_game"] == pytest.approx(2 / 3) and 0.9 * 2 / 3 < scores["mean_iou"] <= 2 / 3
    bias = summary["bias"]
    assert bias["region"] == "boxes where given, else the centre"
    assert [e["file"] for e in bias["looks_outside"]] == ["blue/blue0.png"] and bias["looks_outside"][0]["inside"] == 0


def test_bias_hint_for_a_class_looked_at_off_centre(tmp_path):
    root = tmp_path / "data"
    for index, colour in enumerate(COLOURS):
        (root / colour).mkdir(parents=True)
        corner = (3, 0, 12, 9) if colour == "blue" else SQUARE  # blue: in the crop's top-left corner
        square(index, corner).save(root / colour / "a.png")
    bias = diagnose(root, channel_model(), tmp_path / "out", settings(), quiet=True)["bias"]
    assert bias["region"] == "centre"
    hinted = [(c["name"], c["looks_outside"]) for c in bias["per_class"]]
    assert hinted[0] == ("blue", True) and ("red", False) in hinted and ("green", False) in hinted
    assert [e["file"] for e in bias["looks_outside"]] == ["blue/a.png"]


def test_resume_skips_the_images_already_done(folder, tmp_path, monkeypatch):
    explained = []
    original = work.explain_sample

    def counting(model, sample, options):
        explained.append(sample.file)
        return original(model, sample, options)

    monkeypatch.setattr(work, "explain_sample", counting)
    out = tmp_path / "out"
    partial = run(folder, out, batch_size=3, should_stop=lambda: True)
    assert not partial["complete"] and partial["images"] == 3 and len(explained) == 3
    first = list(explained)
    explained.clear()
    full = run(folder, out, batch_size=3)
    assert full["complete"] and full["images"] == 7
    assert len(explained) == 4 and not set(explained) & set(first)
    assert full == run(folder, tmp_path / "again")  # the same as one run from scratch
    explained.clear()
    run(folder, out)
    assert explained == []


def test_interrupted_run_keeps_its_records_and_a_cut_line_is_redone(folder, tmp_path, monkeypatch):
    original = work.explain_sample
    calls = []

    def interrupted(model, sample, options):
        calls.append(sample.file)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(model, sample, options)

    monkeypatch.setattr(work, "explain_sample", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run(folder, out, batch_size=1)
    summary = json.loads((out / "summary.json").read_text())
    assert not summary["complete"] and summary["images"] == 2 and (out / "report.html").exists()
    lines = (out / "records.jsonl").read_bytes().splitlines(keepends=True)
    (out / "records.jsonl").write_bytes(b"".join(lines[:1]) + lines[1][:20])  # a crash mid-line
    monkeypatch.setattr(work, "explain_sample", original)
    assert run(folder, out)["images"] == 7
    assert len((out / "records.jsonl").read_text().splitlines()) == 7


def test_a_resume_with_other_settings_is_refused(folder, tmp_path):
    run(folder, tmp_path / "out", batch_size=2, should_stop=lambda: True)
    with pytest.raises(DatasetError, match="threshold"):
        diagnose(folder, channel_model(), tmp_path / "out", settings(threshold=0.3), quiet=True)
    (tmp_path / "other").mkdir()
    square(0).save(tmp_path / "other" / "red_1.png")
    with pytest.raises(DatasetError, match="images"):
        run(tmp_path / "other", tmp_path / "out")


def test_unreadable_image_is_reported_and_the_rest_done(folder, tmp_path):
    (folder / "red" / "broken.png").write_bytes(b"not an image")
    summary = run(folder, tmp_path / "out")
    assert summary["images"] == 7 and [f["file"] for f in summary["failed"]] == ["red/broken.png"]


def test_report_is_self_contained_and_escapes_hostile_names(folder, tmp_path):
    hostile = '<img src=x onerror=alert(1)>"&.png'
    square(0).save(folder / "blue" / hostile)  # a red square filed under blue: misclassified
    out = tmp_path / "out"
    summary = run(folder, out)
    assert any(m["file"] == f"blue/{hostile}" for m in summary["misclassified"])
    page = (out / "report.html").read_text()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;&quot;&amp;.png" in page
    assert "http://" not in page and "https://" not in page and "<script src" not in page
    assert "addEventListener" in page and "table class=sortable id=misclassified" in page
    headings = re.findall(r"<h2>([^<]*)</h2>", page)  # the mistakes first, right after the totals
    assert headings[0] == "Misclassified images" and headings[-1] == "Per-class accuracy" and len(headings) == 5
    sources = [part.split('"')[0] for part in page.split('src="')[1:]]
    assert sources and all((out / source).is_file() for source in sources)
    assert all(source.startswith("overlays/") and "<" not in source for source in sources)


def test_progress_reports_counts_and_time_left(folder, tmp_path):
    seen = []
    run(folder, tmp_path / "out", batch_size=2, progress=lambda done, total, left: seen.append((done, total, left)))
    assert seen[0] == (0, 7, None) and seen[-1][:2] == (7, 7) and seen[-1][2] == 0
    assert [done for done, _, _ in seen] == sorted(done for done, _, _ in seen)
    meter = Progress(10, 4, stream=None)
    assert meter.seconds_left is None and "4/10" in meter.line()
    assert format_seconds(3725) == "1:02:05" and format_seconds(None) == "?"


def test_labels_from_a_csv_by_index_or_name(folder, tmp_path):
    table = tmp_path / "labels.csv"
    table.write_text("file,label\nred/red0.png,0\nblue/blue1.png,Blue\ngreen/mislabelled.png,2\n")
    samples = read_dataset(folder, COLOURS, table)
    assert [(s.file, s.label) for s in samples] == [
        ("blue/blue1.png", 2),
        ("green/mislabelled.png", 2),
        ("red/red0.png", 0),
    ]
    table.write_text("red/red0.png,purple\n")
    with pytest.raises(DatasetError, match="purple"):
        read_dataset(folder, COLOURS, table)
    table.write_text("../outside.png,0\n")
    with pytest.raises(DatasetError, match="outside"):
        read_dataset(folder, COLOURS, table)


def test_labels_from_imagenet_style_file_names(tmp_path):
    for name in ("n01440764_10026.JPEG", "n01443537_goldfish.jpg", "tiger_shark_3.png", "house_finch.png"):
        square(0).save(tmp_path / name, format="PNG")
    labels = {s.file: s.label for s in read_dataset(tmp_path, models.imagenet_labels())}
    assert labels == {
        "n01440764_10026.JPEG": 0,
        "n01443537_goldfish.jpg": 1,
        "tiger_shark_3.png": 3,
        "house_finch.png": 12,
    }
    square(0).save(tmp_path / "0001.png")
    with pytest.raises(DatasetError, match="0001.png"):
        read_dataset(tmp_path, models.imagenet_labels())
    resolver = LabelResolver(models.imagenet_labels())
    assert resolver.find("281") == 281 and resolver.find("n02123045") == 281 and resolver.find("Tabby") == 281
    assert LabelResolver(COLOURS).find("n02123045") is None


def test_boxes_from_csv_and_pascal_voc_xml(tmp_path):
    files = ["cats/a.jpg", "dogs/b.jpg"]
    (tmp_path / "boxes.csv").write_text(
        "file,x0,y0,x1,y1\na.jpg,1,2,30,40\ndogs/b.jpg,5,5,9,9\ndogs/b.jpg,0,0,3,3\nunknown.jpg,0,0,1,1\n"
    )
    assert read_boxes(tmp_path / "boxes.csv", files) == {
        "cats/a.jpg": [(1, 2, 30, 40)],
        "dogs/b.jpg": [(5, 5, 9, 9), (0, 0, 3, 3)],
    }
    xml = tmp_path / "xml"
    xml.mkdir()
    (xml / "b.xml").write_text(
        "<annotation><filename>b</filename><size><width>50</width><height>40</height></size>"
        "<object><name>n02085620</name><bndbox><xmin>3</xmin><ymin>4</ymin><xmax>20</xmax><ymax>30</ymax>"
        "</bndbox></object><object><name>n02085620</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax>"
        "<ymax>2</ymax></bndbox></object></annotation>"
    )
    assert read_boxes(xml, files) == {"dogs/b.jpg": [(3, 4, 20, 30), (1, 1, 2, 2)]}
    assert read_boxes(xml / "b.xml", files) == {"dogs/b.jpg": [(3, 4, 20, 30), (1, 1, 2, 2)]}
    (tmp_path / "bad.csv").write_text("a.jpg,5,5,1,1\n")
    with pytest.raises(DatasetError, match="empty"):
        read_boxes(tmp_path / "bad.csv", files)


def test_report_with_pictures_inlined_for_the_app(folder, tmp_path):
    out = tmp_path / "out"
    run(folder, out)
    page = (out / "report.html").read_text()
    inline = inline_pictures(page, out)
    assert 'src="overlays/' in page and 'src="overlays/' not in inline
    first = inline.split('src="data:image/jpeg;base64,')[1].split('"')[0]
    assert first and Image.open(io.BytesIO(base64.b64decode(first))).size == (32, 32)


def test_the_local_engine_does_not_import_ray(folder, tmp_path):
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + '/tests');"
        "import test_diagnose as t; from pathlib import Path;"
        "t.run(Path(sys.argv[2]), Path(sys.argv[3])); import explainers.diagnose.__main__;"
        "assert 'ray' not in sys.modules, 'ray imported'"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", code, str(root), str(folder), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "out" / "summary.json").is_file()


def test_an_uploaded_zip_is_unpacked_within_bounds_and_the_results_packed(folder, tmp_path):
    upload = tmp_path / "upload.zip"
    with zipfile.ZipFile(upload, "w") as packed:
        for path in sorted(folder.rglob("*.png")):
            packed.write(path, f"wrapper/{path.relative_to(folder).as_posix()}")
        packed.writestr("wrapper/__MACOSX/._red0.png", b"junk")
        packed.writestr("wrapper/notes.txt", b"ignored")
    root = unpack_dataset(upload, tmp_path / "unpacked")
    assert root == tmp_path / "unpacked" / "wrapper"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*.png")
    )
    out = tmp_path / "out"
    assert run(root, out)["images"] == 7
    download = pack_results(out, tmp_path / "results.zip")
    with zipfile.ZipFile(download) as packed:
        names = set(packed.namelist())
    assert {"summary.json", "report.html", "records.jsonl"} <= names
    assert any(n.startswith("maps/") for n in names) and any(n.startswith("overlays/") for n in names)
    with pytest.raises(DatasetError, match="limit is 3"):
        unpack_dataset(upload, tmp_path / "few", max_files=3)
    with pytest.raises(DatasetError, match="larger than the limit"):
        unpack_dataset(upload, tmp_path / "small", max_bytes=500)


@pytest.mark.parametrize("name", ["../escape.png", "/abs.png", "a/../../escape.png", "C:/x.png"])
def test_an_uploaded_zip_may_not_write_outside_its_folder(tmp_path, name):
    upload = tmp_path / "upload.zip"
    with zipfile.ZipFile(upload, "w") as packed:
        packed.writestr(name, b"x")
    with pytest.raises(DatasetError, match="outside"):
        unpack_dataset(upload, tmp_path / "dest")
    assert not (tmp_path / "escape.png").exists()


def test_a_zip_with_a_file_twice_or_no_images_is_refused(tmp_path):
    twice, empty = tmp_path / "twice.zip", tmp_path / "empty.zip"
    with zipfile.ZipFile(twice, "w") as packed:
        packed.writestr("a.png", b"1")
        with pytest.warns(UserWarning, match="Duplicate name"):
            packed.writestr("a.png", b"2")
    with zipfile.ZipFile(empty, "w") as packed:
        packed.writestr("readme.txt", b"no images")
    with pytest.raises(DatasetError, match="twice"):
        unpack_dataset(twice, tmp_path / "d1")
    with pytest.raises(DatasetError, match="no images"):
        unpack_dataset(empty, tmp_path / "d2")
    (tmp_path / "not.zip").write_bytes(b"plain bytes")
    with pytest.raises(DatasetError, match="not a readable zip"):
        unpack_dataset(tmp_path / "not.zip", tmp_path / "d3")
