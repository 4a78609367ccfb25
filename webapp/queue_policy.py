"""Fair use of the engine queue: a share of it per session and per client address, engine slots that a cancelled run
keeps until it really stops, and a way for a running handler to see that its client has gone.

Gradio frees a cancelled event's concurrency slot at once, while the handler's thread runs on;
closing the page marks the event not ``alive`` but does not stop the thread either. Handlers
call :func:`client_gone` from their progress callbacks and stop; :data:`ENGINE_SLOTS`-style
semaphores bound what runs, whatever Gradio believes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gradio.context import LocalContext

BUSY_SESSION = (
    "You already have {count} requests waiting or running; please wait for them to finish (at most {limit} at a time)."
)
BUSY_ADDRESS = "Too many requests from your network are waiting or running ({count}); please try again in a moment."


class ClientGone(Exception):
    """The visitor closed the page or cancelled: the run stops, nobody is left to tell."""


def client_key(request: Any) -> str:
    """Who a request comes from: its client address (uvicorn applies X-Forwarded-For only for
    trusted proxies, FORWARDED_ALLOW_IPS)."""
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "unknown"


def limit_per_client(
    queue: Any, per_session: int, per_address: int, address: Callable[[Any], str] = client_key
) -> None:
    """Refuse a request to join ``queue`` (a gradio Queue, after demo.queue()) while its session
    has ``per_session`` events waiting or running, or its client address ``per_address`` (a
    client that makes new sessions still gets no more; a classroom behind one address still
    gets in). The refusal reaches the client as a message."""
    original = queue.push

    async def push(body: Any, request: Any, username: Any = None) -> tuple:
        events = list(queue.event_ids_to_events.values())
        session = getattr(body, "session_hash", None)
        mine = sum(event.session_hash == session for event in events) if session else 0
        if mine >= per_session:
            return False, BUSY_SESSION.format(count=mine, limit=per_session), "error"
        where = address(request)
        near = sum(address(event.request) == where for event in events)
        if near >= per_address:
            return False, BUSY_ADDRESS.format(count=near), "error"
        return await original(body=body, request=request, username=username)

    queue.push = push


def client_gone() -> bool:
    """True inside a queued Gradio handler whose client has disconnected or cancelled; False
    elsewhere (direct Python calls, unqueued events)."""
    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    queue = getattr(blocks, "_queue", None)
    if queue is None or event_id is None:
        return False
    event = queue.event_ids_to_events.get(event_id)
    return event is None or not event.alive


def stop_if_client_gone() -> None:
    """Raise ClientGone when :func:`client_gone`."""
    if client_gone():
        raise ClientGone()
