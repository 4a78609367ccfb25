"""models/: registry, labels, preprocessing, Classifier, cache, and ImageNet accuracy of the embedded models."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import models
from models import registry
from models.efficientnet_lite import VARIANTS, load_by_key_order

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def sample_dir() -> Path:
    return Path(os.environ.get("IMAGENET_SAMPLE_DIR") or SHARED / "imagenet-sample")


@pytest.fixture(scope="module")
def lite0():
    return models.load("efficientnet_lite0", "cpu")


def test_import_does_not_load_torchvision_or_timm():
    code = "import sys, models; print(sorted({'torchvision', 'timm'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_class_files_are_in_standard_imagenet_order():
    import timm
    import torchvision

    labels, wnids = models.imagenet_labels(), models.imagenet_wnids()
    assert len(labels) == len(wnids) == len(set(wnids)) == 1000
    assert labels[:3] == ["tench", "goldfish", "great white shark"]
    assert labels == torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    timm_wnids = (Path(timm.__file__).parent / "data" / "_info" / "imagenet_synsets.txt").read_text().split()
    assert wnids == timm_wnids
    tsv = SHARED / "imagenet-wnids.tsv"
    if tsv.is_file():
        rows = [line.split("\t") for line in tsv.read_text().splitlines() if line.strip()]
        assert [(int(i), w) for i, w in rows] == list(enumerate(wnids))


def test_available_models_lists_embedded_and_torchvision_zoo():
    infos = {info.name: info for info in models.available_models()}
    assert models.DEFAULT_MODEL == "efficientnet_lite0"
    assert list(infos)[:3] == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    assert [infos[f"efficientnet_lite{i}"].input_size for i in range(3)] == [(224, 224), (240, 240), (260, 260)]
    assert all(
        infos[f"efficientnet_lite{i}"].ready and infos[f"efficientnet_lite{i}"].source == "embedded" for i in range(3)
    )
    for name in (
        "resnet18",
        "resnet50",
        "vgg16",
        "alexnet",
        "densenet121",
        "mobilenet_v3_large",
        "efficientnet_b0",
        "convnext_tiny",
        "googlenet",
    ):
        assert infos[name].source == "torchvision" and infos[name].input_size == (224, 224)
        assert name in infos[name].description
    timm_names = [name for name, info in infos.items() if info.source == "timm"]
    assert timm_names[:3] == [
        "timm:vit_base_patch16_224",
        "timm:deit_small_patch16_224",
        "timm:swin_tiny_patch4_window7_224",
    ]


def test_unknown_name_is_a_model_error_listing_the_names():
    with pytest.raises(models.ModelError, match="Unknown model 'no_such_net'") as info:
        models.load("no_such_net", "cpu")
    assert isinstance(info.value, ValueError)
    for name in ("efficientnet_lite0", "resnet18", "googlenet", "timm:"):
        assert name in str(info.value)


def test_lite0_classifier_attributes(lite0):
    assert lite0.name == "efficientnet_lite0"
    assert lite0.num_classes == len(lite0.labels) == 1000 and lite0.labels[0] == "tench"
    assert lite0.input_size == (224, 224)
    assert lite0.device == torch.device("cpu") and not lite0.module.training
    assert lite0.default_layer == "bn2"
    assert lite0.layers is lite0.layers
    assert lite0.to("cpu") is lite0
    x = lite0.preprocess(Image.new("RGB", (300, 200), "gray"))
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32 and x.device.type == "cpu"


def test_crop_is_the_geometry_of_preprocess(lite0):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (333, 517, 3), dtype=np.uint8))
    crop = lite0.crop(image)
    assert crop.mode == "RGB" and crop.size == (224, 224)
    pixels = torch.from_numpy(np.asarray(crop, dtype=np.float32) / 255).permute(2, 0, 1)
    torch.testing.assert_close(lite0.preprocess(image)[0], (pixels - 0.5) / 0.5)


@pytest.mark.parametrize("size", [(517, 333), (200, 640), (256, 256), (100, 90)])
def test_preprocessing_matches_torchvision_transforms(size):
    from torchvision import transforms
    from torchvision.models import ResNet50_Weights

    from models.torchvision_zoo import preprocessing_of

    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    weights = ResNet50_Weights.IMAGENET1K_V2  # resize 232, crop 224, bilinear
    torch.testing.assert_close(preprocessing_of(weights)(image)[0], weights.transforms()(image))
    lite = transforms.Compose(
        [
            transforms.Resize(274, transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(240),
            transforms.ToTensor(),
            transforms.Normalize((0.5,) * 3, (0.5,) * 3),
        ]
    )
    torch.testing.assert_close(VARIANTS["efficientnet_lite1"].preprocessing(image)[0], lite(image))


def test_any_image_mode_becomes_rgb(lite0):
    transparent = Image.new("RGBA", (40, 30), (255, 0, 0, 0))
    assert models.to_rgb(transparent).getpixel((0, 0)) == (255, 255, 255)
    assert models.to_rgb(Image.new("LA", (4, 4), (0, 255))).getpixel((0, 0)) == (0, 0, 0)
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    assert models.to_rgb(palette).getpixel((0, 0)) == (10, 20, 30)
    palette.info["transparency"] = 1
    assert models.to_rgb(palette).getpixel((0, 0)) == (255, 255, 255)
    deep = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16))
    assert [models.to_rgb(deep).getpixel((i, 0)) for i in range(3)] == [(0, 0, 0), (128,) * 3, (255,) * 3]
    assert models.to_rgb(Image.fromarray(np.full((2, 2), 0.5, np.float32))).getpixel((0, 0)) == (128,) * 3
    assert models.to_rgb(Image.new("CMYK", (4, 4), (0, 255, 255, 0))).getpixel((0, 0)) == (255, 0, 0)
    assert models.to_rgb(Image.new("1", (4, 4), 1)).getpixel((0, 0)) == (255, 255, 255)
    for mode in ("RGBA", "LA", "L", "1", "CMYK", "I;16", "I", "F", "P", "YCbCr"):
        x = lite0.preprocess(Image.new(mode, (50, 70)))
        assert x.shape == (1, 3, 224, 224) and torch.isfinite(x).all(), mode
    with pytest.raises(models.ModelError, match="PIL image"):
        lite0.preprocess(np.zeros((8, 8, 3)))


def test_search_classes_ranks_word_and_prefix_matches_first(lite0):
    assert lite0.search_classes("tench") == [(0, "tench")]
    cats = lite0.search_classes("CAT", limit=50)
    names = [label for _, label in cats]
    assert names.index("tiger cat") < names.index("catamaran") < names.index("polecat")
    assert all("cat" in label.lower() for label in names)
    assert (2, "great white shark") in lite0.search_classes("shark")
    assert len(lite0.search_classes("a", limit=5)) == 5
    assert lite0.search_classes("  ") == [] and lite0.search_classes("zzzz") == []


def test_load_is_cached_per_name_and_device_with_lru_eviction(monkeypatch):
    def fake_build(name, device):
        return models.Classifier(name, torch.nn.Conv2d(3, 2, 1), ["a", "b"], models.Preprocessing(8, (8, 8)), device)

    monkeypatch.setattr(registry, "_build", fake_build)
    models.clear_cache()
    first = models.load("m0", "cpu")
    assert models.load("m0", torch.device("cpu")) is first
    assert models.load("m0").device == (torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu"))
    for i in range(1, registry.CACHE_SIZE + 1):
        models.load(f"m{i}", "cpu")
    assert models.load("m0", "cpu") is not first  # evicted as least recently used
    again = models.load("m0", "cpu")
    assert models.load("m0", "cpu") is again
    models.clear_cache()
    assert models.load("m0", "cpu") is not again
    models.clear_cache()


def test_devices_are_resolved_or_refused_clearly():
    from models.classifier import resolve_device

    assert resolve_device(None) == resolve_device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(models.ModelError, match="Unknown device 'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(models.ModelError, match="CUDA is not available"):
            resolve_device("cuda")
    else:
        assert resolve_device("cuda") == torch.device("cuda", torch.cuda.current_device())


def test_load_by_key_order_rejects_a_shape_mismatch():
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    weights = {f"other.{i}": torch.zeros_like(t) for i, t in enumerate(module.state_dict().values())}
    load_by_key_order(module, weights, "weights.pth")
    weights["other.0"] = torch.zeros(4, 3, 5, 5)
    with pytest.raises(models.ModelError, match=r"'other.0' has shape \(4, 3, 5, 5\).*'0.weight'"):
        load_by_key_order(module, weights, "weights.pth")
    with pytest.raises(models.ModelError, match="holds 2 tensors"):
        load_by_key_order(module, dict(list(weights.items())[:2]), "weights.pth")


def top1_on_sample(classifier: models.Classifier, folder: Path) -> float:
    files = sorted(folder.glob("*.JPEG"))
    assert len(files) >= 200, f"expected the 250-image sample in {folder}"
    index = {wnid: i for i, wnid in enumerate(models.imagenet_wnids())}
    targets = torch.tensor([index[f.name.split("_")[0]] for f in files])
    with torch.inference_mode():
        batch = torch.cat([classifier.preprocess(Image.open(f)) for f in files])
        predictions = torch.cat([classifier.module(x).argmax(1) for x in batch.split(16)])
    return (predictions == targets).float().mean().item()


@pytest.mark.skipif(not sample_dir().is_dir(), reason="ImageNet sample folder not present")
def test_efficientnet_lite0_top1_on_imagenet_sample(lite0):
    assert top1_on_sample(lite0, sample_dir()) >= 0.85
