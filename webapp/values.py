"""Request values from the page or the API, checked: image payloads, numbers, switches, names.
Each gives UserError (worded for a person) when a value cannot be used."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from PIL import Image

import models
from explainers import rendering, request
from explainers.targets import ClassSet

from . import config, uploads
from .errors import UserError


def quoted(value: Any, limit: int = 80) -> str:
    """A request value quoted for a message, cut to ``limit`` characters."""
    text = value if isinstance(value, str) else repr(value)
    return f"“{text[:limit]}{'…' if len(text) > limit else ''}”"


def _payload_path(payload: Any) -> tuple[str | None, bytes | None, str]:
    """(path, bytes, display name) from a raw Gradio image payload, a path or a FileData."""
    if payload is None:
        return None, None, ""
    path, url, name = uploads.file_payload(payload)
    url = url or ""
    if not path and url.startswith("data:"):
        if len(url) * 3 // 4 > config.MAX_FILE_BYTES:
            raise UserError(f"The pasted image is larger than {config.MAX_FILE_BYTES // 2**20} MB.")
        try:
            return None, base64.b64decode(url.split(",", 1)[1]), name
        except (IndexError, binascii.Error) as err:
            raise UserError("The pasted image could not be decoded. Please try another one.") from err
    return path, None, name


def image_name(payload: Any) -> str:
    """The name the visitor knows the image by ("cat.jpg"; "image" when it has none)."""
    try:
        return _payload_path(payload)[2] or "image"
    except UserError:
        return "image"


def load_image(payload: Any) -> Image.Image:
    """Open the user's image (upload, paste, webcam, example) as RGB, with friendly errors.

    Accepts a raw Gradio image payload (dict with ``path``/``url``/``orig_name``), a FileData,
    or a file path; the one loader of the app and the CLI (models.open_image) decodes it, with
    its limits. Raises UserError for a missing image or one that cannot be used.
    """
    path, data, name = _payload_path(payload)
    source = data if data is not None else path
    if source is None:
        raise UserError(
            "Please give an image first: upload one, paste it, use the webcam, or click one of the examples."
        )
    try:
        return models.open_image(source, name)
    except models.ImageError as err:
        raise UserError(str(err)) from None


def tiny_image_note(image: Image.Image) -> str:
    """A warning for an image with a side under TINY_IMAGE_PIXELS (empty otherwise): it is
    blown up to the model's input size, so its maps show the enlargement's blocks."""
    if min(image.size) >= config.TINY_IMAGE_PIXELS:
        return ""
    return (
        f"This image is only {image.width}×{image.height} pixels: the model sees it enlarged "
        "many times, so its predictions and maps say little."
    )


def _user_error(err: request.RequestError) -> UserError:
    """A request's error as a sentence: capitalised, with a full stop."""
    text = str(err)
    return UserError(text[:1].upper() + text[1:] + ".")


def parse_classes(classifier: models.Classifier, entries: Any) -> list[int]:
    """Class indices from dropdown entries ("281: tabby"), plain indices or names
    (explainers.request.parse_classes, as the CLI reads them), at most MAX_CLASSES."""
    try:
        return request.parse_classes(classifier, entries, limit=config.MAX_CLASSES)
    except request.RequestError as err:
        raise _user_error(err) from None


def parse_targets(classifier: models.Classifier, entries: Any, rather_than: Any = None) -> list[int | ClassSet]:
    """The classes box's targets: classes as parse_classes reads them and ImageNet class sets
    ("all dogs (118 classes)", explainers.request.parse_targets), at most MAX_CLASSES entries.
    UserError for a class set when a "…rather than" class is given: a contrast compares two
    single classes."""
    try:
        targets = request.parse_targets(classifier, entries, limit=config.MAX_CLASSES)
    except request.RequestError as err:
        raise _user_error(err) from None
    sets = [target for target in targets if isinstance(target, ClassSet)]
    if sets and rather_than:
        raise UserError(
            f"“…rather than” compares single classes, and {quoted(request.class_set_entry(sets[0].name))} "
            "is a set of classes: clear “…rather than”, or explain the set on its own."
        )
    return targets


def method_names(methods: Any) -> list[str]:
    """Method names from a list (or a comma-separated string), duplicates dropped, in order."""
    if methods is None:
        return []
    if isinstance(methods, str):
        methods = request.split_list(methods)
    if not isinstance(methods, (list, tuple)) or not all(isinstance(m, str) for m in methods):
        raise UserError('Methods must be a list of names such as ["gradcam", "layercam"].')
    return list(dict.fromkeys(methods))


def as_bool(value: Any, what: str) -> bool:
    """A checkbox value: True/False, 1/0, "true"/"false" (any case), or None for False."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", ""):
        return value.strip().lower() in ("true", "1")
    raise UserError(f"{what} must be true or false, not {quoted(value)}.")


def whole_number(value: Any, what: str, low: int, high: int) -> int:
    """An integer in [low, high] from a slider or API value (2, 2.0, "2"); UserError otherwise."""
    try:
        number = float(value or 0)
    except (TypeError, ValueError):
        number = float("nan")
    if not (number.is_integer() and low <= number <= high):
        raise UserError(f"{what} must be a whole number from {low} to {high}, not {quoted(value)}.")
    return int(number)


def display_settings(colormap: str | None, opacity: Any) -> tuple[str, float]:
    """The colormap and opacity to draw with (defaults for empty values); UserError if invalid."""
    colormap = colormap or config.DEFAULT_COLORMAP
    if colormap not in rendering.colormaps():
        raise UserError(f"Unknown colormap {quoted(colormap)}; choose from: {', '.join(rendering.colormaps())}.")
    try:
        opacity = config.DEFAULT_OPACITY if opacity is None else float(opacity)
    except (TypeError, ValueError):
        opacity = float("nan")
    if not 0 <= opacity <= 1:
        raise UserError("The overlay opacity must be a number from 0 to 1.")
    return colormap, opacity


def check_web_model(name: Any, listed: frozenset[str]) -> None:
    """UserError unless a web request's model is empty (the default) or one the app lists."""
    if name is None or name == "":
        return
    if not isinstance(name, str) or name not in listed:
        raise UserError(f"Unknown model {quoted(name)}; choose one of: {', '.join(sorted(listed))}.")
