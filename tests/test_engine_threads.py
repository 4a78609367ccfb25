"""webapp.state.on_engine_thread: the engine runs on its own long-lived threads (PyTorch's CPU
thread pool stays warm), in the caller's context (Gradio's request and progress), and its
errors reach the caller."""

from __future__ import annotations

import contextvars
import os
import threading

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402

from webapp import config, state  # noqa: E402

REQUEST = contextvars.ContextVar("request", default="none")


def test_work_runs_on_an_engine_thread_in_the_caller_s_context():
    seen: list[tuple[str, str]] = []

    def work() -> str:
        seen.append((threading.current_thread().name, REQUEST.get()))
        return "done"

    REQUEST.set("visitor 1")
    assert state.on_engine_thread(work) == "done"
    assert state.on_engine_thread(work) == "done"
    (first, request), (second, _) = seen
    assert first.startswith("engine") and first != threading.current_thread().name
    assert first == second  # the thread used last, while it is free: its pool is warm
    assert request == "visitor 1"


def test_the_engine_s_error_reaches_the_caller_and_its_thread_is_free_again():
    def failing() -> None:
        raise ZeroDivisionError("stopped")

    with pytest.raises(ZeroDivisionError):
        state.on_engine_thread(failing)
    assert state._ENGINE_THREADS.qsize() == config.ENGINE_CONCURRENCY


def test_runs_at_once_each_get_a_thread_of_their_own():
    started = threading.Barrier(config.ENGINE_CONCURRENCY, timeout=10)
    names: list[str] = []

    def work() -> None:
        names.append(threading.current_thread().name)
        started.wait()  # all of them at once, or the barrier breaks

    callers = [threading.Thread(target=state.on_engine_thread, args=(work,)) for _ in range(config.ENGINE_CONCURRENCY)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(15)
    assert len(set(names)) == config.ENGINE_CONCURRENCY and not started.broken
