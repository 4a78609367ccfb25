"""Limits on what a web request may send, applied before Gradio sees it (an ASGI middleware).

- JSON (and any other non-upload) request bodies: at most ``max_body_bytes``; Gradio keeps the
  last value of every input of a session, so an unbounded body is unbounded memory. Uploads go
  to Gradio's upload route, which ``launch(max_file_size=...)`` limits per file.
- Routes the app does not use and that cost the server: ``deep_link`` (writes a session's values
  to disk, never deleted) and ``file=http(s)://`` (makes the server fetch any public URL).
- After every upload, ``after_upload`` runs (off the event loop): the app trims its scratch
  folder there (as after every drawing), so uploads alone cannot fill the disk (at most the cap
  plus the uploads in flight).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
from starlette.responses import JSONResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

UPLOAD_SUFFIX = "/upload"
BLOCKED = ("/deep_link", "/file=http:", "/file=https:", "/file=//")


class _TooLarge(Exception):
    pass


class RequestLimits:
    """Pure ASGI middleware: body size cap, blocked routes, a hook after each upload."""

    def __init__(
        self, app: Callable[..., Awaitable[None]], max_body_bytes: int, after_upload: Callable[[], Any] | None = None
    ) -> None:
        self.app, self.max_body_bytes, self.after_upload = app, max_body_bytes, after_upload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"].lower()
        if any(blocked in path for blocked in BLOCKED):
            return await JSONResponse({"detail": "Not available on this server."}, 404)(scope, receive, send)
        if path.endswith(UPLOAD_SUFFIX):
            await self.app(scope, receive, send)
            if self.after_upload is not None:
                await anyio.to_thread.run_sync(self.after_upload)
            return None
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        return await self._limited(scope, receive, send)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        too_large = JSONResponse(
            {
                "detail": f"The request is larger than {self.max_body_bytes // 1024} KiB. Send "
                "images as uploads (gradio_client's handle_file()), not in the request."
            },
            413,
        )
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            return await too_large(scope, receive, send)
        seen, started = 0, False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise _TooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge:
            if not started:
                await too_large(scope, receive, send)
        return None
