"""The HTML of a picture the page shows from Gradio's cache: its URL, and the picture as a link to
itself at full size (the results, the sweep and the attack views' tiles)."""

from __future__ import annotations

import html
from pathlib import Path


def served_url(path: Path) -> str:
    """The URL Gradio serves a file of its cache at, escaped for an HTML attribute (relative, so
    that it works under a mounted path)."""
    return "gradio_api/file=" + html.escape(str(path), quote=True)


def linked_picture(path: Path, caption: str, css_class: str, size: int) -> str:
    """The picture at ``path`` shown ``size`` px wide, a link to itself at full size, with
    ``caption`` (escaped already) as its title and alt text."""
    src = served_url(path)
    return (
        f"<a href='{src}' target='_blank' rel='noopener' title='{caption}'>"
        f"<img class='{css_class}' src='{src}' alt='{caption}' width='{size}' height='{size}'></a>"
    )
