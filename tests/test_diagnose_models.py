"""explainers.diagnose on real architectures: a user's own checkpoint through the command line, and
EfficientNet-Lite0 on ImageNet sample photos (skipped when the folder is absent)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import models
from explainers.diagnose import ModelSpec, Settings, diagnose, work
from explainers.diagnose.__main__ import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, main

SAMPLE = Path("/work/shared/data/imagenet-sample")
CLASSES = ["cat", "dog", "bird"]


def own_model(tmp_path) -> ModelSpec:
    """A resnet18 with 3 classes (random weights), as a user's checkpoint + class-names file."""
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), tmp_path / "finetuned.pth")
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES))
    return ModelSpec(None, "resnet18", str(tmp_path / "finetuned.pth"), str(tmp_path / "classes.txt"), "cpu")


def photos(root: Path, per_class: int = 2) -> Path:
    """Random-noise photos of various sizes, filed in one folder per class name."""
    generator = np.random.default_rng(0)
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for n in range(per_class):
            size = (generator.integers(180, 320), generator.integers(180, 320), 3)
            Image.fromarray(generator.integers(0, 256, size, dtype=np.uint8)).save(root / name / f"{n}.jpg")
    return root


def test_command_line_with_a_users_checkpoint(tmp_path):
    spec = own_model(tmp_path)
    data, out = photos(tmp_path / "data"), tmp_path / "out"
    arguments = [
        str(data),
        "--arch",
        "resnet18",
        "--checkpoint",
        spec.checkpoint,
        "--classes",
        spec.class_names,
        "--device",
        "cpu",
        "--methods",
        "gradcam,GradCAM++",
        "--out",
        str(out),
        "-q",
    ]
    assert main(arguments) == EXIT_OK
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "custom:resnet18:finetuned.pth" and summary["layer"] == "layer4"
    assert summary["methods"] == ["gradcam", "gradcam++"] and summary["images"] == 6
    classifier = spec.load()
    wrong = set()
    for file in sorted(data.rglob("*.jpg")):
        with torch.no_grad():
            predicted = int(classifier.module(classifier.preprocess(models.open_image(file))).argmax())
        if predicted != CLASSES.index(file.parent.name):
            wrong.add(f"{file.parent.name}/{file.name}")
    assert {m["file"] for m in summary["misclassified"]} == wrong
    assert (out / "report.html").is_file()


def test_command_line_exit_status_on_interrupt_and_bad_arguments(tmp_path, monkeypatch, capsys):
    data = photos(tmp_path / "data", per_class=1)
    spec = own_model(tmp_path)
    model = ["--arch", "resnet18", "--checkpoint", spec.checkpoint, "--classes", spec.class_names]

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(work, "explain_sample", interrupt)
    assert main([str(data), "--out", str(tmp_path / "out"), "-q", *model]) == EXIT_INTERRUPTED
    assert "Run the same command again to resume" in capsys.readouterr().err
    assert main([str(data), "--out", str(tmp_path / "out2"), "--methods", "nosuch", "-q", *model]) == EXIT_USAGE
    assert main([str(data), "--out", str(tmp_path / "out2"), "-q"]) == EXIT_USAGE  # "cat": no ImageNet class
    assert main([str(data), "--out", str(tmp_path / "out2"), "--arch", "resnet18", "-q"]) == EXIT_USAGE
    assert "needs an architecture, a checkpoint and a class-names file" in capsys.readouterr().err


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="ImageNet sample photos absent")
def test_imagenet_sample_accuracy_and_misclassified_set(tmp_path):
    files = sorted(SAMPLE.glob("*.JPEG"))[::12][:20]
    (tmp_path / "labels.csv").write_text("".join(f"{f.name},{f.name.split('_')[0]}\n" for f in files))
    summary = diagnose(
        SAMPLE,
        ModelSpec("efficientnet_lite0", device="cpu"),
        tmp_path / "out",
        Settings(methods=("gradcam",)),
        labels=tmp_path / "labels.csv",
        quiet=True,
    )
    assert summary["images"] == 20 and summary["accuracy"] > 0.5
    classifier = models.load("efficientnet_lite0", device="cpu")
    wnids = models.imagenet_wnids()
    with torch.no_grad():
        batch = torch.cat([classifier.preprocess(models.open_image(f)) for f in files])
        predicted = classifier.module(batch).argmax(1).tolist()
    wrong = {f.name: p for f, p in zip(files, predicted) if p != wnids.index(f.name.split("_")[0])}
    assert {m["file"]: m["predicted"] for m in summary["misclassified"]} == wrong
    for item in summary["misclassified"]:
        assert set(item["maps"]) == {str(item["label"]), str(item["predicted"])}
        with np.load(tmp_path / "out" / item["maps"][str(item["label"])]["gradcam"]["file"]) as stored:
            assert stored[f"gradcam/{item['label']}"].shape == (224, 224)
            assert stored[f"gradcam/{item['predicted']}"].max() == pytest.approx(1.0, abs=1e-3)
