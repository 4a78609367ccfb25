"""models: torchvision and timm weights from torch.hub's cache; offline errors; safe downloads."""

import email.message
import io

import pytest
import torch

import models
from models import downloads, timm_zoo, torchvision_zoo

RESNET18_FILE = "resnet18-f37072fd.pth"


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    """An empty torch.hub / Hugging Face cache, offline unless a test says otherwise."""
    import huggingface_hub.constants

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(downloads, "reachable", lambda url, timeout=0: False)
    models.clear_cache()
    yield tmp_path / "torch" / "hub" / "checkpoints"
    models.clear_cache()


class Response(io.BytesIO):
    """A fake HTTP response; with `fail` set it breaks off after its first chunk."""

    def __init__(self, data: bytes, fail: bool = False):
        super().__init__(data)
        self.fail = fail

    def info(self):
        return email.message.Message()

    def read(self, size=-1):
        if self.fail and self.tell():
            raise ConnectionResetError("connection reset by peer")
        return super().read(size)


def test_offline_and_not_cached_names_the_file_and_directory(hub):
    assert downloads.checkpoint_dir() == hub
    assert not {info.name: info for info in models.available_models()}["resnet18"].ready
    with pytest.raises(models.ModelNotAvailableError) as info:
        models.load("resnet18", "cpu")
    message = str(info.value)
    assert RESNET18_FILE in message and str(hub) in message and "no network" in message
    assert "https://download.pytorch.org/models/" + RESNET18_FILE in message
    assert not hub.exists() or not any(hub.iterdir())


def test_cached_torchvision_weights_load_without_network(hub):
    import torchvision

    torch.manual_seed(0)
    weights = torchvision.models.resnet18().state_dict()
    hub.mkdir(parents=True)
    torch.save(weights, hub / RESNET18_FILE)
    assert {info.name: info for info in models.available_models()}["resnet18"].ready
    classifier = models.load("resnet18", "cpu")
    torch.testing.assert_close(classifier.module.state_dict()["fc.weight"], weights["fc.weight"])
    assert classifier.labels == models.imagenet_labels() and classifier.default_layer == "layer4"
    assert classifier.preprocessing == models.Preprocessing(256, (224, 224), interpolation="bilinear")
    assert models.load("resnet18", "cpu") is classifier


def test_other_torchvision_architectures_are_routed_to_torchvision(hub):
    with pytest.raises(models.ModelNotAvailableError, match="squeezenet1_1-"):
        models.load("squeezenet1_1", "cpu")


def test_failed_download_leaves_no_partial_file(hub, monkeypatch):
    monkeypatch.setattr(downloads, "reachable", lambda url, timeout=0: True)
    monkeypatch.setattr(torch.hub, "urlopen", lambda request: Response(b"x" * 10_000_000, fail=True))
    with pytest.raises(models.ModelNotAvailableError, match="download failed: connection reset"):
        models.load("resnet18", "cpu")
    assert list(hub.iterdir()) == []


def test_download_with_a_wrong_hash_is_discarded_and_a_good_one_kept(hub, monkeypatch):
    monkeypatch.setattr(downloads, "reachable", lambda url, timeout=0: True)
    monkeypatch.setattr(torch.hub, "urlopen", lambda request: Response(b"not the weights"))
    with pytest.raises(models.ModelNotAvailableError, match="invalid hash"):
        downloads.fetch_checkpoint("https://example.org/w/net-0123abcd.pth", "net")
    assert list(hub.iterdir()) == []
    path = downloads.fetch_checkpoint("https://example.org/w/net.pth", "net")
    assert path == hub / "net.pth" and path.read_bytes() == b"not the weights"
    assert [p.name for p in hub.iterdir()] == ["net.pth"]


def test_reachable_is_false_for_a_closed_port():
    assert not downloads.reachable("http://127.0.0.1:9/weights.pth", timeout=1)


def test_timm_model_offline_then_from_a_placed_file(hub):
    import timm
    from safetensors.torch import save_file

    with pytest.raises(models.ModelNotAvailableError) as info:
        models.load("timm:resnet18.a1_in1k", "cpu")
    target = timm_zoo.local_weights_path("resnet18.a1_in1k")
    assert str(target) in str(info.value) and "huggingface.co/timm/resnet18.a1_in1k" in str(info.value)
    weights = timm.create_model("resnet18", pretrained=False).state_dict()
    target.parent.mkdir(parents=True)
    save_file(weights, str(target))
    classifier = models.load("timm:resnet18.a1_in1k", "cpu")
    torch.testing.assert_close(classifier.module.state_dict()["fc.weight"], weights["fc.weight"])
    assert classifier.labels == models.imagenet_labels() and classifier.default_layer == "layer4"
    assert classifier.preprocessing == models.Preprocessing(
        235, (224, 224), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bicubic"
    )


