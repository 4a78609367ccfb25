"""The web app's settings: defaults shown on the page and the limits of one server."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "assets"

DEFAULT_MODEL = "efficientnet_lite0"
PREFERRED_DEFAULT_METHODS = ("gradcam", "gradcam++", "gradcampp", "layercam")
DEFAULT_TOP_K = 2
DEFAULT_COLORMAP = "jet"
DEFAULT_OPACITY = 0.5
MAX_FILE_BYTES = 25 * 1024 * 1024  # upload limit enforced by Gradio (launch(max_file_size=...))
MAX_MAPS = 48  # classes x methods per run
MAX_CLASSES = 10
MAX_REQUEST_SECONDS = 120  # estimated before a run (refused when over) and enforced during it
SLOW_RUN_SECONDS = 10  # runs estimated longer than this say so before they start
ENGINE_CONCURRENCY = 2  # engine runs at once (the queue's limit, and a semaphore behind it)
QUEUE_SIZE = 32  # requests waiting, all visitors together ...
PER_SESSION = 2  # ... waiting or running per session (a browser tab) ...
PER_ADDRESS = 16  # ... and per client address (half the queue)
MAX_BODY_BYTES = 64 * 1024  # JSON request bodies (images come as uploads)
SESSIONS = 64  # sessions Gradio keeps (LRU; ~130 KB each: the page's config)
RESULTS_MAX_BYTES = 64 * 2**20  # results kept for re-rendering, all sessions together ...
RESULTS_MAX_AGE_S = 3600  # ... each for at most an hour after its last use
TEMP_MAX_BYTES = 512 * 2**20  # every temporary file of the server (uploads, Gradio's cache, zips)
TEMP_MAX_AGE_S = 3600  # ... each deleted an hour after it was written
TINY_IMAGE_PIXELS = 32  # images with a side shorter than this get a warning
