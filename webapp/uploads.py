"""Which files a web request may open: only uploads (Gradio's upload folder) and the bundled
examples, and only as regular files, whatever path the request's JSON names.

Gradio checks the paths of image payloads that carry its file metadata, but a payload without it
(``{"path": "/etc/passwd"}``) reaches a handler that skips preprocessing unchecked. Every web
request's image goes through :func:`checked_image` first, and the dataset view's zip through
:func:`checked_path`. :func:`file_payload` is the one reader of a file payload's path and name.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

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


class FilePayload(NamedTuple):
    """What a file payload names, unchecked: ``path`` and ``url`` as sent, and a display name."""

    path: Any
    url: Any
    name: str


def file_payload(payload: Any) -> FilePayload:
    """The path, URL and display name (of ``orig_name``, else of the path) of a Gradio file
    payload: a path (str or Path), a dict with ``path``/``url``/``orig_name``, or a FileData."""
    if isinstance(payload, (str, Path)):
        return FilePayload(str(payload), None, display_name(payload))
    if not isinstance(payload, dict):
        payload = {key: getattr(payload, key, None) for key in ("path", "url", "orig_name")}
    path = payload.get("path")
    return FilePayload(path, payload.get("url"), display_name(payload.get("orig_name") or path))


def checked_path(path: Any, policy: UploadPolicy, refusal: str) -> Path:
    """``path`` with its links resolved, if it is a string the policy allows; else UserError
    with ``refusal`` (one message, whether the file exists or not)."""
    if not isinstance(path, str) or "\0" in path or not policy.allows(path):
        raise UserError(refusal)
    return Path(os.path.realpath(path))


def checked_image(payload: Any, policy: UploadPolicy) -> dict[str, Any] | None:
    """The web request's image payload reduced to what may be opened, or UserError.

    Accepts what Gradio's image input sends: None, a path string, or a dict with ``path``
    (an upload or an example), ``url`` (a ``data:`` URL: the bytes themselves) and
    ``orig_name``. A path must be allowed by ``policy`` (before the file system is touched
    beyond resolving links); anything else gets one message that does not tell whether it exists.
    """
    if payload is None:
        return None
    refused = isinstance(payload, dict) and (payload.get("meta") or {}).get(REFUSED)
    if refused or not isinstance(payload, (str, dict)):
        raise UserError(IMAGE_SHAPE)
    path, url, name = file_payload(payload)
    if path is None and isinstance(url, str) and url.startswith("data:"):
        return {"path": None, "url": url, "orig_name": name}
    if path is None and url is None:
        return None
    return {"path": str(checked_path(path, policy, NOT_AVAILABLE)), "url": None, "orig_name": name}
