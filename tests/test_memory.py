"""webapp.memory: glibc is set up once (arenas capped, no automatic trim), and the memory runs
free goes back to the system once the server is idle, and only now and then while it is busy."""

from __future__ import annotations

import math
import time

import pytest

from webapp import memory


class FakeLibc:
    def __init__(self) -> None:
        self.trims: list[float] = []
        self.options: dict[int, int] = {}

    def malloc_trim(self, pad: int) -> int:
        self.trims.append(time.monotonic())
        return 1

    def mallopt(self, parameter: int, value: int) -> int:
        self.options[parameter] = value
        return 1


@pytest.fixture
def libc(monkeypatch):
    fake = FakeLibc()
    monkeypatch.setattr(memory, "LIBC", fake)
    monkeypatch.setattr(memory, "IDLE_S", 0.3)
    monkeypatch.setattr(memory, "BUSY_TRIM_S", 60.0)
    monkeypatch.setattr(memory, "_last_run_end", -math.inf)
    monkeypatch.setattr(memory, "_last_trim", time.monotonic())  # a trim just now
    monkeypatch.setattr(memory, "_pending", None)
    return fake


def wait_for(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_runs_in_a_row_are_trimmed_once_when_the_server_is_idle(libc):
    started = time.monotonic()
    for _ in range(4):  # a busy server: a run ends every 0.2 s, closer than IDLE_S
        memory.release_memory()
        last = time.monotonic()
        time.sleep(0.2)
        assert libc.trims == []  # nothing given back while runs go on
    wait_for(lambda: libc.trims)
    assert len(libc.trims) == 1 and libc.trims[0] - last >= 0.3 and libc.trims[0] - started >= 0.9
    time.sleep(0.5)
    assert len(libc.trims) == 1  # nothing more without a new run
    memory.release_memory()  # a later run: trimmed again once idle
    wait_for(lambda: len(libc.trims) == 2)
    assert len(libc.trims) == 2 and memory._pending is None


def test_a_busy_server_is_trimmed_once_per_interval(libc, monkeypatch):
    monkeypatch.setattr(memory, "BUSY_TRIM_S", 0.5)
    monkeypatch.setattr(memory, "IDLE_S", 60.0)  # never idle here
    before = memory._last_trim
    for _ in range(13):  # a run ends every 0.1 s for 1.3 s
        memory.release_memory()
        time.sleep(0.1)
    assert len(libc.trims) == 2  # at the first run ending 0.5 s after the trim before, twice
    assert all(0.5 <= b - a < 0.8 for a, b in zip([before, *libc.trims], libc.trims))


def test_tune_malloc_caps_arenas_and_stops_the_automatic_trim(libc, monkeypatch):
    for name in ("MALLOC_ARENA_MAX", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    assert all(memory.tune_malloc().values())
    assert libc.options == {
        memory.M_ARENA_MAX: memory.ARENAS,
        memory.M_TRIM_THRESHOLD: memory.KEEP_FREED_BYTES,
        memory.M_MMAP_THRESHOLD: memory.OWN_MAPPING_BYTES,
    }


def test_tune_malloc_leaves_what_the_host_chose(libc, monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    applied = memory.tune_malloc()
    assert applied["MALLOC_ARENA_MAX"] is False and memory.M_ARENA_MAX not in libc.options


def test_without_glibc_nothing_is_set_or_trimmed(monkeypatch):
    monkeypatch.setattr(memory, "LIBC", None)
    monkeypatch.setattr(memory, "_pending", None)
    assert not any(memory.tune_malloc().values())
    memory.release_memory()
    assert memory._pending is None
