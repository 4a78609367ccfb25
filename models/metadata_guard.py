"""Spot, before PIL opens a file, metadata that PIL would expand into gigabytes.

PIL reads every value of some TIFF-style directories while it opens or loads a file: a JPEG's
EXIF IFD0 (for the dpi) and its MPF index, a TIFF's IFD0 and, on load, its Exif, GPS and
Interop directories. When the entries of a directory all point at the same bytes, PIL allocates
entries × size: a 1 MB file costs about 1 GB. The entries of a genuine directory point at
separate data, so it never claims more bytes than its block (the EXIF block, the file) holds.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import BinaryIO

from PIL.JpegImagePlugin import MARKER

from .tiff_directory import read_directory, read_layout

_EXIF_IFD, _GPS_IFD, _INTEROP_IFD = 0x8769, 0x8825, 0xA005
#: Numbers PIL may turn into Python objects (~40 bytes each) across the directories it reads:
#: a genuine 40-megapixel TIFF has at most a few hundred thousand (strip or tile offsets).
MAX_NUMBERS = 1_000_000
_SOS, _APP1, _APP2 = 0xFFDA, 0xFFE1, 0xFFE2


def metadata_overclaims(fp: BinaryIO, size: int) -> bool:
    """True when a directory PIL reads at open or load claims more bytes than its block holds,
    or more numbers than MAX_NUMBERS.

    `fp` is a seekable file of `size` bytes, a JPEG or a TIFF (other formats are not affected).
    """
    fp.seek(0)
    if fp.read(3) == b"\xff\xd8\xff":
        return any(_tiff_overclaims(io.BytesIO(block), len(block)) for block in _jpeg_blocks(fp))
    return _tiff_overclaims(fp, size)


def _tiff_overclaims(fp: BinaryIO, size: int) -> bool:
    """IFD0 and the sub-directories PIL's TIFF loader reads claim more than `size` bytes, or
    more than MAX_NUMBERS numbers (each a Python object once PIL has read it)."""
    layout = read_layout(fp)
    if layout is None:
        return False
    ifd0 = read_directory(fp, layout, layout.first, size)
    directories = [ifd0]
    exif = None
    for tag in (_EXIF_IFD, _GPS_IFD):
        if tag in ifd0.integers:
            directory = read_directory(fp, layout, ifd0.integers[tag], size)
            directories.append(directory)
            exif = directory if tag == _EXIF_IFD else exif
    if _INTEROP_IFD in ifd0.integers and exif is not None and _INTEROP_IFD in exif.integers:
        directories.append(read_directory(fp, layout, exif.integers[_INTEROP_IFD], size))
    return sum(d.claimed_bytes for d in directories) > size or sum(d.numbers for d in directories) > MAX_NUMBERS


def _jpeg_blocks(fp: BinaryIO) -> Iterator[bytes]:
    """The EXIF block (its APP1 segments joined, as PIL joins them) and the MPF index of a JPEG.

    Walks the segments after the 3-byte signature up to the start of scan as PIL's JPEG plugin
    does, junk between segments included; stops where PIL would give up.
    """
    exif: list[bytes] = []
    mpf = b""
    byte = b"\xff"
    while byte:
        if byte != b"\xff":
            byte = fp.read(1)  # junk between segments
            continue
        following = fp.read(1)
        code = 0xFF00 | following[0] if following else None
        if code in MARKER:
            if MARKER[code][2] is not None:  # a segment with a length
                segment = _segment(fp, code)
                if segment.startswith(b"Exif\0\0"):
                    exif.append(segment[6:])
                elif segment.startswith(b"MPF\0"):
                    mpf = segment[4:]
            byte = b"" if code == _SOS else fp.read(1)
        elif code == 0xFFFF:  # padding
            byte = b"\xff"
        elif code == 0xFF00:  # an escaped 0xFF
            byte = fp.read(1)
        else:  # the end of the file, or no marker: PIL stops too
            byte = b""
    yield from (block for block in (b"".join(exif), mpf) if block)


def _segment(fp: BinaryIO, code: int) -> bytes:
    """The payload of an APP1 or APP2 segment; other segments are skipped (b"")."""
    length = fp.read(2)
    size = max(int.from_bytes(length, "big") - 2, 0) if len(length) == 2 else 0
    if code in (_APP1, _APP2):
        return fp.read(size)
    fp.seek(size, io.SEEK_CUR)
    return b""
