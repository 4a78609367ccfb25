"""The output folder of a run, written as it goes so that a run can stop and resume.

    DIR/job.json        what the run computes (model, methods, parameters); a resume must match it
    DIR/records.jsonl   one JSON line per image done, appended and flushed one at a time
    DIR/maps/<id>.npz   that image's maps, "method/class" -> float16 [H, W] in [0, 1]

A map file is complete (written aside, then renamed) before its record line is appended, so a record
always has its maps; a line cut short by a crash is dropped when the folder is opened again. <id> is
a hash of the file's path in the dataset: names never come from users' file names.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .dataset import DatasetError
from .work import ImageResult

RECORDS = "records.jsonl"
JOB = "job.json"
MAPS = "maps"


def file_id(file: str) -> str:
    """A short, safe, stable name for a dataset file."""
    return hashlib.sha1(file.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def map_file(file: str) -> str:
    """Where a dataset file's maps are stored, relative to the output folder."""
    return f"{MAPS}/{file_id(file)}.npz"


class Store:
    """Records and maps of one run in `out` (created); resumes what a run of the same job left."""

    def __init__(self, out: str | Path, job: dict) -> None:
        self.out = Path(out)
        (self.out / MAPS).mkdir(parents=True, exist_ok=True)
        job_path = self.out / JOB
        if job_path.exists():
            previous = json.loads(job_path.read_text(encoding="utf-8"))
            if previous != job:
                changed = sorted(k for k in set(previous) | set(job) if previous.get(k) != job.get(k))
                raise DatasetError(
                    f"{self.out} holds a run with other settings ({', '.join(changed)}); "
                    f"use another output folder, or delete this one to start again."
                )
        else:
            job_path.write_text(json.dumps(job, indent=1), encoding="utf-8")
        self.records = {record["file"]: record for record in self._read()}

    def _read(self) -> Iterator[dict]:
        """The complete records on disk (a last line cut short is cut off the file)."""
        path = self.out / RECORDS
        if not path.exists():
            return
        data = path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            with path.open("r+b") as handle:
                handle.truncate(end)
        for line in data[:end].splitlines():
            yield json.loads(line)

    def add(self, result: ImageResult) -> None:
        """Write one image's maps, then its record."""
        record = dict(result.record)
        if result.maps:
            relative = map_file(record["file"])
            partial = self.out / f"{relative}.partial"
            with partial.open("wb") as handle:
                np.savez_compressed(handle, allow_pickle=False, **result.maps)
            os.replace(partial, self.out / relative)
            record["maps_file"] = relative
        with (self.out / RECORDS).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.records[record["file"]] = record

    def load_maps(self, record: dict) -> dict[str, np.ndarray]:
        """The maps of a record ("method/class" -> float32 [H, W])."""
        if "maps_file" not in record:
            return {}
        with np.load(self.out / record["maps_file"]) as stored:
            return {key: stored[key].astype(np.float32) for key in stored.files}
