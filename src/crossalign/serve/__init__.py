"""HTTP service over a trained run and an index: FastAPI + uvicorn. Nothing imports this package."""

from __future__ import annotations

import logging
from pathlib import Path

from crossalign.serve.app import create_app
from crossalign.serve.service import ServeSettings, Service

__all__ = ["create_app", "Service", "ServeSettings", "run_server"]

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc mallopt parameter


def limit_malloc_arenas(n: int = 2) -> bool:
    """Cap glibc's malloc arenas for this process. Every worker thread that decodes an upload gets
    its own arena by default (8 per core), and each keeps the pages it freed: under 16 clients the
    server's RSS crept ~250 MB in 60 s and kept creeping; with 2 arenas it levelled off ~110 MB
    above idle (benchmarks/load.py). Respects MALLOC_ARENA_MAX when the user set it. Returns
    whether the cap was applied (not on other C libraries)."""
    import ctypes
    import os
    import sys

    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, n))
    except (OSError, AttributeError):  # musl and others: no mallopt, nothing to cap
        return False


def run_server(
    run: str | Path,
    index: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServeSettings | None = None,
    log_level: str = "info",
    bridge: str | Path | None = None,
) -> None:
    """Load the run (and index), then serve until interrupted. A language-model bridge (`bridge`,
    or `RUN/bridge` when it exists) adds `POST /v1/ask`."""
    import uvicorn

    limit_malloc_arenas()  # before the service starts its threads
    loaded = None
    bridge_dir = Path(bridge) if bridge else Path(run) / "bridge"
    if bridge or (bridge_dir / "bridge.json").exists():
        from crossalign.bridge import find_bridge
        from crossalign.bridge.model import Bridge

        loaded = Bridge.load(find_bridge(bridge_dir))
        log.info("POST /v1/ask answers with the bridge in %s", bridge_dir)
    app = create_app(Service(run, index, settings, bridge=loaded))
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "listening on %s: the service has no authentication; put it behind a proxy that has", host
        )
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_keep_alive=30)
