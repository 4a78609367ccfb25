"""Gradio components whose request values of the wrong shape get a message, not a bare error.

Gradio validates an input's JSON against the component's data model before any handler runs;
a mismatch (an image given as ``123``) then ends as ``{"error": null}`` (pydantic turns even a
gr.Error raised there into its own error). This model lets such a value through as an empty
payload marked ``refused``, and the web request's checks (webapp.uploads) answer with a message.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
from gradio.data_classes import ImageData
from pydantic import model_validator

from .uploads import REFUSED

_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "path": (str,),
    "url": (str,),
    "orig_name": (str,),
    "mime_type": (str,),
    "size": (int,),
    "is_stream": (bool,),
    "meta": (dict,),
}


class CheckedImageData(ImageData):
    """ImageData that lets a value of the wrong shape through as an empty, refused payload."""

    @model_validator(mode="before")
    @classmethod
    def _check_shape(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"path": value}
        if isinstance(value, ImageData):
            return value
        if not isinstance(value, dict) or any(
            value.get(key) is not None and not isinstance(value[key], types) for key, types in _FIELD_TYPES.items()
        ):
            return {"meta": {"_type": "gradio.FileData", REFUSED: True}}
        return value


class ImageInput(gr.Image):
    """gr.Image (the same front end) with CheckedImageData as its data model."""

    is_template = True
    data_model = CheckedImageData
