"""webapp.queue_wakeup: Gradio's queue loop sleeps until there is work (an event pushed, a job
ended) instead of waking every millisecond, and requests still start at once."""

from __future__ import annotations

import asyncio
import os
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
from servers import running_app  # noqa: E402

from webapp import queue_wakeup  # noqa: E402
from webapp.queue_wakeup import WAKEABLE  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_idle_sleep_ends_on_a_wake_up_and_other_sleeps_are_asyncio_s(monkeypatch):
    monkeypatch.setattr(queue_wakeup, "IDLE_CHECK_S", 2.0)

    async def scenario() -> dict[str, float]:
        loop = asyncio.get_running_loop()
        WAKEABLE.wake()  # news from before the loop looked for work: already seen, ignored
        begin = loop.time()
        sleeper = asyncio.create_task(WAKEABLE.sleep(2.0))
        await asyncio.sleep(0.1)
        WAKEABLE.wake()
        await sleeper
        woken = loop.time() - begin
        begin = loop.time()
        await WAKEABLE.sleep(0.3)  # not the idle sleep: asyncio's, whatever wakes
        other = loop.time() - begin
        begin = loop.time()
        await WAKEABLE.sleep(2.0)  # nobody wakes it: the whole of it
        return {"woken": woken, "other": other, "alone": loop.time() - begin}

    times = asyncio.run(scenario())
    assert 0.1 <= times["woken"] < 1.0
    assert 0.3 <= times["other"] < 1.0
    assert times["alone"] >= 2.0
    assert WAKEABLE.gather is asyncio.gather and WAKEABLE.Lock is asyncio.Lock  # the rest is asyncio


def test_a_wrapped_method_wakes_the_loop_when_it_returns_or_fails(monkeypatch):
    woken: list[str] = []
    monkeypatch.setattr(WAKEABLE, "wake", lambda: woken.append("wake"))

    async def push(value: int) -> int:
        woken.append("push")
        return value * 2

    async def failing() -> None:
        raise RuntimeError("stopped")

    assert asyncio.run(queue_wakeup._then_wake(push)(21)) == 42
    with pytest.raises(RuntimeError):
        asyncio.run(queue_wakeup._then_wake(failing)())
    assert woken == ["push", "wake", "wake"]


def test_the_app_s_queue_sleeps_when_idle_and_starts_a_request_at_once(monkeypatch):
    """With the idle sleep at 30 s, an idle server's queue loop hardly wakes (Gradio's own:
    every millisecond), and an API request is still answered in seconds: its push woke the
    loop."""
    from gradio_client import Client, handle_file

    import app

    monkeypatch.setattr(queue_wakeup, "IDLE_CHECK_S", 30.0)
    sleeps: list[float] = []
    sleep = WAKEABLE.sleep

    async def counted(delay: float, result: object = None) -> object:
        sleeps.append(delay)
        return await sleep(delay, result)

    monkeypatch.setattr(WAKEABLE, "sleep", counted)
    demo = app.build_app()
    assert demo._queue.sleep_when_free == 30.0
    with running_app(demo) as url:
        client = Client(url, verbose=False)
        time.sleep(1.0)
        idle, progress = sleeps.count(30.0), sleeps.count(queue_wakeup.PROGRESS_EVERY_S)
        time.sleep(1.0)
        assert sleeps.count(30.0) - idle <= 1  # the queue loop's idle sleeps (Gradio's own: ~1,000 a second)
        assert 3 <= sleeps.count(queue_wakeup.PROGRESS_EVERY_S) - progress <= 12  # its progress loop (Gradio's: 100)
        begin = time.monotonic()
        maps, *_ = client.predict(
            image=handle_file(os.path.join(ROOT, "assets", "cat_and_coffee.jpg")),
            methods=["gradcam"],
            top_k=1,
            api_name="/explain",
        )
        assert "<table" in maps and time.monotonic() - begin < 20.0  # not the 30 s idle sleep
        client.close()
