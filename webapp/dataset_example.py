"""The "Try the example" dataset: the app's own example photos (assets/, public domain or CC0) and
their mirror images, in one folder per ImageNet class, zipped once per server."""

from __future__ import annotations

import io
import threading
import zipfile
from pathlib import Path

from PIL import ImageOps

import models

from . import config, files

#: Class folder -> example photos of that class (several are hard: a cat the model calls a tiger
#: cat, Grace Hopper's uniform it takes for an academic gown).
EXAMPLE_CLASSES = {
    "tabby": ("cat.jpg", "cat_and_coffee.jpg"),
    "espresso": ("coffee.jpg",),
    "military_uniform": ("grace_hopper.jpg",),
    "missile": ("rocket.jpg",),
}
NAME = "example_dataset.zip"
QUALITY = 90

_lock = threading.Lock()
_built: Path | None = None


def example_members() -> dict[str, bytes]:
    """The zip's files by name: each photo and its mirror image, under its class folder."""
    members = {}
    for label, names in EXAMPLE_CLASSES.items():
        for name in names:
            photo = config.ASSETS / name
            members[f"{label}/{name}"] = photo.read_bytes()
            mirrored = io.BytesIO()
            ImageOps.mirror(models.open_image(photo)).save(mirrored, "JPEG", quality=QUALITY)
            members[f"{label}/{Path(name).stem}_mirrored.jpg"] = mirrored.getvalue()
    return members


def example_zip() -> Path:
    """The example dataset's zip in this server's scratch folder (made on the first call, kept)."""
    global _built
    with _lock:
        if _built is None or not _built.is_file():
            path = files.new_folder() / NAME
            with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as packed:
                for name, data in example_members().items():
                    packed.writestr(name, data)
            files.scratch_folder().keep([str(path)])
            _built = path
        return _built
