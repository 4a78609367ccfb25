"""Serving the page: the theme, the CSS and the limits Gradio takes at launch."""

from __future__ import annotations

import functools
from typing import Any

import gradio as gr
from starlette.middleware import Middleware

from . import config, files
from .http_limits import RequestLimits
from .style import CSS


def launch(
    demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, share: bool = False, **kwargs: Any
) -> Any:
    """Launch with the app's theme, CSS and limits: upload size, request bodies, blocked routes,
    sessions kept (Gradio 6 takes them in launch())."""
    limits = Middleware(
        RequestLimits, max_body_bytes=config.MAX_BODY_BYTES, after_upload=functools.partial(files.tidy, demo)
    )
    return demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=config.MAX_FILE_BYTES,
        theme=gr.themes.Soft(primary_hue="indigo"),
        css=CSS,
        footer_links=["api"],
        show_error=False,
        state_session_capacity=config.SESSIONS,
        app_kwargs={"middleware": [limits]},
        **kwargs,
    )
