"""Request bodies, parsed the same way for every route: off the event loop, depth-limited,
validated against a pydantic model, every failure a 4xx with the field named."""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from crossalign.serve.errors import APIError

__all__ = ["content_type", "json_object", "validate", "MAX_DEPTH", "check_depth"]

MAX_DEPTH = 32  # deeper JSON than any request needs (a sensor array is 2-3 levels)
M = TypeVar("M", bound=BaseModel)


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """Raise APIError(400) when `value` nests lists/objects deeper than `limit` (iterative: a
    recursive walk is what a deep body would crash)."""
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, dict)):
            if d > limit:
                raise APIError(400, f"body nests deeper than {limit} levels", None, "too_deep")
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _check_surrogates(value: Any) -> None:
    """A lone surrogate ("\\ud800") parses as JSON but is not text: tokenizers raise on it and the
    answer could not even quote it back. Refuse it naming the field."""
    stack: list[tuple[Any, str]] = [(value, "body")]
    while stack:
        v, where = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError as e:
                raise APIError(400, f"{where}: invalid Unicode (lone surrogate at character {e.start})",
                               where, "invalid_unicode") from None
        elif isinstance(v, dict):
            for k, c in v.items():
                stack.append((k, where))
                stack.append((c, k if where == "body" else f"{where}.{k}"))
        elif isinstance(v, list):
            stack.extend((c, f"{where}[{i}]") for i, c in enumerate(v))


def _parse(raw: bytes) -> Any:
    try:
        value = json.loads(raw or b"null")
    except RecursionError:  # json's C decoder raises this on ~100k nested brackets
        raise APIError(400, f"body nests deeper than {MAX_DEPTH} levels", None, "too_deep") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise APIError(400, f"body is not valid JSON: {e}", None, "invalid_json") from None
    if not isinstance(value, dict):
        raise APIError(400, "body must be a JSON object", None, "invalid_json")
    check_depth(value)
    if _SURROGATE_ESCAPE.search(raw):  # pairs (emoji) match too; only then walk the strings
        _check_surrogates(value)
    return value


async def json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object. Parsing a 10 MB body takes ~0.5 s: it runs on a worker thread so
    the event loop keeps answering other clients meanwhile."""
    raw = await request.body()
    return await run_in_threadpool(_parse, raw)


def validate(model: type[M], raw: dict[str, Any]) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        errs = e.errors()
        err = errs[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        more = f" (and {len(errs) - 1} more problems)" if len(errs) > 1 else ""
        raise APIError(400, f"{where}: {err['msg']}{more}", where, "invalid_value") from None
