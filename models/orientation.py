"""EXIF orientation read without PIL's EXIF parser, applied as ImageOps.exif_transpose applies it.

`Image.getexif()` and `ImageOps.exif_transpose()` read every value of the EXIF block: a 1 MB
PNG whose thousand EXIF tags all point at the same megabyte costs them 2 to 4 GB. Here only
tag 0x0112 of IFD0 is read, from the first MAX_EXIF_BYTES of the block (a JPEG segment holds at
most 64 KB, and IFD0 comes first); whatever lies beyond is ignored.
"""

from __future__ import annotations

import io
import re

from PIL import Image

from .tiff_directory import read_directory, read_layout

MAX_EXIF_BYTES = 64 * 1024

_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_RAW_PROFILE = "Raw profile type exif"  # PNG text written by ImageMagick: a header, then hex
_XMP_KEYS = ("XML:com.adobe.xmp", "xmp")
_XMP_ORIENTATION = r'tiff:Orientation(="|>)([0-9])'
_CARRIERS = ("exif", _RAW_PROFILE, *_XMP_KEYS)


def orientation(image: Image.Image) -> int:
    """The orientation (1 to 8; 1 = as stored) of a loaded image, found where PIL looks for it.

    The EXIF block (info "exif", or PNG's "Raw profile type exif"), else XMP's tiff:Orientation.
    A TIFF has none left once loaded: PIL's TIFF loader applies its own tag itself.
    """
    value = _exif_orientation(_exif_block(image.info))
    if value is None:
        value = _xmp_orientation(image.info)
    return value if value in _TRANSPOSE else 1


def _exif_orientation(block: bytes) -> int | None:
    """Tag 0x0112 of IFD0 in a raw EXIF block ("Exif\\0\\0" prefix or not); None when absent."""
    head = block.removeprefix(b"Exif\0\0")[:MAX_EXIF_BYTES]
    fp = io.BytesIO(head)
    layout = read_layout(fp)
    if layout is None:
        return None
    return read_directory(fp, layout, layout.first, len(head)).integers.get(_ORIENTATION_TAG)


def upright(image: Image.Image, value: int) -> Image.Image:
    """`image` turned as orientation `value` says; the image itself when there is nothing to do."""
    method = _TRANSPOSE.get(value)
    return image if method is None else image.transpose(method)


def drop_orientation_metadata(image: Image.Image) -> None:
    """Remove the EXIF and XMP metadata from an image this code made, once its orientation is
    applied: nothing downstream turns it again or parses a hostile EXIF block."""
    for key in _CARRIERS:
        image.info.pop(key, None)


def _exif_block(info: dict) -> bytes:
    """The raw EXIF bytes of an image's info (b"" when none or unreadable)."""
    block = info.get("exif")
    if isinstance(block, bytes):
        return block
    text = info.get(_RAW_PROFILE)
    if not isinstance(text, str):
        return b""
    digits = "".join(text.split("\n")[3:])[: 2 * (MAX_EXIF_BYTES + 6)]
    try:
        return bytes.fromhex(digits)
    except ValueError:
        return b""


def _xmp_orientation(info: dict) -> int | None:
    """tiff:Orientation of the XMP packet, as PIL's getexif() reads it (None when absent)."""
    for key in _XMP_KEYS:
        xmp = info.get(key)
        if isinstance(xmp, (str, bytes)) and xmp:
            match = (
                re.search(_XMP_ORIENTATION, xmp) if isinstance(xmp, str) else re.search(_XMP_ORIENTATION.encode(), xmp)
            )
            return int(match[2]) if match else None
    return None
