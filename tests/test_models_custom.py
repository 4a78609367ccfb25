"""models.load_custom: a user's fine-tuned checkpoint, loaded safely."""

import json
import os
import pickle

import pytest
import torch
from PIL import Image

import models


@pytest.fixture()
def resnet18_3():
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=3).state_dict()


@pytest.fixture()
def names(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("cat\n\ndog\nbird\n")
    return path


class RunsCode:
    """A pickle payload that would run a shell command when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_load_custom_torchvision_with_wrapped_and_prefixed_state_dict(tmp_path, names, resnet18_3):
    checkpoint = tmp_path / "finetuned.pth"
    torch.save({"epoch": 7, "state_dict": {f"module.{k}": v for k, v in resnet18_3.items()}}, checkpoint)
    classifier = models.load_custom("resnet18", checkpoint, names, device="cpu")
    assert classifier.labels == ["cat", "dog", "bird"] and classifier.num_classes == 3
    assert classifier.name == "custom:resnet18:finetuned.pth" and classifier.default_layer == "layer4"
    assert classifier.preprocessing == models.Preprocessing(256, (224, 224))
    torch.testing.assert_close(classifier.module.state_dict()["fc.weight"], resnet18_3["fc.weight"])
    with torch.no_grad():
        assert classifier.module(classifier.preprocess(Image.new("RGB", (300, 260)))).shape == (1, 3)


def test_load_custom_safetensors_json_names_and_own_preprocessing(tmp_path):
    import timm
    from safetensors.torch import save_file

    weights = timm.create_model("resnet18", pretrained=False, num_classes=2).state_dict()
    save_file(weights, str(tmp_path / "model.safetensors"))
    (tmp_path / "names.json").write_text(json.dumps(["ok", "defect"]))
    preprocessing = models.Preprocessing(160, (128, 128), interpolation="bicubic")
    classifier = models.load_custom(
        "timm:resnet18", tmp_path / "model.safetensors", tmp_path / "names.json", "cpu", preprocessing=preprocessing
    )
    assert classifier.labels == ["ok", "defect"] and classifier.input_size == (128, 128)
    assert classifier.layers[-1].shape == (512, 4, 4)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_checkpoint_that_carries_code_is_refused_and_never_run(tmp_path, names, writer):
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "evil.pth"
    payload = {"fc.weight": RunsCode(marker)}
    if writer == "torch.save":
        torch.save(payload, checkpoint)
    else:
        with open(checkpoint, "wb") as f:
            pickle.dump(payload, f, protocol=2)
    with pytest.raises(models.ModelError, match="refused"):
        models.load_custom("resnet18", checkpoint, names, device="cpu")
    assert not marker.exists()
    # control: the payload is live when the file is loaded unsafely
    torch.load(checkpoint, weights_only=False) if writer == "torch.save" else pickle.loads(checkpoint.read_bytes())
    assert marker.exists()


def test_a_whole_pickled_model_is_refused(tmp_path, names):
    torch.save(torch.nn.Linear(2, 3), tmp_path / "whole.pt")
    with pytest.raises(models.ModelError, match="refused.*state_dict"):
        models.load_custom("resnet18", tmp_path / "whole.pt", names, device="cpu")


def test_mismatched_checkpoint_lists_the_problems(tmp_path, names, resnet18_3):
    import torchvision

    torch.save(torchvision.models.resnet18(num_classes=5).state_dict(), tmp_path / "five.pth")
    with pytest.raises(models.ModelError, match=r"shape mismatches.*fc\.weight \(5, 512\) vs \(3, 512\)"):
        models.load_custom("resnet18", tmp_path / "five.pth", names, device="cpu")
    partial = {k: v for k, v in resnet18_3.items() if not k.startswith("layer4")}
    partial["extra.weight"] = torch.zeros(1)
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(
        models.ModelError,
        match=r"missing keys \(\d+\): layer4\..*, \.\.\..*unexpected keys \(1\): "
        r"extra\.weight",
    ):
        models.load_custom("resnet18", tmp_path / "partial.pth", names, device="cpu")


def test_bad_paths_and_files_are_clear_errors(tmp_path, names, resnet18_3):
    good = tmp_path / "good.pth"
    torch.save(resnet18_3, good)
    (tmp_path / "dir.pth").mkdir()
    (tmp_path / "garbage.pth").write_bytes(b"\x00not a checkpoint")
    (tmp_path / "truncated.pth").write_bytes(good.read_bytes()[:5000])
    torch.save({"a": 1}, tmp_path / "not_tensors.pth")
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "notes.pth").write_text("hello, this is text\n")  # the unpickler raised KeyError: 101
    cases = [
        (("resnet18", tmp_path / "dir.pth", names), "not a regular file"),
        (("resnet18", tmp_path / "missing.pth", names), "not a regular file"),
        (("resnet18", tmp_path / "garbage.pth", names), "refused"),
        (("resnet18", tmp_path / "truncated.pth", names), "cannot be read"),
        (("resnet18", tmp_path / "notes.pth", names), "cannot be read as a PyTorch state dict"),
        (("resnet18", tmp_path / "not_tensors.pth", names), "'a' is a int, not a tensor"),
        (("resnet18", good, tmp_path), "not a regular file"),
        (("resnet18", good, tmp_path / "empty.txt"), "no class names"),
        (("no_such_arch", good, names), "Unknown torchvision architecture 'no_such_arch'"),
        (("timm:no_such_arch", good, names), "Unknown timm architecture"),
    ]
    for args, message in cases:
        with pytest.raises(models.ModelError, match=message):
            models.load_custom(*args, device="cpu")
