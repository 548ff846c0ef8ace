"""Errors as OpenAI-style JSON (`{"error": {"message", "type", "param", "code"}}`), never an HTML 500.

Every route gets the same mapping for free: raise `APIError` for what the route checks itself; a
reader's `ReadError` becomes 400 (`LimitError` 413), too-deep input 400, a damaged index 503. The
`ErrorBoundary` middleware turns anything else into a logged 500 carrying an error id (the id is in
the log line with the traceback), and never drops the connection without an answer.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any, Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from crossalign.index import CorruptIndexError
from crossalign.modalities import LimitError, ReadError

__all__ = ["APIError", "install_error_handlers", "error_body", "ErrorBoundary", "from_read_error"]

log = logging.getLogger(__name__)


class APIError(Exception):
    """A client-facing error with its HTTP status."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_body(
    message: str, status: int, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _reply(e: APIError) -> JSONResponse:
    return JSONResponse(error_body(e.message, e.status, e.param, e.code), status_code=e.status)


def from_read_error(e: ReadError, param: str | None, modality: str | None = None) -> APIError:
    """A reader's refusal -> 413 (over a limit) or 400, naming the request field."""
    # Decoders' messages may name a BytesIO address: unstable across runs, useless to the client.
    reason = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "(uploaded bytes)", e.reason)
    where = f"{param}: " if param else ""
    if isinstance(e, LimitError):
        return APIError(413, f"{where}{reason}", param, "input_too_large")
    what = f"unreadable {modality}: " if modality and modality != "text" else ""
    return APIError(400, f"{where}{what}{reason}", param, f"invalid_{modality or 'value'}")


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api(_: Request, e: APIError) -> JSONResponse:
        return _reply(e)

    @app.exception_handler(ReadError)
    async def _read(_: Request, e: ReadError) -> JSONResponse:
        return _reply(from_read_error(e, e.column))

    @app.exception_handler(RecursionError)
    async def _deep(_: Request, e: RecursionError) -> JSONResponse:
        return _reply(APIError(400, "input is nested too deeply", None, "too_deep"))

    @app.exception_handler(CorruptIndexError)
    async def _corrupt(_: Request, e: CorruptIndexError) -> JSONResponse:
        log.error("index unusable: %s", e)
        return _reply(APIError(503, "the search index is damaged; the operator has been told (see the log)",
                               None, "index_unavailable"))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, e: RequestValidationError) -> JSONResponse:
        # OpenAI answers malformed requests with 400; FastAPI's default 422 list is hard to read.
        errs = e.errors()
        first = errs[0] if errs else {"loc": (), "msg": "invalid request"}
        where = _loc(tuple(first.get("loc", ())))
        msg = f"{where}: {first.get('msg')}" + (
            f" (and {len(errs) - 1} more problems)" if len(errs) > 1 else ""
        )
        return JSONResponse(error_body(msg, 400, where, "invalid_value"), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(e.detail), e.status_code), status_code=e.status_code)


Message = dict[str, Any]


class ErrorBoundary:
    """Outermost catch-all (ASGI middleware): an unexpected exception becomes a 500 JSON answer with
    an error id, logged with its traceback under that id. If the answer had already started (a
    stream), the body is ended cleanly instead of the connection being dropped mid-chunk."""

    def __init__(self, app: Callable[..., Awaitable[None]]):
        self.app = app

    async def __call__(self, scope: Message, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = {"started": False, "ended": False}

        async def tracked(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                state["started"] = True
            elif msg["type"] == "http.response.body" and not msg.get("more_body", False):
                state["ended"] = True
            await send(msg)

        try:
            await self.app(scope, receive, tracked)
        except Exception as e:  # noqa: BLE001 - this is the catch-all
            eid = uuid.uuid4().hex[:12]
            log.error("error %s on %s %s", eid, scope.get("method"), scope.get("path"), exc_info=e)
            try:
                if not state["started"]:
                    err = error_body(f"internal error {eid} ({type(e).__name__}); the server log has "
                                     "the details", 500, None, "internal_error")
                    err["error"]["id"] = eid
                    body = json.dumps(err).encode()
                    await send({"type": "http.response.start", "status": 500,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode())]})
                    await send({"type": "http.response.body", "body": body})
                elif not state["ended"]:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
            except Exception:  # the client is gone: nothing left to tell it
                pass
