"""Progress of a long run: images done, rate and time left, on a terminal line or a callback."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

ProgressCallback = Callable[[int, int, float | None], None]  # (done, total, seconds left or None)


def format_seconds(seconds: float | None) -> str:
    """H:MM:SS, or "?" when unknown."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Counts images; the time left is estimated from the rate of this session's images.

    callback(done, total, seconds_left) is called at every count; the line on `stream` is rewritten
    at most every `every` seconds on a terminal, every 10 s into a file.
    """

    def __init__(
        self,
        total: int,
        done: int = 0,
        stream: TextIO | None = sys.stderr,
        callback: ProgressCallback | None = None,
        every: float = 1.0,
    ) -> None:
        self.total, self.done, self.start_done = total, done, done
        self.stream, self.callback = stream, callback
        self.every = every if stream is None or stream.isatty() else max(every, 10.0)  # a log file: fewer lines
        self.started = time.monotonic()
        self.shown = 0.0
        self._show(force=True)

    @property
    def rate(self) -> float | None:
        """Images per second in this session, None before the first one."""
        elapsed = time.monotonic() - self.started
        counted = self.done - self.start_done
        return counted / elapsed if counted and elapsed > 0 else None

    @property
    def seconds_left(self) -> float | None:
        """Estimated seconds to finish, None before the first image."""
        rate = self.rate
        return (self.total - self.done) / rate if rate else None

    def advance(self, count: int = 1) -> None:
        """Count `count` more images done."""
        self.done += count
        self._show(force=self.done >= self.total)

    def line(self) -> str:
        """The progress line: bar, count, rate, time left."""
        share = self.done / self.total if self.total else 1.0
        bar = "#" * int(share * 30)
        rate = self.rate
        return (
            f"[{bar:<30}] {self.done}/{self.total} images "
            f"{f'{rate:.2f}/s' if rate else '-/s'}  ETA {format_seconds(self.seconds_left)}"
        )

    def _show(self, force: bool = False) -> None:
        """Call the callback every time; write the line at most every `every` seconds."""
        if self.callback is not None:
            self.callback(self.done, self.total, self.seconds_left)
        now = time.monotonic()
        if not force and now - self.shown < self.every:
            return
        self.shown = now
        if self.stream is not None:
            end = "\r" if self.stream.isatty() and self.done < self.total else "\n"
            self.stream.write(self.line() + end)
            self.stream.flush()
