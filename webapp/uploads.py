"""Which files a web request may open: only uploads (Gradio's upload folder) and the bundled
examples, and only as regular files, whatever path the request's JSON names.

Gradio checks the paths of image payloads that carry its file metadata, but a payload without it
(``{"path": "/etc/passwd"}``) reaches a handler that skips preprocessing unchecked. Every web
request's image goes through :func:`checked_image` first.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import UserError

#: The key components.CheckedImageData sets in a payload's meta for a value of the wrong shape.
REFUSED = "refused"
IMAGE_SHAPE = "The image must be an uploaded file: use the upload box, or gradio_client's handle_file() from Python."

#: The one answer for any path a request may not open: it does not say whether the file exists.
NOT_AVAILABLE = "That image is not available on this server. Please upload it again (or click one of the examples)."
MAX_NAME_CHARS = 120


class UploadPolicy:
    """The folders (uploads) and single files (examples) a web request may read."""

    def __init__(self, folders: Iterable[str | Path], files: Iterable[str | Path] = ()) -> None:
        self.folders = tuple(Path(os.path.realpath(f)) for f in folders)
        self.files = frozenset(Path(os.path.realpath(f)) for f in files)

    def allows(self, path: str) -> bool:
        """Whether ``path`` (symlinks resolved) is an allowed example or lies in an upload folder."""
        try:
            real = Path(os.path.realpath(path))
        except (OSError, ValueError):
            return False
        return real in self.files or any(real.is_relative_to(folder) and real != folder for folder in self.folders)


def display_name(value: Any, fallback: str = "image") -> str:
    """A file name fit to show in a message: the base name only, printable, and short."""
    name = os.path.basename(str(value or "")) if isinstance(value, (str, os.PathLike)) else ""
    name = "".join(ch for ch in name if ch.isprintable())[:MAX_NAME_CHARS]
    return name or fallback


def checked_image(payload: Any, policy: UploadPolicy) -> dict[str, Any] | None:
    """The web request's image payload reduced to what may be opened, or UserError.

    Accepts what Gradio's image input sends: None, a path string, or a dict with ``path``
    (an upload or an example), ``url`` (a ``data:`` URL: the bytes themselves) and
    ``orig_name``. A path must be allowed by ``policy`` (before the file system is touched
    beyond resolving links); anything else gets one message that does not tell whether it exists.
    """
    if payload is None:
        return None
    if isinstance(payload, str):
        payload = {"path": payload}
    if not isinstance(payload, dict) or (payload.get("meta") or {}).get(REFUSED):
        raise UserError(IMAGE_SHAPE)
    path, url = payload.get("path"), payload.get("url")
    name = display_name(payload.get("orig_name") or path)
    if path is None and isinstance(url, str) and url.startswith("data:"):
        return {"path": None, "url": url, "orig_name": name}
    if path is None and url is None:
        return None
    if not isinstance(path, str) or "\0" in path or not policy.allows(path):
        raise UserError(NOT_AVAILABLE)
    return {"path": os.path.realpath(path), "url": None, "orig_name": name}
