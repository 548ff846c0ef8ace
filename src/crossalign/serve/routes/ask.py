"""POST /v1/ask, present when the server has a language-model bridge.

Body (JSON): exactly one of `image` / `audio` (base64 or data URL) / `sensor` (nested list or
base64 `.npy`) / any other registered modality but text, or `input` as a data URL; optional `question` (default: describe), `stream`
(server-sent events: `data: {"delta": ...}` lines, then `data: [DONE]`) and `max_tokens`.
Reply: `{"answer", "modality", "question"}`. Everything that can be wrong with the input —
decoding, the encoder refusing a shape — is checked before the answer starts, so a bad input is
a 4xx even with `stream: true`; a failure while generating ends the stream with an `error` event.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from typing import TYPE_CHECKING, Any, Iterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from crossalign.serve.body import json_object
from crossalign.serve.errors import APIError
from crossalign.serve.inputs import parse_data_url, read_item

if TYPE_CHECKING:
    from crossalign.serve.service import Service

__all__ = ["router", "ask_router", "add_ask_route"]

log = logging.getLogger(__name__)


def _parse(bridge: Any, body: dict[str, Any]) -> tuple[str, Any, str, bool, int | None]:
    from crossalign.bridge import ask_modalities
    from crossalign.bridge.prompts import CAPTION_PROMPT

    kinds = ask_modalities()
    given = [m for m in (*kinds, "input") if body.get(m) is not None]
    if len(given) != 1:
        raise APIError(400, f"give exactly one of {', '.join(kinds)} or input (got {given or 'none'})",
                       None, "invalid_request")
    key = given[0]
    value = body[key]
    modality = key
    if key == "input":
        parsed = parse_data_url(value) if isinstance(value, str) else None
        if parsed is None:
            raise APIError(400, "input: expected a data URL (data:image/png;base64,...)", "input", "invalid_request")
        modality = parsed[0]
    try:
        col = bridge.embedder.column_for(modality)
    except ValueError as e:
        raise APIError(400, f"{key}: {e}", key, "unknown_modality") from None
    q = body.get("question") or CAPTION_PROMPT
    if not isinstance(q, str) or len(q) > 500:
        raise APIError(400, "question: a string of at most 500 characters", "question", "invalid_request")
    mt = body.get("max_tokens")
    if mt is not None and (isinstance(mt, bool) or not isinstance(mt, int) or not 1 <= mt <= 256):
        raise APIError(400, "max_tokens: an integer in 1..256", "max_tokens", "invalid_request")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise APIError(400, "stream: true or false", "stream", "invalid_request")
    raw = read_item(bridge.embedder.modalities[col], value, key)
    return col, raw, q, stream, mt


def ask_router(bridge: Any, service: "Service | None" = None, path: str = "/v1/ask") -> APIRouter:
    """The /v1/ask route answering with `bridge`; decodes go through `service` when given."""
    r = APIRouter()
    lock = threading.Lock()  # one generation at a time: the LM is not re-entrant on shared caches

    def embed(col: str, raw: Any, param: str) -> Any:
        try:
            with lock:
                return bridge.embedder.embed_raw(col, [raw])[0]
        except ValueError as e:  # e.g. a sensor array of the wrong shape: the client's input
            raise APIError(400, f"{param}: {e}", param, "invalid_value") from None

    @r.post(path)
    async def ask(request: Request) -> Any:
        body = await json_object(request)
        args = (_parse, bridge, body)
        col, raw, q, stream, mt = await (service.read(*args) if service else run_in_threadpool(*args))
        z = await run_in_threadpool(embed, col, raw, col)  # before any byte of the answer is sent

        def pieces() -> Iterator[str]:
            with lock:
                yield from bridge.stream(z, q, mt)

        if stream:
            def sse() -> Iterator[str]:
                try:
                    for p in pieces():
                        yield f"data: {json.dumps({'delta': p})}\n\n"
                except Exception as e:  # noqa: BLE001 - the 200 is sent: end the stream with an error
                    eid = uuid.uuid4().hex[:12]
                    log.error("error %s while streaming /v1/ask", eid, exc_info=e)
                    yield f"data: {json.dumps({'error': {'message': f'generation failed ({eid})', 'id': eid}})}\n\n"
                yield "data: [DONE]\n\n"
            return StreamingResponse(sse(), media_type="text/event-stream")
        answer = await run_in_threadpool(lambda: "".join(pieces()).strip())
        return {"answer": answer, "modality": col, "question": q}

    return r


def router(service: "Service") -> APIRouter | None:
    return ask_router(service.bridge, service) if service.bridge is not None else None


def add_ask_route(app: Any, bridge: Any, path: str = "/v1/ask") -> None:
    """Register `POST /v1/ask` on any FastAPI app (with crossalign's error handlers), answering with `bridge`."""
    app.include_router(ask_router(bridge, path=path))