def test_unknown_timm_names_are_model_errors(hub):
    with pytest.raises(models.ModelError, match="Unknown timm model 'no_such_net'"):
        models.load("timm:no_such_net", "cpu")
    with pytest.raises(models.ModelError, match="Invalid pretrained tag"):
        models.load("timm:resnet18.no_such_tag", "cpu")


def test_torchvision_preprocessing_uses_the_weights_transforms():
    from torchvision.models import get_model_weights

    weights = get_model_weights("efficientnet_b0").DEFAULT
    assert torchvision_zoo.preprocessing_of(weights) == models.Preprocessing(256, (224, 224), interpolation="bicubic")


CURATED_TIMM = [
    "vit_base_patch16_224",
    "deit_small_patch16_224",
    "swin_tiny_patch4_window7_224",
    "convnext_tiny",
    "efficientnetv2_rw_s",
]


def test_curated_timm_models_are_listed_as_downloads_on_first_use(hub):
    infos = {info.name: info for info in models.available_models()}
    for name in CURATED_TIMM:
        info = infos[f"timm:{name}"]
        assert info.source == "timm" and not info.ready and "MB download on first use" in info.description
    assert infos["timm:efficientnetv2_rw_s"].input_size == (288, 288)
    assert infos["timm:swin_tiny_patch4_window7_224"].input_size == (224, 224)


@pytest.mark.parametrize("name", CURATED_TIMM)
def test_curated_timm_download_sizes_are_their_float32_weights(name):
    import timm

    with torch.device("meta"):
        module = timm.create_model(name, pretrained=False)
    megabytes = sum(p.numel() for p in module.state_dict().values()) * 4 / 1e6
    assert abs(megabytes - timm_zoo.CURATED[name][1]) <= 1.5


def test_curated_timm_transformer_loads_from_a_placed_file(hub):
    import timm
    from safetensors.torch import save_file

    with pytest.raises(models.ModelNotAvailableError, match="deit_small_patch16_224"):
        models.load("timm:deit_small_patch16_224", "cpu")
    torch.manual_seed(0)
    weights = timm.create_model("deit_small_patch16_224", pretrained=False).state_dict()
    target = timm_zoo.local_weights_path("deit_small_patch16_224")
    target.parent.mkdir(parents=True)
    save_file(weights, str(target))
    info = {info.name: info for info in models.available_models()}["timm:deit_small_patch16_224"]
    assert info.ready and "cached" in info.description
    classifier = models.load("timm:deit_small_patch16_224", "cpu")
    torch.testing.assert_close(classifier.module.state_dict()["head.weight"], weights["head.weight"])
    assert classifier.default_layer == "blocks.11.norm1" and "class token" in classifier.default_layer_reason
    assert classifier.preprocessing == models.Preprocessing(248, (224, 224), interpolation="bicubic")  # crop_pct 0.9


@pytest.mark.parametrize("name", CURATED_TIMM + ["vit_base_patch16_clip_224.openai", "convnext_tiny.in12k_ft_in1k_384"])
def test_timm_preprocessing_equals_timm_create_transform(name):
    """Our PIL preprocessing of a timm model equals timm's own eval transform (crop_pct, crop_mode,
    interpolation, mean, std), for several image shapes."""
    import numpy as np
    import timm
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    module = timm.create_model(name, pretrained=False)
    config = resolve_data_config(model=module)
    ours, theirs = timm_zoo.preprocessing_of(module), create_transform(**config)
    assert ours.crop_mode == (config.get("crop_mode") or "center")
    assert ours.crop_mode == "squash" or "384" not in name
    rng = np.random.default_rng(0)
    for width, height in ((517, 333), (200, 640), (256, 256)):
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        torch.testing.assert_close(ours(image)[0], theirs(image))


@pytest.mark.parametrize("mode", ["squash", "border"])
def test_timm_crop_modes_equal_timm_transforms(mode):
    import numpy as np
    from PIL import Image
    from timm.data import create_transform

    config = dict(
        input_size=(3, 224, 224),
        crop_pct=0.9,
        crop_mode=mode,
        interpolation="bicubic",
        mean=(0.5, 0.4, 0.3),
        std=(0.2, 0.25, 0.3),
    )
    ours = models.Preprocessing.from_crop_pct((224, 224), 0.9, config["mean"], config["std"], "bicubic", mode)
    theirs = create_transform(**config)
    rng = np.random.default_rng(1)
    for width, height in ((517, 333), (200, 640), (90, 100)):
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        torch.testing.assert_close(ours(image)[0], theirs(image))
        assert ours.crop(image).size == (224, 224)
