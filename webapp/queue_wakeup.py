"""Gradio's queue woken when there is work, instead of looking for it every millisecond.

Gradio's queue loop (``gradio.queueing.Queue.start_processing``) sleeps ``sleep_when_free``
seconds whenever it has nothing to start: 1 ms on Linux, so a thousand wake-ups a second,
busy or not. Each takes the GIL and a core: about 10 % of a core on an idle server, and on the
2-core host the default request's engine took 72 ms instead of 57 ms inside the server. Here
that sleep ends as soon as one of the two things it waits for happens (an event joins the
queue; a job ends and frees its slot), and otherwise after IDLE_CHECK_S, so a wake-up that
went missing would cost at most that. Nothing else in Gradio changes: its other sleeps, and
every other name of ``asyncio`` that ``gradio.queueing`` uses, are asyncio's own.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from gradio import queueing

IDLE_CHECK_S = 0.25  # the loop's longest sleep when nothing wakes it
PROGRESS_EVERY_S = 0.1  # Gradio's progress loop sends pending progress this often (its own: 10 ms)


class _WakeableAsyncio:
    """``gradio.queueing``'s view of asyncio: ``sleep(IDLE_CHECK_S)`` (the queue loop's idle
    sleep, once install() has set it) waits for wake() or the timeout; the rest is asyncio."""

    def __init__(self) -> None:
        self._signals: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Event] = weakref.WeakKeyDictionary()

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    def signal(self) -> asyncio.Event:
        """The wake-up signal of the running event loop (one per server)."""
        loop = asyncio.get_running_loop()
        if loop not in self._signals:
            self._signals[loop] = asyncio.Event()
        return self._signals[loop]

    async def sleep(self, delay: float, result: Any = None) -> Any:
        """asyncio.sleep, but the queue loop's idle sleep ends early on wake()."""
        if delay != IDLE_CHECK_S:
            return await asyncio.sleep(delay, result)
        signal = self.signal()
        signal.clear()  # the loop looked for work just now (no await since): only later news counts
        try:
            await asyncio.wait_for(signal.wait(), delay)
        except TimeoutError:
            pass
        return result

    def wake(self) -> None:
        """Wake the running event loop's queue loop (called on that loop)."""
        self.signal().set()


WAKEABLE = _WakeableAsyncio()


def _then_wake(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """``method`` (a coroutine function), waking the queue loop once it has returned."""

    @functools.wraps(method)
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        finally:
            WAKEABLE.wake()

    return wrapped


def install(queue: Any) -> None:
    """Make ``queue`` (a gradio Queue, after demo.queue(), before launch) sleep until there is
    work: its loop's idle sleep becomes IDLE_CHECK_S, ended early when an event is pushed or a
    job ends. Its progress loop, which also polls (every 10 ms), looks every PROGRESS_EVERY_S
    (the page's progress bar is updated at most every 0.25 s anyway)."""
    queueing.asyncio = WAKEABLE  # type: ignore[assignment]  # gradio.queueing's module global
    queue.sleep_when_free = IDLE_CHECK_S
    queue.progress_update_sleep_when_free = PROGRESS_EVERY_S
    queue.push = _then_wake(queue.push)
    queue.process_events = _then_wake(queue.process_events)
