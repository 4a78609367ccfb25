"""What a request names, read the same way by the web app and the command line: classes given
as indices ("281"), dropdown entries ("281: tabby") or names ("espresso"), contrasts
("tabby:espresso") and ImageNet class sets ("dog", or "all dogs (118 classes)" in a list of
classes), and how a layer is described."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import models

from .errors import ExplainerError
from .targets import IMAGENET_CLASS_SETS, ClassSet, Contrast, imagenet_class_set

#: A class set in a list of classes: "all dogs (118 classes)", "all dogs" (the count is optional).
CLASS_SET_ENTRY = re.compile(r"all\s+(?P<word>[^()]+?)(?:\s*\(\d+ classes\))?", re.IGNORECASE)


class RequestError(ValueError):
    """A request names something that does not exist or is ambiguous; worded for a person."""


def split_list(text: str) -> list[str]:
    """Items of a comma-, semicolon- or newline-separated list, blanks dropped."""
    return [item.strip() for item in re.split(r"[,;\n]", text) if item.strip()]


def class_by_name(labels: Sequence[str], search: Any, name: str) -> int:
    """The class called ``name``: an exact label (any case), else the one label containing it.

    ``search`` is Classifier.search_classes. RequestError when none or several match.
    """
    exact = [i for i, label in enumerate(labels) if label.lower() == name.lower()]
    if len(exact) == 1:
        return exact[0]
    hits = search(name, limit=7)
    if len(hits) == 1:
        return int(hits[0][0])
    if not hits:
        raise RequestError(f"unknown class '{name}' (give an index 0..{len(labels) - 1} or a name)")
    listed = "; ".join(f"{i} {label}" for i, label in hits[:6]) + ("; ..." if len(hits) > 6 else "")
    raise RequestError(f"ambiguous class '{name}': {listed} (use an index or the full name)")


def parse_targets(classifier: Any, entries: Any, limit: int | None = None) -> list[int | ClassSet]:
    """Targets, in order and without repeats, from a list or a comma-separated string of class
    indices ("281", 281), dropdown entries ("281: tabby"), names ("espresso") and ImageNet class
    sets ("all dogs (118 classes)", "all dogs"; see class_set_entry).

    ``classifier`` is a models.Classifier (its labels and search_classes). RequestError for an
    index out of range, an unknown or ambiguous name, a class set the model does not have, or
    more than ``limit`` entries.
    """
    if entries is None:
        return []
    if isinstance(entries, str):
        entries = split_list(entries)
    elif isinstance(entries, (int, float)):
        entries = [entries]
    if not isinstance(entries, (list, tuple)):
        raise RequestError('classes must be a list such as ["281: tabby", "espresso"]')
    texts = [str(entry).strip() for entry in entries if str(entry).strip()]
    if limit is not None and len(texts) > limit:
        raise RequestError(f"that is {len(texts)} classes; at most {limit} per run")
    out: list[int | ClassSet] = []
    for text in texts:
        target = _parse_target(classifier, text)
        if target not in out:
            out.append(target)
    return out


def _parse_target(classifier: Any, text: str) -> int | ClassSet:
    """One entry of parse_targets."""
    match = re.fullmatch(r"([+-]?\d+)(\.0*)?\s*(:.*)?", text)
    if match:
        index = int(match.group(1))
        if not 0 <= index < classifier.num_classes:
            raise RequestError(
                f"class {index} is out of range: {classifier.name} has classes 0 to {classifier.num_classes - 1}"
            )
        return index
    set_entry = CLASS_SET_ENTRY.fullmatch(text)
    if set_entry and _is_class_set(set_entry["word"]):
        return parse_class_set(classifier, set_entry["word"])
    return class_by_name(classifier.labels, classifier.search_classes, text)


def parse_classes(classifier: Any, entries: Any, limit: int | None = None) -> list[int]:
    """Class indices, as parse_targets reads them, where only single classes make sense;
    RequestError for a class set ("all dogs") as well."""
    found = parse_targets(classifier, entries, limit)
    sets = [target for target in found if isinstance(target, ClassSet)]
    if sets:
        raise RequestError(f"'{class_set_entry(sets[0].name)}' is a set of classes; a single class is needed here")
    return [target for target in found if isinstance(target, int)]


def _is_class_set(word: str) -> bool:
    try:
        imagenet_class_set(word)
    except ExplainerError:
        return False
    return True


def class_set_entry(word: str) -> str:
    """How a list of classes names an ImageNet class set: "all dogs (118 classes)" for "dog"."""
    category = IMAGENET_CLASS_SETS[imagenet_class_set(word).name]
    return f"all {category.plural} ({len(category.classes)} classes)"


def has_imagenet_classes(classifier: Any) -> bool:
    """Whether a models.Classifier's classes are ImageNet-1k's, in order: its class sets apply."""
    return list(classifier.labels) == models.imagenet_labels()


def parse_contrast(classifier: Any, text: str) -> Contrast:
    """ "tabby:espresso" or "281:967" as Contrast(281, 967), "tabby rather than espresso".

    Each side is read as parse_classes reads one class; RequestError unless there are exactly two
    different classes."""
    sides = [side.strip() for side in str(text).split(":")]
    if len(sides) != 2 or not all(sides):
        raise RequestError(f"contrast '{text}': give two classes as A:B, e.g. tabby:espresso")
    (a,), (b,) = (parse_classes(classifier, side) for side in sides)
    if a == b:
        raise RequestError(f"contrast '{text}': the two classes are the same")
    return Contrast(a, b)


def parse_class_set(classifier: Any, word: str) -> ClassSet:
    """The ImageNet classes under a category ("dog" or "dogs", "cat"; explainers.imagenet_class_set)
    as one target; RequestError for an unknown category or a model whose classes are not ImageNet-1k's."""
    try:
        found = imagenet_class_set(word)
    except ExplainerError as error:
        raise RequestError(str(error)) from None
    if not has_imagenet_classes(classifier):
        raise RequestError(
            f"class set '{word}' is for ImageNet-1k models; the classes of {classifier.name} are not ImageNet-1k's"
        )
    return found


def layout_note(layer: Any) -> str:
    """How a layer's output is read as a grid, for labels: "" for a convolutional map, "tokens,
    1 prefix" for a ViT's tokens, "channels-last" for a [B, h, w, C] map.

    ``layer`` is a models.LayerInfo (its layout, is_token_layer and prefix_tokens)."""
    if not layer.is_token_layer:
        return ""
    if layer.layout == "tokens":
        return f"tokens, {layer.prefix_tokens} prefix" if layer.prefix_tokens else "tokens"
    return layer.layout.replace("_", "-")
