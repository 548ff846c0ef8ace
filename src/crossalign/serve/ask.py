"""`POST /v1/ask` for the HTTP service: mount with `add_ask_route(app, bridge)`.

Body (JSON): exactly one of `image` / `audio` (base64 or data URL) / `sensor` (nested list or
base64 `.npy`), or `input` as a data URL; optional `question` (default: describe), `stream`
(server-sent events: `data: {"delta": ...}` lines, then `data: [DONE]`) and `max_tokens`.
Reply: `{"answer", "modality", "question"}`. Inputs are decoded by the service's own
`serve.inputs.read_item`, so strings are never read as server paths.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from fastapi import Request  # module level: FastAPI resolves the (string) annotation from these globals

from crossalign.bridge.model import Bridge
from crossalign.bridge.prompts import CAPTION_PROMPT
from crossalign.serve.errors import APIError
from crossalign.serve.inputs import parse_data_url, read_item

__all__ = ["add_ask_route", "ASK_MODALITIES"]

ASK_MODALITIES = ("image", "audio", "sensor")


def _parse(bridge: Bridge, body: Any) -> tuple[str, Any, str, bool, int | None]:
    if not isinstance(body, dict):
        raise APIError(400, "body must be a JSON object", None, "invalid_request")
    given = [m for m in (*ASK_MODALITIES, "input") if body.get(m) is not None]
    if len(given) != 1:
        raise APIError(400, f"give exactly one of {', '.join(ASK_MODALITIES)} or input (got {given or 'none'})",
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
    raw = read_item(bridge.embedder.modalities[col], value, key)
    q = body.get("question") or CAPTION_PROMPT
    if not isinstance(q, str) or len(q) > 500:
        raise APIError(400, "question: a string of at most 500 characters", "question", "invalid_request")
    mt = body.get("max_tokens")
    if mt is not None and (not isinstance(mt, int) or not 1 <= mt <= 256):
        raise APIError(400, "max_tokens: an integer in 1..256", "max_tokens", "invalid_request")
    return col, raw, q, bool(body.get("stream", False)), mt


def add_ask_route(app: Any, bridge: Bridge, path: str = "/v1/ask") -> None:
    """Register `POST /v1/ask` on a FastAPI app, answering with `bridge`."""
    import threading

    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import StreamingResponse

    lock = threading.Lock()  # one generation at a time: the LM is not re-entrant on shared caches

    @app.post(path)
    async def ask(request: Request) -> Any:

        try:
            body = await request.json()
        except ValueError:
            raise APIError(400, "body is not valid JSON", None, "invalid_json") from None
        col, raw, q, stream, mt = await run_in_threadpool(_parse, bridge, body)

        def pieces() -> Iterator[str]:
            with lock:
                z = bridge.embedder.embed_raw(col, [raw])[0]
                yield from bridge.stream(z, q, mt)

        if stream:
            def sse() -> Iterator[str]:
                for p in pieces():
                    yield f"data: {json.dumps({'delta': p})}\n\n"
                yield "data: [DONE]\n\n"
            return StreamingResponse(sse(), media_type="text/event-stream")
        answer = await run_in_threadpool(lambda: "".join(pieces()).strip())
        return {"answer": answer, "modality": col, "question": q}
