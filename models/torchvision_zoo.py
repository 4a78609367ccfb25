"""torchvision's ImageNet classifiers through its weights API (downloaded once, then cached)."""

from __future__ import annotations

import torch

from .downloads import checkpoint_path, fetch_checkpoint
from .errors import ModelError
from .preprocessing import Preprocessing

CURATED = (
    "resnet18",
    "resnet50",
    "vgg16",
    "alexnet",
    "densenet121",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "convnext_tiny",
    "googlenet",
)


def architectures() -> list[str]:
    """Every torchvision ImageNet classification architecture name."""
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def default_weights(name: str):
    """The DEFAULT weights enum member of a torchvision architecture."""
    import torchvision

    if name not in architectures():
        raise ModelError(f"{name!r} is not a torchvision classification architecture.")
    return torchvision.models.get_model_weights(name).DEFAULT


def is_ready(name: str) -> bool:
    """True when the DEFAULT weights file is already in torch.hub's cache."""
    return checkpoint_path(default_weights(name).url).is_file()


def describe(name: str) -> tuple[str, tuple[int, int]]:
    """A one-line description and the (H, W) input size of a torchvision model."""
    weights = default_weights(name)
    top1 = weights.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
    size = weights.meta.get("_file_size")
    details = ", ".join(
        part
        for part in (f"ImageNet top-1 {top1:.1f}%" if top1 else "", f"{size:.0f} MB download" if size else "")
        if part
    )
    return f"{name} (torchvision {weights.name}; {details})", preprocessing_of(weights).crop_size


def preprocessing_of(weights) -> Preprocessing:
    """The weights' own transforms() parameters, as a PIL Preprocessing."""
    transform = weights.transforms()
    crop = transform.crop_size[0]
    return Preprocessing(
        transform.resize_size[0],
        (crop, crop),
        tuple(transform.mean),
        tuple(transform.std),
        transform.interpolation.value,
    )


def load_torchvision(name: str) -> tuple[torch.nn.Module, Preprocessing, list[str]]:
    """The pretrained module, its preprocessing and its class names."""
    import torchvision

    weights = default_weights(name)
    fetch_checkpoint(weights.url, f"torchvision {name}")
    module = torchvision.models.get_model(name, weights=weights)
    return module, preprocessing_of(weights), list(weights.meta["categories"])


def build_architecture(name: str, num_classes: int) -> torch.nn.Module:
    """A randomly initialised torchvision architecture with `num_classes` outputs."""
    import torchvision

    if name not in architectures():
        raise ModelError(f"Unknown torchvision architecture {name!r}; choose one of: {', '.join(architectures())}.")
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes)
