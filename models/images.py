"""Open a user's image file safely: the one loader of the app and the command line.

Every refusal is an ImageError worded for a person, naming the image by its display name only.
A path is opened without blocking and must be a regular file; the size is checked from the
header before any pixel is decoded; metadata PIL would blow up (models.metadata_guard) is
refused before PIL opens the file; the EXIF orientation is read by models.orientation, from the
first MAX_EXIF_BYTES of the EXIF block: a larger block is not refused, its tail is ignored.
"""

from __future__ import annotations

import io
import os
import stat
import struct
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from .errors import ModelError
from .metadata_guard import metadata_overclaims
from .orientation import MAX_EXIF_BYTES
from .preprocessing import to_rgb

__all__ = ["MAX_ASPECT_RATIO", "MAX_EXIF_BYTES", "MAX_PIXELS", "ImageError", "open_image"]

MAX_PIXELS = 40_000_000  # larger images are refused from their header, before decoding
MAX_ASPECT_RATIO = 20  # thinner strips are refused: resizing them would need huge images
_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")  # the decoders PIL may use
# What reading a malformed file raises, besides UnidentifiedImageError (an OSError): LookupError
# is PIL's TIFF loader on an Interop pointer with no Exif entry, struct.error a file cut short.
_UNREADABLE = (OSError, SyntaxError, ValueError, LookupError, struct.error)


class ImageError(ModelError):
    """An image that cannot be used; the message is for a person and names no server path."""


def open_image(source: str | os.PathLike | bytes, name: str | None = None) -> Image.Image:
    """The first frame of an image file (a path) or of image bytes, as 8-bit RGB, upright.

    `name` is how messages call the image (default: the file's base name, or "image" for bytes).
    Raises ImageError for a missing, unreadable or non-regular file, a non-image, a damaged file,
    metadata that claims more than the file holds, over MAX_PIXELS pixels, or a side more than
    MAX_ASPECT_RATIO times the other.
    """
    if isinstance(source, bytes):
        return _decode(io.BytesIO(source), len(source), name or "image")
    name = name or Path(os.fsdecode(source)).name or "image"
    with _open_regular_file(source, name) as file:
        return _decode(file, os.fstat(file.fileno()).st_size, name)


def _check_size(name: str, width: int, height: int) -> None:
    """ImageError for an image over MAX_PIXELS or thinner than 1:MAX_ASPECT_RATIO."""
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"“{name}” is {width}×{height} pixels ({width * height / 1e6:.0f} megapixels); "
            f"the limit is {MAX_PIXELS / 1e6:.0f} megapixels. Please use a smaller image."
        )
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ImageError(
            f"“{name}” is {width}×{height} pixels: too long and thin to explain (at "
            f"most {MAX_ASPECT_RATIO}:1). Please crop it first."
        )


def _open_regular_file(path: str | os.PathLike, name: str) -> BinaryIO:
    """The file opened for reading, refused unless regular: a FIFO or a device is never read.

    O_NONBLOCK: opening a FIFO does not wait for a writer; O_NOCTTY: a terminal is not adopted.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError as err:
        raise ImageError(f"“{name}” was not found.") from err
    except PermissionError as err:
        raise ImageError(f"“{name}” cannot be read: permission denied.") from err
    except OSError as err:
        raise ImageError(f"“{name}” cannot be opened ({err.strerror or 'unknown error'}).") from err
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        what = "a directory, not an image" if stat.S_ISDIR(mode) else "not a regular file"
        raise ImageError(f"“{name}” is {what}.")
    return os.fdopen(fd, "rb")


def _decode(file: BinaryIO, size: int, name: str) -> Image.Image:
    """Check the metadata and the header, then decode the first frame to upright RGB."""
    try:
        if metadata_overclaims(file, size):
            raise ImageError(
                f"“{name}” could not be read safely: its metadata (EXIF or TIFF tags) "
                "claims more data than the file holds or a picture needs, so the "
                "file is damaged. Please save the picture again and retry."
            )
        file.seek(0)
        with Image.open(file, formats=_FORMATS) as image:  # reads the header only
            _check_size(name, *image.size)
            image.seek(0)  # the first frame of an animation
            return to_rgb(image)
    except UnidentifiedImageError as err:
        raise ImageError(
            f"“{name}” is not an image this app can read. Please use a JPEG, PNG, WebP, BMP, GIF or TIFF picture."
        ) from err
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(
            f"“{name}” is too large to open safely (over "
            f"{MAX_PIXELS / 1e6:.0f} megapixels). Please use a smaller image."
        ) from err
    except ImageError:
        raise
    except _UNREADABLE as err:
        raise ImageError(f"“{name}” could not be read; the file may be damaged or cut short.") from err
