"""`POST /v1/ask` for the HTTP service. The route lives in `crossalign.serve.routes.ask`; this
keeps `add_ask_route(app, bridge)` for code that mounts it on its own FastAPI app."""

from __future__ import annotations

from typing import Any

from crossalign.bridge.model import Bridge

__all__ = ["add_ask_route", "ASK_MODALITIES"]

ASK_MODALITIES = ("image", "audio", "sensor")


def add_ask_route(app: Any, bridge: Bridge, path: str = "/v1/ask") -> None:
    """Register `POST /v1/ask` on a FastAPI app, answering with `bridge`."""
    from crossalign.serve.routes.ask import ask_router  # the server imports the bridge, not the reverse

    app.include_router(ask_router(bridge, path=path))
