"""webapp.memory: freed memory goes back to the system at most once per interval, and the last
run of a burst is trimmed too (a timer), so an idle server ends with its memory given back."""

from __future__ import annotations

import math
import time

from webapp import memory


class FakeLibc:
    def __init__(self) -> None:
        self.trims: list[float] = []

    def malloc_trim(self, pad: int) -> int:
        self.trims.append(time.monotonic())
        return 1


def test_a_burst_of_runs_is_trimmed_once_at_once_and_once_after_the_interval(monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(memory, "LIBC", libc)
    monkeypatch.setattr(memory, "TRIM_EVERY_S", 0.3)
    monkeypatch.setattr(memory, "_last_trim", -math.inf)
    monkeypatch.setattr(memory, "_pending", None)
    started = time.monotonic()
    for _ in range(5):
        memory.release_memory()
    assert len(libc.trims) == 1  # the first at once; the others wait for one timer
    deadline = time.monotonic() + 5
    while len(libc.trims) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(libc.trims) == 2 and libc.trims[1] - started >= 0.3
    time.sleep(0.4)
    assert len(libc.trims) == 2  # nothing more without a new run
    memory.release_memory()  # a run after the interval: trimmed at once
    assert len(libc.trims) == 3


def test_without_glibc_nothing_is_trimmed(monkeypatch):
    monkeypatch.setattr(memory, "LIBC", None)
    monkeypatch.setattr(memory, "_pending", None)
    memory.release_memory()
    assert memory._pending is None
