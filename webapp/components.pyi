"""Gradio components whose request values of the wrong shape get a message, not a bare error.

Gradio validates an input's JSON against the component's data model before any handler runs;
a mismatch (an image given as ``123``) then ends as ``{"error": null}``. These models check the
shape first and raise ``gr.Error``, which Gradio passes to the client as it is.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
from gradio.data_classes import ImageData
from pydantic import model_validator

IMAGE_SHAPE = ("The image must be an uploaded file: use the upload box, or gradio_client's "
               "handle_file() from Python.")
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "path": (str,), "url": (str,), "orig_name": (str,), "mime_type": (str,), "size": (int,),
    "is_stream": (bool,), "meta": (dict,)}


class CheckedImageData(ImageData):
    """ImageData that refuses a value of the wrong shape with a message for the caller."""

    @model_validator(mode="before")
    @classmethod
    def _check_shape(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"path": value}
        if isinstance(value, ImageData):
            return value
        if not isinstance(value, dict) or any(
                value.get(key) is not None and not isinstance(value[key], types)
                for key, types in _FIELD_TYPES.items()):
            raise gr.Error(IMAGE_SHAPE, title="Request refused", print_exception=False)
        return value

from gradio.events import Dependency

class ImageInput(gr.Image):
    """gr.Image (the same front end) with CheckedImageData as its data model."""

    is_template = True
    data_model = CheckedImageData
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component