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
    assert classifier.preprocessing == models.Preprocessing(235, (224, 224), (0.485, 0.456, 0.406),
                                                            (0.229, 0.224, 0.225), "bicubic")


def test_unknown_timm_names_are_model_errors(hub):
    with pytest.raises(models.ModelError, match="Unknown timm model 'no_such_net'"):
        models.load("timm:no_such_net", "cpu")
    with pytest.raises(models.ModelError, match="Invalid pretrained tag"):
        models.load("timm:resnet18.no_such_tag", "cpu")


def test_torchvision_preprocessing_uses_the_weights_transforms():
    from torchvision.models import get_model_weights

    weights = get_model_weights("efficientnet_b0").DEFAULT
    assert torchvision_zoo.preprocessing_of(weights) == models.Preprocessing(256, (224, 224),
                                                                             interpolation="bicubic")
