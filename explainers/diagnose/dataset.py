"""A labelled image folder: which files, which class each one is.

Three layouts, tried in this order:
- a CSV of `file,label` (the `labels` argument; files relative to the folder);
- one sub-folder per class (the folder's name is the label);
- flat ImageNet-style names, the label before the first "_" (`n01440764_10026.JPEG`), or the longest
  "_"-joined prefix that names a class (`golden_retriever_03.jpg`).
A label is a class index ("281"), an ImageNet wnid ("n02123045", 1000-class models) or a class name
(any case; "_" read as a space).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import models

from ..cli import IMAGE_SUFFIXES
from ..localisation import Box

_WNID = re.compile(r"^n\d{8}$")
MAX_CSV_BYTES = 64 * 1024 * 1024


class DatasetError(ValueError):
    """The folder or its labels cannot be read: a message for a person."""


@dataclass(frozen=True)
class Sample:
    """One labelled image: `file` is its path relative to the dataset folder (the key everywhere).

    data: the file's bytes when they travel with the sample (to Ray workers on other machines).
    """

    file: str
    path: Path
    label: int
    boxes: tuple[Box, ...] = field(default=())
    data: bytes | None = field(default=None, repr=False, compare=False)


class LabelResolver:
    """Class index of a label written as an index, a wnid or a class name."""

    def __init__(self, class_names: Sequence[str]) -> None:
        self.count = len(class_names)
        self.by_name: dict[str, int] = {}
        for index, name in enumerate(class_names):
            self.by_name.setdefault(_key(name), index)
        if self.count == 1000:
            for index, wnid in enumerate(models.imagenet_wnids()):
                self.by_name.setdefault(wnid, index)

    def find(self, text: str) -> int | None:
        """The class index, or None when `text` names no class."""
        text = text.strip()
        if text.isdigit():
            index = int(text)
            return index if index < self.count else None
        return self.by_name.get(_key(text))

    def from_file_name(self, stem: str) -> int | None:
        """The class of an ImageNet-style file name: its wnid, else its longest class-name prefix."""
        parts = stem.split("_")
        if parts[0].isdigit():  # "0001.jpg" is a number, not a class index
            return None
        if _WNID.match(parts[0]):
            return self.find(parts[0])
        for end in range(len(parts), 0, -1):
            index = self.find("_".join(parts[:end]))
            if index is not None:
                return index
        return None


def _key(name: str) -> str:
    return " ".join(name.replace("_", " ").lower().split())


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def read_dataset(folder: str | Path, class_names: Sequence[str], labels: str | Path | None = None) -> list[Sample]:
    """The labelled images of `folder`, sorted by file; DatasetError on any file without a class.

    Messages name files by their path in the dataset and folders by their name, never a server path.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder.name or folder} is not a folder.")
    resolver = LabelResolver(class_names)
    if labels is not None:
        pairs = _from_csv(folder, Path(labels), resolver)
    elif any(child.is_dir() for child in folder.iterdir()):
        pairs = _from_class_folders(folder, resolver)
    else:
        pairs = _from_file_names(folder, resolver)
    if not pairs:
        raise DatasetError(f"No images ({'/'.join(s[1:] for s in IMAGE_SUFFIXES)}) found in {folder.name or folder}.")
    return [Sample(file, folder / file, label) for file, label in sorted(pairs.items())]


def _unresolved(kind: str, names: list[str]) -> DatasetError:
    shown = ", ".join(repr(n) for n in names[:5]) + (", ..." if len(names) > 5 else "")
    return DatasetError(
        f"{len(names)} {kind} name no class of the model: {shown}. Use class indices, wnids or the model's class names."
    )


def _from_class_folders(folder: Path, resolver: LabelResolver) -> dict[str, int]:
    pairs: dict[str, int] = {}
    bad: list[str] = []
    for child in sorted(folder.iterdir()):
        if not child.is_dir():
            continue
        label = resolver.find(child.name)
        files = sorted(p for p in child.iterdir() if _is_image(p))
        if label is None:
            if files:
                bad.append(child.name)
            continue
        pairs.update((f"{child.name}/{p.name}", label) for p in files)
    if bad:
        raise _unresolved("folders", bad)
    return pairs


def _from_file_names(folder: Path, resolver: LabelResolver) -> dict[str, int]:
    pairs, bad = {}, []
    for path in sorted(folder.iterdir()):
        if not _is_image(path):
            continue
        label = resolver.from_file_name(path.stem)
        if label is None:
            bad.append(path.name)
        else:
            pairs[path.name] = label
    if bad:
        raise _unresolved("file names", bad)
    return pairs


def _from_csv(folder: Path, table: Path, resolver: LabelResolver) -> dict[str, int]:
    if not table.is_file() or table.stat().st_size > MAX_CSV_BYTES:
        raise DatasetError(f"Labels file {table.name} is not a regular file of at most 64 MB.")
    pairs, bad, missing = {}, [], []
    with table.open(newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle):
            if len(row) < 2 or row[0].strip().lower() == "file":
                continue
            file, text = row[0].strip(), row[1]
            label = resolver.find(text)
            if label is None:
                bad.append(text)
            elif not _is_relative(file) or not _is_image(folder / file):
                missing.append(file)
            else:
                pairs[Path(file).as_posix()] = label
    if bad:
        raise _unresolved("labels", bad)
    if missing:
        raise DatasetError(
            f"{len(missing)} files of {table.name} are not images inside {folder.name or folder}: "
            + ", ".join(repr(m) for m in missing[:5])
        )
    return pairs


def _is_relative(file: str) -> bool:
    """A path below the folder as written (not absolute, no ".." part)."""
    path = Path(file)
    return not path.is_absolute() and ".." not in path.parts
