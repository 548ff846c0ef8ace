"""The service's routes, one module each, registered by name.

A route module exposes `router(service) -> APIRouter | None` (None: the route does not apply to
this server, e.g. /v1/ask without a bridge). Routes parse bodies with `serve.body`, decode inputs
with `service.read(read_item, ...)` and raise `APIError` / `ReadError`: `serve.errors` turns those
(and anything unexpected) into JSON answers, so a new route gets the same handling for free.
Adding a route = a module here + one line below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from fastapi import APIRouter

from crossalign.serve.routes import ask, embeddings, explain, meta, search

if TYPE_CHECKING:
    from crossalign.serve.service import Service

__all__ = ["ROUTES"]

ROUTES: dict[str, Callable[["Service"], Optional[APIRouter]]] = {
    "meta": meta.router,  # GET /health, GET /v1/models
    "embeddings": embeddings.router,  # POST /v1/embeddings
    "search": search.router,  # POST /v1/search
    "ask": ask.router,  # POST /v1/ask (with a bridge)
    "explain": explain.router,  # POST /v1/explain
}
