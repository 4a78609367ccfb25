"""Weights files in torch.hub's checkpoint directory: locate, or download once, or explain."""

from __future__ import annotations

import http.client
import os
import socket
import urllib.parse
import urllib.request
from pathlib import Path

import torch

from .errors import ModelNotAvailableError

PROBE_TIMEOUT_S = 3.0


def checkpoint_dir() -> Path:
    """torch.hub's checkpoint directory (honours TORCH_HOME and torch.hub.set_dir)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def checkpoint_path(url: str) -> Path:
    """Where torch.hub caches the file behind `url`."""
    return checkpoint_dir() / os.path.basename(urllib.parse.urlparse(url).path)


def reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when a TCP connection to the URL's host (or its proxy) opens within `timeout` seconds."""
    parsed = urllib.parse.urlparse(url)
    proxy = urllib.request.getproxies().get(parsed.scheme)
    if proxy and not urllib.request.proxy_bypass(parsed.hostname or ""):
        parsed = urllib.parse.urlparse(proxy if "//" in proxy else f"http://{proxy}")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def not_available(what: str, path: Path, url: str, reason: str) -> ModelNotAvailableError:
    """The error that says which file to download and where to place it."""
    return ModelNotAvailableError(
        f"The weights of {what} are not cached and cannot be downloaded ({reason}). "
        f"Download {url} and save it as {path.name!r} in the directory {str(path.parent)!r} "
        f"(full path: {path})."
    )


def fetch_checkpoint(url: str, what: str) -> Path:
    """The cached weights file for `url`, downloading it first when needed.

    torch.hub writes to a temporary ".partial" file and moves it into place only when complete,
    so a failed download leaves no half-written file behind.
    """
    path = checkpoint_path(url)
    if path.is_file():
        return path
    if not reachable(url):
        raise not_available(what, path, url, "no network connection")
    path.parent.mkdir(parents=True, exist_ok=True)
    match = torch.hub.HASH_REGEX.search(path.name)
    try:
        torch.hub.download_url_to_file(url, str(path), match.group(1) if match else None, progress=True)
    except (OSError, RuntimeError, http.client.HTTPException) as exc:
        raise not_available(what, path, url, f"download failed: {exc}") from exc
    return path
