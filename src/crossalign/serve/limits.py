"""Refuse oversize request bodies before they are read into memory (ASGI middleware)."""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from crossalign.serve.errors import APIError

__all__ = ["BodySizeLimit", "BodyTooLarge"]

Scope = dict[str, Any]
Message = dict[str, Any]


class BodyTooLarge(APIError):
    """Raised from `receive` when a chunked body grows past the limit: whatever part of a route was
    reading it (JSON, multipart) answers 413 through the APIError handler."""

    def __init__(self, max_bytes: int):
        super().__init__(413, _message(max_bytes), None, "payload_too_large")


def _message(max_bytes: int) -> str:
    return f"request body exceeds the server's limit of {max_bytes / (1024 * 1024):g} MB (serve --max-upload-mb)"


class BodySizeLimit:
    """413 when Content-Length exceeds `max_bytes`, or when a chunked body grows past it."""

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def _reject(self, send: Callable[[Message], Awaitable[None]]) -> None:
        body = json.dumps(
            {
                "error": {
                    "message": _message(self.max_bytes),
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "payload_too_large",
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    too_big = int(v) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(send)
                    return
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return msg

        async def tracked_send(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await self._reject(send)
