"""The app's temporary files: one folder per running server, bounded in bytes and age, removed
when the server stops and, after a crash, by the next start.

Layout under ``$EXPLAIN_APP_TEMP`` (default ``<system temp>/explain-app``)::

    server-<pid>-<random>/      one per running server; it holds an exclusive lock on .lock
        gradio/                 Gradio's cache (uploads and every output Gradio serves)
            downloads/          the app's per-request folders (tiles, grid, zip): inside the
                                cache, so Gradio serves them without a copy

A folder whose lock can be taken belongs to no running server and is deleted at start.
"""

from __future__ import annotations

import atexit
import fcntl
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

ENV_VAR = "EXPLAIN_APP_TEMP"
TRIM_AT = 0.9  # share of the cap at which the oldest files start to go
PREFIX = "server-"
LOCK = ".lock"


def parent_folder() -> Path:
    """Where every server's scratch folder lives: $EXPLAIN_APP_TEMP or <temp>/explain-app."""
    return Path(os.environ.get(ENV_VAR) or Path(tempfile.gettempdir()) / "explain-app")


def files_by_age(root: Path) -> list[tuple[float, int, Path]]:
    """(mtime, size, path) of every regular file under root, oldest first (the lock left out);
    files that vanish meanwhile are skipped. (os.scandir: one stat per file, no Path per entry
    until it is kept: the scan runs after every drawing and around every upload.)"""
    found: list[tuple[float, int, Path]] = []
    folders = [str(root)]
    while folders:
        folder = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:  # removed meanwhile
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
                    continue
                if entry.name == LOCK and folder == str(root):
                    continue
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            found.append((info.st_mtime, info.st_size, Path(entry.path)))
    return sorted(found)


class Scratch:
    """One server's scratch folder: Gradio's cache and the downloads, under a byte cap."""

    def __init__(self, root: Path, max_bytes: int, max_age_s: float) -> None:
        self.root, self.max_bytes, self.max_age_s = root, max_bytes, max_age_s
        self.gradio, self.downloads = root / "gradio", root / "gradio" / "downloads"
        root.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(root / LOCK, "w")  # held while this process lives
        fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for folder in (self.gradio, self.downloads):
            folder.mkdir(parents=True, exist_ok=True)
        self._trim_lock = threading.Lock()
        self._kept: set[str] = set()
        self._folders_swept = -math.inf  # when empty folders were last looked for

    def size(self) -> int:
        """Bytes of all files in the folder now."""
        return sum(size for _, size, _ in files_by_age(self.root))

    def keep(self, paths: Iterable[str]) -> None:
        """Never delete these files (e.g. the examples' copies Gradio serves), however old."""
        with self._trim_lock:
            self._kept.update(os.path.realpath(path) for path in paths)

    def trim(self) -> int:
        """Delete files older than max_age_s and, once over 90 % of max_bytes, the oldest until
        80 % remain (the rest of the cap is room for the requests writing meanwhile); empty
        folders go too (looked for at most every EMPTY_FOLDER_SWEEP_S). Kept files
        (:meth:`keep`) stay, and count. Returns the bytes left."""
        with self._trim_lock:
            files = files_by_age(self.root)
            total = sum(size for _, size, _ in files)
            too_old = time.time() - self.max_age_s
            goal = int((0.8 if total > TRIM_AT * self.max_bytes else 1.0) * self.max_bytes)
            for mtime, size, path in files:
                if mtime >= too_old and total <= goal:
                    break
                if os.path.realpath(path) in self._kept:
                    continue
                path.unlink(missing_ok=True)
                total -= size
            if time.monotonic() - self._folders_swept >= EMPTY_FOLDER_SWEEP_S:  # they hold no bytes
                _remove_empty_folders(self.root, keep={self.gradio, self.downloads})
                self._folders_swept = time.monotonic()
            return total

    def remove(self) -> None:
        """Delete the whole folder (at stop)."""
        shutil.rmtree(self.root, ignore_errors=True)
        self._lock_file.close()


EMPTY_FOLDER_GRACE_S = 60  # a request may make a folder and fill it a moment later
EMPTY_FOLDER_SWEEP_S = 10  # empty folders are looked for at most this often (a walk of every folder)


def _remove_empty_folders(root: Path, keep: set[Path]) -> None:
    """Remove folders that are empty and were not changed for EMPTY_FOLDER_GRACE_S."""
    settled = time.time() - EMPTY_FOLDER_GRACE_S
    for folder, subfolders, names in os.walk(root, topdown=False):
        path = Path(folder)
        if path == root or path in keep or names or subfolders:
            continue
        try:
            if path.stat().st_mtime < settled:
                path.rmdir()
        except OSError:  # filled or removed meanwhile
            pass


def remove_abandoned(parent: Path, grace_s: float = 60.0) -> list[Path]:
    """Delete the scratch folders of servers that are no longer running (their lock is free);
    folders younger than grace_s may belong to a server still starting, and are left alone."""
    removed = []
    for folder in parent.glob(PREFIX + "*"):
        try:
            if time.time() - folder.stat().st_mtime < grace_s and not (folder / LOCK).exists():
                continue
            with open(folder / LOCK, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a running server holds it
        except OSError:  # gone meanwhile, or not a folder
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


_claimed: Scratch | None = None
_claim_lock = threading.Lock()


def claim(max_bytes: int, max_age_s: float) -> Scratch:
    """This process's scratch folder (made on the first call; later calls return the same one).

    Removes abandoned folders of crashed servers first, points Gradio's cache at ``gradio/``
    (GRADIO_TEMP_DIR, read by every Blocks built afterwards) and deletes the folder at exit.
    """
    global _claimed
    with _claim_lock:
        if _claimed is None:
            parent = parent_folder()
            parent.mkdir(parents=True, exist_ok=True)
            remove_abandoned(parent)
            root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent))
            _claimed = Scratch(root, max_bytes, max_age_s)
            os.environ["GRADIO_TEMP_DIR"] = str(_claimed.gradio)
            atexit.register(_claimed.remove)
        return _claimed
