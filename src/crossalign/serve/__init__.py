"""HTTP service over a trained run and an index: FastAPI + uvicorn. Nothing imports this package."""

from __future__ import annotations

import logging
from pathlib import Path

from crossalign.serve.app import create_app
from crossalign.serve.service import ServeSettings, Service

__all__ = ["create_app", "Service", "ServeSettings", "run_server"]

log = logging.getLogger(__name__)


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
