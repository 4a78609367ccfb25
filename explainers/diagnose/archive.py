"""Zip in, zip out, for a web view: a bounded, safe unpacking of an uploaded dataset, and the
archive of a run's results to download.

Unpacking keeps image files (and .csv label/box tables, .xml annotations) only, refuses absolute
paths, ".." parts, more than `max_files` members or more than `max_bytes` once unpacked (counted
while reading, whatever the zip's directory claims), and never follows or creates links.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path, PurePosixPath

from ..cli import IMAGE_SUFFIXES
from .dataset import DatasetError

MAX_FILES = 2000
MAX_BYTES = 512 * 1024 * 1024
TABLE_SUFFIXES = (".csv", ".xml")
RESULTS = ("summary.json", "report.html", "records.jsonl", "job.json", "maps", "overlays")
_CHUNK = 1 << 20


def unpack_dataset(
    archive: str | Path, dest: str | Path, max_files: int = MAX_FILES, max_bytes: int = MAX_BYTES
) -> Path:
    """Unpack the images of a zip into `dest` (created); returns the dataset folder: `dest`, or the
    single folder that wraps everything in it. DatasetError for a bad or too large archive."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(archive) as packed:
            files = [(m, _safe_path(m.filename)) for m in packed.infolist() if not m.is_dir()]
            members = [(m, path) for m, path in files if _wanted(path)]
            if len(members) > max_files:
                raise DatasetError(f"The archive holds {len(members)} files; the limit is {max_files}.")
            budget = max_bytes
            for member, path in members:
                budget -= _extract(packed, member, dest / path, budget)
    except DatasetError:
        raise
    except FileExistsError as error:
        raise DatasetError("The archive holds the same file twice.") from error
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError, zlib.error) as error:
        raise DatasetError(f"The upload is not a readable zip archive: {error}") from error
    except (OSError, ValueError) as error:  # a name too long or with a NUL, a file where a folder goes
        reason = getattr(error, "strerror", None) or "a file name this server cannot write"
        raise DatasetError(f"The archive could not be unpacked: {reason}.") from error
    if not any(dest.rglob("*")):
        raise DatasetError("The archive holds no images.")
    root = dest
    while len(entries := list(root.iterdir())) == 1 and entries[0].is_dir():
        root = entries[0]
    return root


def _wanted(path: Path) -> bool:
    hidden = any(part.startswith(".") or part == "__MACOSX" for part in path.parts)
    return not hidden and path.suffix.lower() in IMAGE_SUFFIXES + TABLE_SUFFIXES


def _safe_path(name: str) -> Path:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts or ":" in path.parts[0]:
        raise DatasetError(f"The archive holds a file outside its folder: {name!r}.")
    return Path(*path.parts)


def _extract(packed: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path, budget: int) -> int:
    """Copy one member, counting its bytes against the budget; returns the bytes written."""
    if member.file_size > budget:
        raise DatasetError("The archive is larger than the limit once unpacked.")
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with packed.open(member) as source, target.open("xb") as sink:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            if written > budget:
                raise DatasetError("The archive is larger than the limit once unpacked.")
            sink.write(chunk)
    return written


def pack_results(out: str | Path, archive: str | Path) -> Path:
    """A zip of a run's results (summary, report, records, maps, overlays) at `archive`."""
    out, archive = Path(out), Path(archive)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as packed:
        for name in RESULTS:
            path = out / name
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for file in files:
                if file.is_file() and not file.name.endswith(".partial"):
                    packed.write(file, file.relative_to(out).as_posix())
    return archive
