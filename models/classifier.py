"""Classifier: a module in eval mode with its preprocessing, class names and spatial layers."""

from __future__ import annotations

from functools import cached_property

import torch
from PIL import Image

from .errors import ModelError
from .layers import LayerInfo, default_layer_choice, discover_layers
from .preprocessing import Preprocessing


def resolve_device(device: str | torch.device | None) -> torch.device:
    """None means CUDA when available, else CPU; "cuda" means the current CUDA device."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelError(f"Unknown device {device!r}: {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"Device {str(device)!r} was asked for, but CUDA is not available here.")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


class Classifier:
    """An image classifier ready for explanation: preprocess() images, run `module`."""

    def __init__(
        self,
        name: str,
        module: torch.nn.Module,
        labels: list[str],
        preprocessing: Preprocessing,
        device: str | torch.device | None = None,
    ) -> None:
        self.name = name
        self.module = module.eval()
        self.labels = list(labels)
        self.preprocessing = preprocessing
        self.device = torch.device("cpu")
        self.to(resolve_device(device))

    @property
    def num_classes(self) -> int:
        """Number of output classes."""
        return len(self.labels)

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) of preprocess() output."""
        return self.preprocessing.crop_size

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """The model input for one PIL image: float32 [1, 3, H, W] on the CPU."""
        return self.preprocessing(image)

    def crop(self, image: Image.Image) -> Image.Image:
        """The RGB image with the same resize + crop geometry as preprocess(), for overlays."""
        return self.preprocessing.crop(image)

    @cached_property
    def layers(self) -> list[LayerInfo]:
        """Spatial and token layers in forward order (found once, by a dry run)."""
        return discover_layers(self.module, self.input_size)

    @cached_property
    def _default_layer_choice(self) -> tuple[str, str] | tuple[None, None]:
        try:
            return default_layer_choice(self.layers)
        except ModelError:
            return None, None

    @property
    def default_layer(self) -> str | None:
        """The CAM methods' default layer (models.layers.default_layer_choice); None when the model
        has no spatial or token layer."""
        return self._default_layer_choice[0]

    @property
    def default_layer_reason(self) -> str | None:
        """Why the default layer was chosen, in a sentence for the app and the CLI; None without one."""
        return self._default_layer_choice[1]

    def search_classes(self, query: str, limit: int = 20) -> list[tuple[int, str]]:
        """(index, label) of labels containing `query` (any case); exact, prefix, word matches first."""
        query = query.strip().lower()
        if not query:
            return []
        ranked = []
        for index, label in enumerate(self.labels):
            text = label.lower()
            if query not in text:
                continue
            words = text.replace("-", " ").replace("_", " ").split()
            rank = (
                0
                if text == query
                else 1
                if query in words
                else 2
                if text.startswith(query)
                else 3
                if any(word.startswith(query) for word in words)
                else 4
            )
            ranked.append((rank, index, label))
        return [(index, label) for _, index, label in sorted(ranked)[: max(limit, 0)]]

    def to(self, device: str | torch.device | None) -> Classifier:
        """Move the module to `device` (None: CUDA if available) and return self."""
        self.device = resolve_device(device)
        self.module.to(self.device)
        return self

    def __repr__(self) -> str:
        return f"Classifier({self.name!r}, {self.num_classes} classes, {self.input_size}, {self.device})"
