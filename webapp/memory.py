"""Keeping a long-running server's memory flat (glibc's malloc arenas and trimming)."""

from __future__ import annotations

import ctypes
import math
import os
import threading
import time
from typing import Any

M_ARENA_MAX = -8  # glibc mallopt() parameter (malloc.h)


def _libc() -> Any:
    """glibc, or None where the C library is another one."""
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


LIBC = _libc()


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (like MALLOC_ARENA_MAX=2): Gradio runs handlers on many worker
    threads and each would otherwise keep its own arena of freed tensor memory, so a busy server's
    memory would creep up. False where the host chose already or the C library is not glibc."""
    if os.environ.get("MALLOC_ARENA_MAX") or LIBC is None:
        return False
    return bool(LIBC.mallopt(M_ARENA_MAX, arenas))


TRIM_EVERY_S = 2.0  # at most one trim in this many seconds
_trim_lock = threading.Lock()
_last_trim = -math.inf
_pending: threading.Timer | None = None


def release_memory() -> None:
    """Give the memory freed by runs back to the system (glibc malloc_trim; no-op elsewhere), at
    most once every TRIM_EVERY_S: a trim makes the next run fault its pages in again (~15 ms of a
    ~70 ms request on the default model), so a busy server trims every few seconds, and the last
    run of a burst is trimmed after at most TRIM_EVERY_S (a timer) rather than never."""
    global _pending
    if LIBC is None:
        return
    with _trim_lock:
        wait = _last_trim + TRIM_EVERY_S - time.monotonic()
        if wait > 0:
            if _pending is None:
                _pending = threading.Timer(wait, _trim)
                _pending.daemon = True
                _pending.start()
            return
    _trim()


def _trim() -> None:
    global _last_trim, _pending
    with _trim_lock:
        _last_trim, _pending = time.monotonic(), None
    LIBC.malloc_trim(0)
