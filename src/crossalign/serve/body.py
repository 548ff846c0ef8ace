"""Request bodies, parsed the same way for every route: off the event loop (large bodies in a
worker process, see `crossalign.jsonbody`), depth-limited, validated against a pydantic model,
every failure a 4xx with the field named."""

from __future__ import annotations

import asyncio
import logging
import marshal
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from crossalign import jsonbody
from crossalign.jsonbody import MAX_DEPTH, BodyError
from crossalign.serve.errors import APIError

__all__ = ["content_type", "json_object", "validate", "MAX_DEPTH", "check_depth", "close_parsers"]

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
PROCESS_BYTES = 256 * 1024  # bodies this large are parsed in the worker process
_pool: ProcessPoolExecutor | None = None


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _api(e: BodyError) -> APIError:
    return APIError(400, e.message, e.param, e.code)


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    try:
        jsonbody.check_depth(value, limit)
    except BodyError as e:
        raise _api(e) from None


def _parse_inline(raw: bytes) -> dict[str, Any]:
    try:
        return jsonbody.parse(raw)
    except BodyError as e:
        raise _api(e) from None


def _parser() -> ProcessPoolExecutor:
    global _pool
    if _pool is None:  # spawn: the server has threads and torch; forking it is unsafe
        _pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=jsonbody.exit_with_parent, initargs=(os.getpid(),))
    return _pool


def close_parsers() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


async def json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object. `json.loads` holds the GIL for its whole run (0.85 s for 10 MB of
    numbers), so a large body is parsed in a worker process; a small one on a worker thread."""
    raw = await request.body()
    if len(raw) < PROCESS_BYTES:
        return await run_in_threadpool(_parse_inline, raw)
    try:
        ok, out = await asyncio.get_running_loop().run_in_executor(_parser(), jsonbody.parse_to_marshal, raw)
    except (BrokenProcessPool, OSError) as e:  # the worker died (OOM, killed): parse here instead
        log.warning("JSON worker process unavailable (%s); parsing in the server", e)
        close_parsers()
        return await run_in_threadpool(_parse_inline, raw)
    if not ok:
        code, message, param = out
        raise APIError(400, message, param, code)
    return marshal.loads(out)  # our own worker's output, plain types only: ~5x faster than JSON


def validate(model: type[M], raw: dict[str, Any]) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        errs = e.errors()
        err = errs[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        more = f" (and {len(errs) - 1} more problems)" if len(errs) > 1 else ""
        raise APIError(400, f"{where}: {err['msg']}{more}", where, "invalid_value") from None
