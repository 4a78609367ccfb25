"""Keeping a long-running server's memory flat (glibc's malloc arenas and trimming)."""

from __future__ import annotations

import ctypes
import os
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


def release_memory() -> None:
    """Give the memory freed by a run back to the system (glibc malloc_trim; no-op elsewhere)."""
    if LIBC is not None:
        LIBC.malloc_trim(0)
