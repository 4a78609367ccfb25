"""Bounded reading of TIFF-style directories (IFDs): the structure of EXIF blocks and TIFF files.

Only the entries are read (12 bytes each, 20 in BigTIFF), never the values they point at, so a
directory whose thousand entries all point at the same megabyte costs kilobytes here. From one
pass it gives the integer tags (the orientation, the offsets of sub-directories) and the bytes
PIL would allocate to read every value, which a crafted directory makes far larger than the file.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from PIL.TiffImagePlugin import PREFIXES

# The value types PIL reads (TiffImagePlugin's loaders) and their sizes; it skips other types.
UNIT_BYTES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8}
_INTEGER_FORMATS = {1: "B", 3: "H", 4: "L", 6: "b", 8: "h", 9: "l", 13: "L", 16: "Q"}
_ENTRIES_PER_READ = 4096


@dataclass(frozen=True)
class Layout:
    """What a TIFF header says: byte order ("<" or ">"), BigTIFF or not, offset of IFD0."""

    order: str
    big: bool
    first: int


# The types PIL turns into one Python number per value (a tuple of them), ~30-40 bytes each.
NUMERIC_TYPES = frozenset({3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 16})


@dataclass(frozen=True)
class Directory:
    """One IFD: its count-1 integer tags, the bytes PIL allocates to read all its values, and how
    many of them PIL turns into Python numbers."""

    integers: dict[int, int]
    claimed_bytes: int
    numbers: int = 0


def read_layout(fp: BinaryIO) -> Layout | None:
    """The header at the start of `fp`, accepted as PIL accepts it; None when it is not one."""
    fp.seek(0)
    head = fp.read(16)
    if head[:4] not in PREFIXES or len(head) < 8:
        return None
    order, big = ("<" if head[:2] == b"II" else ">"), head[2] == 43
    if big and len(head) < 16:
        return None
    return Layout(order, big, struct.unpack_from(order + ("Q" if big else "L"), head, 8 if big else 4)[0])


def read_directory(fp: BinaryIO, layout: Layout, offset: int, end: int) -> Directory:
    """The directory at `offset` of `fp`, whose first `end` bytes hold the block (file or EXIF).

    Entries past `end` are not read; a value PIL would read is counted up to `end`, and a tag
    that appears twice is counted once, at its largest, as PIL keeps one value per tag.
    """
    integers: dict[int, int] = {}
    claimed: dict[int, int] = {}
    numbers: dict[int, int] = {}
    pointer = struct.Struct(layout.order + ("Q" if layout.big else "L"))
    for tag, kind, count, field in _entries(fp, layout, offset, end):
        unit = UNIT_BYTES.get(kind)
        if unit is None:
            continue
        size = count * unit
        if size > len(field):
            size = max(0, min(size, end - pointer.unpack(field)[0]))
        elif count == 1 and kind in _INTEGER_FORMATS:
            integers[tag] = struct.unpack_from(layout.order + _INTEGER_FORMATS[kind], field)[0]
        claimed[tag] = max(size, claimed.get(tag, 0))
        if kind in NUMERIC_TYPES:
            numbers[tag] = max(size // unit, numbers.get(tag, 0))
    return Directory(integers, sum(claimed.values()), sum(numbers.values()))


def _entries(fp: BinaryIO, layout: Layout, offset: int, end: int) -> Iterator[tuple[int, int, int, bytes]]:
    """(tag, type, count, value-or-offset field) of each entry within the block, read in chunks."""
    counter = struct.Struct(layout.order + ("Q" if layout.big else "H"))
    entry = struct.Struct(layout.order + ("HHQ8s" if layout.big else "HHL4s"))
    first = offset + counter.size
    if offset < 0 or first > end:
        return
    fp.seek(offset)
    (count,) = counter.unpack(fp.read(counter.size))
    remaining = min(count, (end - first) // entry.size)
    while remaining:
        chunk = min(remaining, _ENTRIES_PER_READ)
        remaining -= chunk
        yield from entry.iter_unpack(fp.read(chunk * entry.size))
