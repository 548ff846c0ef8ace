"""The FastAPI app: error handling and limits around the routes of `serve.routes.ROUTES`."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from crossalign import __version__
from crossalign.serve.body import close_parsers
from crossalign.serve.errors import ErrorBoundary, install_error_handlers
from crossalign.serve.limits import BodySizeLimit
from crossalign.serve.routes import ROUTES
from crossalign.serve.service import Service

__all__ = ["create_app"]


def create_app(service: Service) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(service.warm_up)
        yield
        await service.batcher.close()
        service.close()
        close_parsers()

    app = FastAPI(
        title="crossalign",
        version=__version__,
        lifespan=lifespan,
        description="Embeddings (OpenAI-compatible) and cross-modal search over a crossalign index.",
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=service.settings.max_upload_bytes)
    app.add_middleware(ErrorBoundary)  # added last = outermost: catches what everything inside missed
    for make in ROUTES.values():
        router = make(service)
        if router is not None:
            app.include_router(router)
    return app
