"""GET /health and GET /v1/models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from crossalign.serve.schemas import HealthResponse

if TYPE_CHECKING:
    from crossalign.serve.service import Service


def router(service: "Service") -> APIRouter:
    r = APIRouter()
    s = service.settings

    @r.get("/health", response_model=HealthResponse)
    async def health() -> dict[str, Any]:
        # A reload verifies files: off the loop. It never raises: a damaged newer generation is
        # logged and the last good one keeps serving.
        ix = await run_in_threadpool(service.index)
        return {
            "status": "ok",
            "model": service.model_id,
            "run_id": service.identity.run_id,
            "dim": service.embedder.model.out_dim,
            "views": service.embedder.modalities,
            "index": None
            if ix is None
            else {
                "items": len(ix),
                "by_modality": ix.modalities(),
                "generation": ix.generation,
                "kind": ix.params.kind,
            },
            "batching": {
                "max_batch": s.max_batch,
                "wait_ms": s.batch_wait_ms,
                "encoder_calls": service.batcher.batches,
                "items": service.batcher.items,
            },
        }

    @r.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": service.model_id, "object": "model", "created": 0, "owned_by": "crossalign"}],
        }

    return r
