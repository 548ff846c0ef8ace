"""`POST /v1/explain`: the similarity of two items and its attribution per unit, over HTTP.

Body (JSON): exactly two items, each in the field of its modality: `text` (string), `image` /
`audio` (base64 or data URL), `sensor` (nested list or base64 `.npy`), or any other registered
modality; optional `method` (auto | ig | occlusion), `grid` (image cells per
side), `window_s` (audio window), `steps` (IG). Inputs go through `serve.inputs.read_item`, so a
string is never read as a server path. The work runs on the service's single encoder thread, so an
explanation never races an embedding call on the same towers.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from typing import Any, Literal, Optional

from fastapi import APIRouter, Request  # module level: FastAPI resolves the (string) annotation from here
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crossalign.modalities import modality, modality_names
from crossalign.serve.body import json_object
from crossalign.serve.errors import APIError
from crossalign.serve.inputs import read_item
from crossalign.serve.schemas import with_modality_fields
from crossalign.serve.service import Service

__all__ = ["ExplainOptions", "router"]

MAX_AUDIO_S = 30.0  # longest clip explained: each window costs one encoder call


class ExplainOptions(BaseModel):
    """Two items, in the fields of their modalities, and how to explain their similarity."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["auto", "ig", "occlusion"] = "auto"
    grid: Optional[int] = Field(None, ge=1, le=16, description="image cells per side")
    window_s: float = Field(0.25, ge=0.05, le=5.0, description="audio window in seconds")
    steps: int = Field(64, ge=2, le=256, description="integrated-gradients steps")


@lru_cache(maxsize=4)
def _request_model(names: tuple[str, ...]) -> type[BaseModel]:
    """The request body for the modalities registered now (keyed by their names)."""
    return with_modality_fields(ExplainOptions, "ExplainRequest")


def _parse(service: Service, body: Any) -> tuple[Any, list[tuple[str, Any]]]:
    if not isinstance(body, dict):
        raise APIError(400, "body must be a JSON object", None, "invalid_json")
    fields = modality_names()
    try:
        req = _request_model(fields).model_validate(body)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise APIError(400, f"{where}: {err['msg']}", where, "invalid_value") from None
    given = [f for f in fields if getattr(req, f) is not None]
    if len(given) != 2:
        raise APIError(
            400,
            f"give exactly two of {', '.join(fields)} (got {', '.join(given) or 'none'})",
            None,
            "invalid_query",
        )
    items = []
    for f in given:
        try:
            col = service.embedder.column_for(f)
        except ValueError as e:
            raise APIError(400, f"{f}: {e}", f, "unknown_modality") from None
        value = getattr(req, f)
        if modality(f).inline and len(value) > service.settings.max_text_chars:
            raise APIError(400, f"text longer than {service.settings.max_text_chars} characters", f)
        raw = read_item(f, value, f)
        if getattr(raw, "seconds", 0.0) > MAX_AUDIO_S:  # timed items (audio): one encoder call a window
            raise APIError(
                400,
                f"audio: {raw.seconds:.1f} s; explanations take clips up to {MAX_AUDIO_S:.0f} s",
                f,
                "too_long",
            )
        items.append((col, raw))
    return req, items


def router(service: Service, path: str = "/v1/explain") -> APIRouter:
    """`POST /v1/explain` on the service (registered in `serve.routes.ROUTES`)."""
    from crossalign.explain import explain_pair

    app = APIRouter()

    async def explain(request: Request) -> dict[str, Any]:
        body = await json_object(request)  # size, depth and surrogate checks, parsed off the loop
        loop = asyncio.get_running_loop()
        req, items = await service.read(_parse, service, body)  # bounded decodes, like every route

        def work() -> Any:
            for col, _ in items:
                service._searcher.check_encoder(col)  # noqa: SLF001 - same version check as embeddings
            return explain_pair(
                service.embedder,
                items[0],
                items[1],
                method=req.method,
                grid=req.grid,
                window_s=req.window_s,
                steps=req.steps,
            )

        try:
            ex = await loop.run_in_executor(service.executor, work)
        except ValueError as e:  # e.g. ig on a frozen tower, a sensor array of the wrong shape
            raise APIError(400, str(e), None, "invalid_value") from None
        return {
            "object": "explanation",
            "model": service.model_id,
            "views": [c for c, _ in items],
        } | ex.to_dict()

    app.add_api_route(
        path, explain, methods=["POST"], summary="Explain the similarity of two items", description=__doc__
    )
    return app
