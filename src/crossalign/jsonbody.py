"""Parse untrusted JSON request bodies: depth-limited, lone surrogates refused, and — for large
bodies — in a separate process.

`json.loads` holds the GIL for its whole run (0.85 s for 10 MB of numbers here), so a worker
thread does not keep a server's event loop free. A large body is parsed in a small worker process
instead; the result comes back as `marshal` data (plain types only, produced by our own worker,
~5x faster to load than JSON). This module imports nothing heavy, so the worker starts light.
Errors are returned as values, not raised, so they cross the process boundary unchanged.
"""

from __future__ import annotations

import json
import marshal
import os
import re
import threading
import time
from typing import Any

__all__ = ["MAX_DEPTH", "parse", "parse_to_marshal", "check_depth", "BodyError", "exit_with_parent"]

MAX_DEPTH = 32  # deeper JSON than any request needs (a sensor array is 2-3 levels)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class BodyError(ValueError):
    """(code, message, param): a body that is not an acceptable JSON object."""

    def __init__(self, code: str, message: str, param: str | None = None):
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """Iterative walk (a recursive one is what a deep body would crash)."""
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, dict)):
            if d > limit:
                raise BodyError("too_deep", f"body nests deeper than {limit} levels")
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))


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
                raise BodyError("invalid_unicode", f"{where}: invalid Unicode (lone surrogate at character "
                                                   f"{e.start})", where) from None
        elif isinstance(v, dict):
            for k, c in v.items():
                stack.append((k, where))
                stack.append((c, k if where == "body" else f"{where}.{k}"))
        elif isinstance(v, list):
            stack.extend((c, f"{where}[{i}]") for i, c in enumerate(v))


def parse(raw: bytes) -> dict[str, Any]:
    """Body bytes -> a JSON object, or BodyError."""
    try:
        value = json.loads(raw or b"null")
    except RecursionError:  # json's C decoder raises this on ~100k nested brackets
        raise BodyError("too_deep", f"body nests deeper than {MAX_DEPTH} levels") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BodyError("invalid_json", f"body is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise BodyError("invalid_json", "body must be a JSON object")
    check_depth(value)
    if _SURROGATE_ESCAPE.search(raw):  # pairs (emoji) match too; only then walk the strings
        _check_surrogates(value)
    return value


def parse_to_marshal(raw: bytes) -> tuple[bool, Any]:
    """Worker-process entry: (True, marshal bytes of the object) or (False, (code, message, param))."""
    try:
        return True, marshal.dumps(parse(raw))
    except BodyError as e:
        return False, (e.code, e.message, e.param)


def exit_with_parent(parent: int, every_s: float = 1.0) -> None:
    """Worker-process initializer: exit as soon as `parent` is gone. A server killed hard (SIGKILL, OOM)
    never shuts its pool down, and its spawned parser would otherwise live on as an orphan."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
