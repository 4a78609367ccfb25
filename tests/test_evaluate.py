"""python -m explainers.evaluate on a tiny folder of generated images, with the embedded model."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from explainers import evaluate

ROOT = Path(__file__).resolve().parents[1]
LABELLED = [
    "n01440764_tench.JPEG",
    "n01443537_goldfish.JPEG",
    "n01484850_great_white_shark.JPEG",
    "n01491361_tiger_shark.JPEG",
]  # classes 0..3


def read_csv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    generator = np.random.default_rng(0)
    for name in LABELLED + ["unlabelled.png"]:
        pixels = generator.integers(0, 256, (160, 200, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / name)
    (root / "broken.jpg").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def run(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    capture = tmp_path_factory.mktemp("capture")
    stdout, stderr = capture / "stdout", capture / "stderr"
    saved = sys.stdout, sys.stderr
    with stdout.open("w") as sys.stdout, stderr.open("w") as sys.stderr:
        try:
            status = evaluate.main(
                [
                    "--images",
                    str(folder),
                    "--methods",
                    "gradcam,gradient",
                    "--steps",
                    "4",
                    "--pointing-game",
                    "--sanity",
                    "--sanity-images",
                    "2",
                    "--sanity-stages",
                    "2",
                    "--counterfactual",
                    "--out",
                    str(out),
                ]
            )
        finally:
            sys.stdout, sys.stderr = saved
    return status, out, stdout.read_text(), stderr.read_text()


def test_table_csv_and_plots(run):
    status, out, printed, errors = run
    assert status == 1  # the broken image is reported and skipped, the others are evaluated
    assert "broken.jpg: error" in errors
    assert "5 images (4 labelled by file name)" in printed
    for title in (
        "deletion AUC",
        "insertion AUC",
        "Average Drop",
        "Increase",
        "pointing game",
        "sanity check",
        "other images",
        "noise",
        "centre",
        "between images",
        "near-empty %",
        "region wins %",
    ):
        assert title in printed
    summary = read_csv(out / "summary.csv")
    assert [row["method"] for row in summary] == ["gradcam", "gradient"]
    for row in summary:
        assert row["images"] == "5" and row["pointing_grids"] == "1"
        assert row["sanity"] in ("passes", "fails", "image-independent")
        assert 0 <= float(row["deletion_auc"]) <= 1 and 0 <= float(row["insertion_auc"]) <= 1
        assert 0 <= float(row["average_drop"]) <= 100 and 0 <= float(row["pointing_game"]) <= 1
        assert f"{float(row['deletion_auc']):.3f}" in printed  # the printed table shows the same figures
        controls = [float(row[f"sanity_{k}"]) for k in ("other_images", "noise", "centre")]
        excess = float(row["sanity_spearman"]) - max(controls)
        assert float(row["sanity_excess"]) == pytest.approx(excess, abs=2e-6)
        assert f"{float(row['sanity_spearman']):.3f}" in printed
    gradcam, gradient = summary  # Grad-CAM has a "why not" form, the gradient's magnitude has none
    assert gradcam["why_not_maps"] == "5" and 0 <= float(gradcam["why_not_near_empty"]) <= 100
    assert gradient["why_not_maps"] == "" and gradient["counterfactual_wins"] == ""
    per_image = read_csv(out / "per_image.csv")
    assert len(per_image) == 10
    for row in per_image:
        assert (row["why_not_near_empty"] in ("True", "False")) == (row["method"] == "gradcam")
        assert row["why_not_class"] == (row["class"] if row["method"] == "gradcam" else "")
    labelled = {row["image"]: int(row["class"]) for row in per_image if row["from_file_name"] == "True"}
    assert labelled == {name: index for index, name in enumerate(LABELLED)}
    curves = read_csv(out / "curves.csv")
    assert len(curves) == 2 * 2 * 5 and {row["fraction"] for row in curves} == {
        "0.000000",
        "0.250000",
        "0.500000",
        "0.750000",
        "1.000000",
    }
    assert len(read_csv(out / "sanity.csv")) == 2 * 2
    for plot in ("curves.png", "sanity.png"):
        with Image.open(out / plot) as image:
            assert image.format == "PNG" and image.width > 400


def test_bad_arguments_stop_with_status_2(folder, tmp_path, capsys):
    assert evaluate.main(["--images", str(folder), "--methods", "nosuchcam", "--out", str(tmp_path)]) == 2
    assert "unknown method" in capsys.readouterr().err


def test_runs_as_a_module():
    done = subprocess.run(
        [sys.executable, "-m", "explainers.evaluate", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "--pointing-game" in done.stdout


def test_why_not_maps_of_the_runner_up_class(folder, tmp_path, capsys):
    images = ",".join(str(folder / name) for name in LABELLED[:2])
    status = evaluate.main(
        [
            "--images",
            images,
            "--methods",
            "gradcam",
            "--steps",
            "2",
            "--counterfactual",
            "--why-not",
            "runner-up",
            "--out",
            str(tmp_path),
            "-q",
        ]
    )
    assert status == 0 and "most probable other class" in capsys.readouterr().out
    for row in read_csv(tmp_path / "per_image.csv"):
        assert row["why_not_class"] != row["class"] and row["why_not_near_empty"] in ("True", "False")
