"""Where the files a visitor sees and downloads are written: per-request folders in this
server's capped scratch folder, inside Gradio's cache so that Gradio serves them as they are."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import gradio as gr
from gradio.context import LocalContext

from . import config, scratch

ARCHIVE_ROOT: Path | None = None  # where download folders go; None: this server's scratch folder


def scratch_folder() -> scratch.Scratch:
    """This server's folder for temporary files (Gradio's cache and the downloads), capped."""
    return scratch.claim(config.TEMP_MAX_BYTES, config.TEMP_MAX_AGE_S)


def new_folder() -> Path:
    """A fresh per-request folder for the files shown and downloaded."""
    root = ARCHIVE_ROOT or scratch_folder().downloads
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="run-", dir=root))


def tidy(blocks: gr.Blocks | None = None) -> None:
    """Trim the scratch folder to its cap and age, and let Gradio forget the files that went
    (its sets of served files would otherwise grow with every request)."""
    scratch_folder().trim()
    blocks = blocks or LocalContext.blocks.get(None)
    for files in getattr(blocks, "temp_file_sets", []):
        files -= {path for path in list(files) if not os.path.exists(path)}
