"""ImageNet-1k class names and wnids (shipped data files), and user class-name files."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from .errors import ModelError

_HERE = Path(__file__).resolve().parent
_MAX_CLASS_FILE_BYTES = 10 * 1024 * 1024


def _read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@lru_cache(maxsize=1)
def _imagenet_labels() -> tuple[str, ...]:
    return tuple(_read_lines(_HERE / "imagenet_classes.txt"))


@lru_cache(maxsize=1)
def _imagenet_wnids() -> tuple[str, ...]:
    return tuple(_read_lines(_HERE / "imagenet_wnids.txt"))


def imagenet_labels() -> list[str]:
    """The 1000 human-readable ImageNet-1k class names, in the standard index order."""
    return list(_imagenet_labels())


def imagenet_wnids() -> list[str]:
    """The 1000 ImageNet-1k WordNet ids ("n01440764", ...), in the standard index order."""
    return list(_imagenet_wnids())


def read_class_names(path: str | Path) -> list[str]:
    """Read class names from a text file (one per line, blank lines ignored) or a JSON list."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Class-names file {path} is not a regular file.")
    if path.stat().st_size > _MAX_CLASS_FILE_BYTES:
        raise ModelError(f"Class-names file {path} is larger than 10 MB; expected one name per line.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ModelError(f"Class-names file {path} is not UTF-8 text: {exc}") from exc
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"Class-names file {path} is not a valid JSON list: {exc}") from exc
        if not all(isinstance(name, str) for name in names):
            raise ModelError(f"Class-names file {path}: the JSON list must hold strings only.")
        names = [name.strip() for name in names]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ModelError(f"Class-names file {path} holds no class names.")
    return names
