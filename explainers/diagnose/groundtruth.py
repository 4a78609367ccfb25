"""Ground-truth object boxes: a CSV of file,x0,y0,x1,y1 or Pascal-VOC / ImageNet XML files.

Boxes are in the original image's pixels. A file may have several boxes (one row or one <object>
each). XML files are matched to images by stem (n01440764_10026.xml -> n01440764_10026.JPEG);
CSV rows by the image's path relative to the dataset folder, or by its base name.
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..localisation import Box
from .dataset import DatasetError

MAX_XML_BYTES = 1024 * 1024
MAX_CSV_BYTES = 64 * 1024 * 1024


def read_boxes(source: str | Path, files: Iterable[str]) -> dict[str, list[Box]]:
    """Boxes by dataset file (relative path) from a CSV file, one XML file or a folder of XML files."""
    source = Path(source)
    files = list(files)
    if source.is_dir():
        by_stem = {Path(f).stem: f for f in files}
        found: dict[str, list[Box]] = {}
        for xml in sorted(source.rglob("*.xml")):
            if xml.stem in by_stem and xml.is_file():
                found.setdefault(by_stem[xml.stem], []).extend(read_xml(xml))
        return found
    if source.suffix.lower() == ".xml":
        by_stem = {Path(f).stem: f for f in files}
        return {by_stem[source.stem]: read_xml(source)} if source.stem in by_stem else {}
    return _read_csv(source, files)


def read_xml(path: Path) -> list[Box]:
    """The <object><bndbox> boxes of one Pascal-VOC / ImageNet annotation file."""
    if not path.is_file() or path.stat().st_size > MAX_XML_BYTES:
        raise DatasetError(f"Annotation {path.name} is not a regular file of at most 1 MB.")
    try:
        root = ElementTree.parse(path).getroot()  # expat: no external entities, no DTD fetching
        return [
            _box([obj.findtext(f"bndbox/{tag}") for tag in ("xmin", "ymin", "xmax", "ymax")], path.name)
            for obj in root.iter("object")
            if obj.find("bndbox") is not None
        ]
    except ElementTree.ParseError as exc:
        raise DatasetError(f"Annotation {path.name} is not valid XML: {exc}") from exc


def _box(values: Sequence[str | None], where: str) -> Box:
    try:
        x0, y0, x1, y1 = (float(v) for v in values if v is not None)  # a missing value leaves too few
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: a box needs four numbers x0, y0, x1, y1, got {values}") from None
    if not (x1 > x0 and y1 > y0):
        raise DatasetError(f"{where}: box {values} is empty (x1 <= x0 or y1 <= y0)")
    return x0, y0, x1, y1


def _read_csv(path: Path, files: list[str]) -> dict[str, list[Box]]:
    if not path.is_file() or path.stat().st_size > MAX_CSV_BYTES:
        raise DatasetError(f"Boxes file {path.name} is not a regular file of at most 64 MB.")
    known = {f: f for f in files} | {Path(f).name: f for f in files}
    found: dict[str, list[Box]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if len(row) < 5 or row[0].strip().lower() == "file":
                continue
            file = known.get(row[0].strip())
            if file is not None:
                found.setdefault(file, []).append(_box(row[1:5], f"{path.name} line {number}"))
    return found
