"""A user's own fine-tuned model: architecture name + state-dict checkpoint + class-names file."""

from __future__ import annotations

import importlib.util
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch

from . import timm_zoo, torchvision_zoo
from .classifier import Classifier
from .errors import ModelError
from .labels import read_class_names
from .preprocessing import Preprocessing

STANDARD_IMAGENET = Preprocessing(256, (224, 224))
_WRAPPER_KEYS = ("state_dict", "model")
_PREFIXES = ("module.", "_orig_mod.")
_SHOWN = 5


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .pth/.pt (weights_only: never runs code) or .safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Checkpoint {path} is not a regular file.")
    if path.suffix == ".safetensors":
        if importlib.util.find_spec("safetensors") is None:
            raise ModelError("Reading .safetensors checkpoints needs the 'safetensors' package.")
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types for malformed files
            raise ModelError(f"Checkpoint {path} is not a valid safetensors file: {exc}") from exc
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = _unpickling_detail(str(exc))
        raise ModelError(
            f"Checkpoint {path} was refused: it is not a plain state dict of tensors (it may hold "
            f"Python objects whose loading could run code, or not be a PyTorch file at all). "
            f"Save model.state_dict() instead. Detail: {detail}"
        ) from exc
    except Exception as exc:  # on bytes that are no pickle (a text file), the weights-only
        # unpickler raises KeyError, IndexError, struct.error, ... besides OSError and RuntimeError
        raise ModelError(
            f"Checkpoint {path} cannot be read as a PyTorch state dict (is it a file "
            f"saved by torch.save?): {type(exc).__name__}: {exc}"
        ) from exc
    return _state_dict_of(loaded, path)


def _unpickling_detail(message: str) -> str:
    """The informative paragraph of torch's weights-only refusal (not its boilerplate)."""
    if "WeightsUnpickler error:" in message:
        return message.split("WeightsUnpickler error:")[-1].strip().split(". ")[0].split("\n")[0]
    boilerplate = ("Weights only load failed", "Check the documentation", "Please file an issue")
    paragraphs = [p.strip() for p in message.split("\n\n") if p.strip()]
    return next((p for p in paragraphs if not p.startswith(boilerplate)), message.strip())


def _state_dict_of(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    """Unwrap {"state_dict": ...} / {"model": ...}, strip "module." prefixes, keep tensors only."""
    if isinstance(loaded, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if not isinstance(loaded, Mapping) or not loaded:
        raise ModelError(f"Checkpoint {path} does not hold a state dict (a mapping of names to tensors).")
    tensors = {}
    for key, value in loaded.items():
        if not isinstance(value, torch.Tensor):
            raise ModelError(f"Checkpoint {path}: entry {key!r} is a {type(value).__name__}, not a tensor.")
        for prefix in _PREFIXES:
            key = key.removeprefix(prefix)
        tensors[key] = value
    return tensors


def load_matching(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load a state dict whose keys and shapes must match the module exactly; list a few mismatches."""
    expected = module.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    wrong = [
        f"{key} {tuple(state_dict[key].shape)} vs {tuple(tensor.shape)}"
        for key, tensor in expected.items()
        if key in state_dict and state_dict[key].shape != tensor.shape
    ]
    problems = [
        f"{label} ({len(items)}): {', '.join(items[:_SHOWN])}{', ...' if len(items) > _SHOWN else ''}"
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches (checkpoint vs model)", wrong),
        )
        if items
    ]
    if problems:
        raise ModelError(f"{source} does not fit the architecture: " + "; ".join(problems))
    module.load_state_dict(state_dict)


def load_custom(
    arch: str,
    checkpoint: str | Path,
    class_names: str | Path,
    device: str | torch.device | None = None,
    preprocessing: Preprocessing | None = None,
) -> Classifier:
    """A fine-tuned model: torchvision `arch` or "timm:<name>", a state-dict file and a class-names file.

    The head has one output per class name; preprocessing defaults to standard ImageNet
    (resize 256 bilinear, crop 224, ImageNet mean/std).
    """
    labels = read_class_names(class_names)
    state_dict = read_checkpoint(checkpoint)
    if arch.startswith(timm_zoo.PREFIX):
        module = timm_zoo.build_architecture(arch[len(timm_zoo.PREFIX) :], len(labels))
    else:
        module = torchvision_zoo.build_architecture(arch, len(labels))
    load_matching(module, state_dict, f"Checkpoint {Path(checkpoint).name}")
    return Classifier(
        f"custom:{arch}:{Path(checkpoint).name}", module, labels, preprocessing or STANDARD_IMAGENET, device
    )
