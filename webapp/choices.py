"""What the inputs offer: models, layers, methods, classes and examples, with their labels."""

from __future__ import annotations

import re
from pathlib import Path

import explainers
import models
from explainers import request
from explainers.targets import IMAGENET_CLASS_SETS

from . import config


def device_summary() -> str:
    """A short line saying whether the engine runs on a GPU or the CPU."""
    try:
        import torch

        if torch.cuda.is_available():
            return f"GPU · {torch.cuda.get_device_name(0)}"
    except Exception:  # pragma: no cover - torch import problems show up elsewhere
        pass
    return "CPU"


def model_choices() -> list[tuple[str, str]]:
    """(label, name) for every registered model; those needing a download say so."""
    choices = []
    for info in models.available_models():
        label = info.name
        if not info.ready:
            size = re.search(r"(\d+(?:\.\d+)?)\s*MB", info.description or "")
            label += f" (downloads {size.group(1)} MB on first use)" if size else " (downloads on first use)"
        choices.append((label, info.name))
    return choices


def layer_label(layer: models.LayerInfo) -> str:
    """A layer's dropdown text: "layer4 — 512×7×7", "blocks.11.norm1 — 768×14×14 (tokens,
    1 prefix)"."""
    note = request.layout_note(layer)
    return f"{layer.name} — {'×'.join(str(d) for d in layer.shape)}" + (f" ({note})" if note else "")


def layer_choices(classifier: models.Classifier) -> list[tuple[str, str]]:
    """(label, name) per spatial or token layer (see layer_label)."""
    return [(layer_label(layer), layer.name) for layer in classifier.layers]


def layer_info(classifier: models.Classifier) -> str:
    """The layer picker's info line: why the default layer is the default."""
    reason = classifier.default_layer_reason
    return f"Default: {reason}" if reason else "This model has no layer for the CAM methods."


def class_entry(index: int, label: str) -> str:
    """The dropdown text for a class: "281: tabby"."""
    return f"{index}: {label}"


def single_class_choices(classifier: models.Classifier) -> list[str]:
    """Every class of the model as "index: label" (for the "…rather than" class)."""
    return [class_entry(i, label) for i, label in enumerate(classifier.labels)]


def class_set_choices(classifier: models.Classifier) -> list[str]:
    """The ImageNet class sets as entries ("all dogs (118 classes)") for a model whose classes
    are ImageNet-1k's; none for other models."""
    if not request.has_imagenet_classes(classifier):
        return []
    return [request.class_set_entry(word) for word in IMAGENET_CLASS_SETS]


def class_choices(classifier: models.Classifier) -> list[str]:
    """The classes box's entries: every class as "index: label", then the class sets."""
    return single_class_choices(classifier) + class_set_choices(classifier)


def method_availability(classifier: models.Classifier, layer: str | None) -> dict[str, str | None]:
    """explainers.availability, defaulting every method to usable when it says nothing."""
    reasons = explainers.availability(classifier, layer or None)
    return {name: reasons.get(name) for name in explainers.METHODS}


def method_choices(available: dict[str, str | None]) -> list[tuple[str, str]]:
    """(label, name) per method; slow ones say so, unusable ones say "n/a"."""
    choices = []
    for name, info in explainers.METHODS.items():
        label = info.title + (" · slow" if info.slow else "")
        if available.get(name):
            label += " (n/a)"
        choices.append((label, name))
    return choices


def default_methods(available: dict[str, str | None]) -> list[str]:
    """Fast, usable defaults: Grad-CAM, Grad-CAM++, LayerCAM where they exist."""
    picked = [m for m in config.PREFERRED_DEFAULT_METHODS if m in explainers.METHODS and not available.get(m)]
    if not picked:
        picked = [m for m, info in explainers.METHODS.items() if not info.slow and not available.get(m)][:2]
    return picked


def kept_methods(chosen: list[str] | None, available: dict[str, str | None]) -> list[str]:
    """The chosen methods that still apply (after a model or layer change); the defaults when
    none does."""
    kept = [m for m in chosen or [] if m in available and not available[m]]
    return kept or default_methods(available)


def availability_note(available: dict[str, str | None]) -> str:
    """Markdown listing the methods that do not apply to this model/layer, with the reason."""
    lines = [f"- **{explainers.METHODS[m].title}**: {reason}" for m, reason in available.items() if reason]
    if not lines:
        return ""
    return "Not available for this model and layer:\n" + "\n".join(lines)


def methods_help() -> str:
    """Markdown table: one line per method (what it shows, paper)."""
    rows = ["| Method | Family | What it shows | Paper |", "|---|---|---|---|"]
    for info in explainers.METHODS.values():
        flags = []
        if info.slow:
            flags.append("slow")
        if not info.counterfactual:
            flags.append("no “why not” form")
        extra = f" *({', '.join(flags)})*" if flags else ""
        rows.append(f"| **{info.title}** | {info.kind} | {info.summary}{extra} | {info.paper} |")
    return "\n".join(rows)


#: Classes each example is for (its file name -> the "…and/or these classes" entries).
EXAMPLE_CLASSES = {"cat_and_coffee": ["281: tabby", "967: espresso"]}


def example_files() -> list[Path]:
    """The example pictures in assets/, composite (two objects) first."""
    return sorted(config.ASSETS.glob("*.jpg"), key=lambda p: (p.stem != "cat_and_coffee", p.stem))


def example_classes(path: Path) -> list[str]:
    """The class entries an example comes with (empty: its top predictions are the point)."""
    return list(EXAMPLE_CLASSES.get(path.stem, []))
