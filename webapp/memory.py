"""Keeping a long-running server's memory flat and its runs fast (glibc's malloc: arenas, when
freed memory goes back to the system)."""

from __future__ import annotations

import ctypes
import math
import os
import threading
import time
from typing import Any

# glibc mallopt() parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

ARENAS = 2
KEEP_FREED_BYTES = 1 << 30  # freed memory glibc keeps for the next run (release_memory gives it back)
OWN_MAPPING_BYTES = 8 << 20  # an allocation above this gets a mapping of its own, given back when freed


def _libc() -> Any:
    """glibc, or None where the C library is another one."""
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


LIBC = _libc()


def tune_malloc() -> dict[str, bool]:
    """Set glibc's malloc up for a server of many threads that repeats similar runs, once at
    start-up (each setting left to the host when its MALLOC_* variable is set):

    - at most ARENAS arenas: Gradio runs handlers on many worker threads, and each would
      otherwise keep an arena of freed tensor memory, so a busy server's memory would creep up;
    - no automatic trim, and allocations up to OWN_MAPPING_BYTES from the arenas: by default
      glibc gives a run's freed tensors back to the system as soon as they are freed, from a
      worker thread's arena, and the next run faults them in again: ~5,000 page faults, up to
      a third of the default request's engine time on a 2-core host. release_memory gives the
      memory back now and then instead. The largest tensor of a default request (EfficientNet-
      Lite0/2) is under 8 MiB; bigger ones (perturbation batches) keep mappings of their own, so
      that the arenas do not keep the holes of the heaviest requests.

    Returns {setting: applied}; all False where the C library is not glibc."""
    settings = {
        "MALLOC_ARENA_MAX": (M_ARENA_MAX, ARENAS),
        "MALLOC_TRIM_THRESHOLD_": (M_TRIM_THRESHOLD, KEEP_FREED_BYTES),
        "MALLOC_MMAP_THRESHOLD_": (M_MMAP_THRESHOLD, OWN_MAPPING_BYTES),
    }
    return {
        name: LIBC is not None and not os.environ.get(name) and bool(LIBC.mallopt(parameter, value))
        for name, (parameter, value) in settings.items()
    }


IDLE_S = 10.0  # memory goes back to the system once no run has ended for this long ...
BUSY_TRIM_S = 10.0  # ... and at most this long after the last time while runs keep ending
_lock = threading.Lock()
_last_run_end = -math.inf
_last_trim = -math.inf
_pending: threading.Timer | None = None


def release_memory() -> None:
    """Say that a run has ended: the memory freed by runs goes back to the system (glibc
    malloc_trim; nothing elsewhere) once no run has ended for IDLE_S, and while runs keep
    ending, at once when the last trim is BUSY_TRIM_S old. A trim makes the next run fault its
    pages in again (~15 ms of a ~60 ms request on the default model), so a busy server pays it
    once in BUSY_TRIM_S, not every run; in between it holds the holes its runs left, for reuse
    (the load test's server: 1,360 MB; 1,510 MB with no trim while busy)."""
    global _last_run_end, _last_trim
    if LIBC is None:
        return
    with _lock:
        _last_run_end = time.monotonic()
        due = _last_run_end - _last_trim >= BUSY_TRIM_S
        if due:  # claimed here, so that runs ending at once trim once
            _last_trim = _last_run_end
        elif _pending is None:
            _wait(IDLE_S)
    if due:
        LIBC.malloc_trim(0)


def _wait(seconds: float) -> None:
    """Check again in ``seconds`` (with _lock held)."""
    global _pending
    _pending = threading.Timer(seconds, _trim_when_idle)
    _pending.daemon = True
    _pending.start()


def _trim_when_idle() -> None:
    global _pending, _last_trim
    with _lock:
        _pending = None
        left = _last_run_end + IDLE_S - time.monotonic()
        if left > 0:  # a run ended meanwhile
            _wait(left)
            return
        _last_trim = time.monotonic()
    LIBC.malloc_trim(0)
