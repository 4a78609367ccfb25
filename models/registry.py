"""The model registry: names, readiness, loading, and an in-process LRU cache of loaded models."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

from . import efficientnet_lite, timm_zoo, torchvision_zoo
from .classifier import Classifier, resolve_device
from .errors import ModelError
from .labels import imagenet_labels

DEFAULT_MODEL = "efficientnet_lite0"
CACHE_SIZE = 3

_cache: OrderedDict[tuple[str, str], Classifier] = OrderedDict()
_lock = threading.Lock()


@dataclass(frozen=True)
class ModelInfo:
    """A registered model: where its weights come from and whether they are on disk already."""

    name: str
    source: str  # "embedded" | "torchvision" | "timm"
    ready: bool  # True when no download is needed
    description: str
    input_size: tuple[int, int]  # (H, W)


def available_models() -> list[ModelInfo]:
    """The embedded EfficientNet-Lite models, the curated torchvision zoo, then the curated timm
    models ("timm:<name>": transformers and modern CNNs)."""
    infos = [
        ModelInfo(
            name,
            "embedded",
            variant.ready,
            f"EfficientNet-Lite{name[-1]} (weights bundled, works offline)",
            variant.preprocessing.crop_size,
        )
        for name, variant in efficientnet_lite.VARIANTS.items()
    ]
    for name in torchvision_zoo.CURATED:
        description, input_size = torchvision_zoo.describe(name)
        infos.append(ModelInfo(name, "torchvision", torchvision_zoo.is_ready(name), description, input_size))
    for name in timm_zoo.CURATED:
        description, input_size = timm_zoo.describe(name)
        infos.append(ModelInfo(timm_zoo.PREFIX + name, "timm", timm_zoo.is_ready(name), description, input_size))
    return infos


def _unknown(name: str) -> ModelError:
    names = ", ".join(
        [*efficientnet_lite.VARIANTS, *torchvision_zoo.CURATED, *(timm_zoo.PREFIX + n for n in timm_zoo.CURATED)]
    )
    return ModelError(
        f"Unknown model {name!r}. Available: {names}; also any other torchvision "
        f"classification model name, or 'timm:<name>' (e.g. 'timm:resnet50.a1_in1k')."
    )


def _build(name: str, device: torch.device) -> Classifier:
    if name in efficientnet_lite.VARIANTS:
        module, preprocessing = efficientnet_lite.load_efficientnet_lite(name)
        return Classifier(name, module, imagenet_labels(), preprocessing, device)
    if name.startswith(timm_zoo.PREFIX):
        module, preprocessing, labels = timm_zoo.load_timm(name[len(timm_zoo.PREFIX) :])
    elif name in torchvision_zoo.CURATED or name in torchvision_zoo.architectures():
        module, preprocessing, labels = torchvision_zoo.load_torchvision(name)
    else:
        raise _unknown(name)
    return Classifier(name, module, labels, preprocessing, device)


def load(name: str, device: str | torch.device | None = None) -> Classifier:
    """A ready Classifier by name (None device: CUDA if available, else CPU); cached in-process.

    The same Classifier object is returned for repeated calls with the same (name, device).
    """
    device = resolve_device(device)
    key = (name, str(device))
    with _lock:
        cached = _cache.get(key)
        if cached is not None and cached.device == device:
            _cache.move_to_end(key)
            return cached
        classifier = _build(name, device)
        _cache[key] = classifier
        _cache.move_to_end(key)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
        return classifier


def clear_cache() -> None:
    """Forget every loaded model (frees their memory once no one else holds them)."""
    with _lock:
        _cache.clear()
