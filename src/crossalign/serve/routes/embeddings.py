"""POST /v1/embeddings: OpenAI-compatible, plus images, audio and sensor arrays (a documented extension)."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import APIRouter, Request

from crossalign.modalities import modality as registered
from crossalign.serve.body import json_object, validate
from crossalign.serve.errors import APIError
from crossalign.serve.inputs import parse_data_url, read_item
from crossalign.serve.schemas import EmbeddingsRequest, EmbeddingsResponse

if TYPE_CHECKING:
    from crossalign.serve.service import Service

__all__ = ["router", "column", "embed"]


def column(svc: "Service", name: str, param: str) -> str:
    try:
        return svc.embedder.column_for(name)
    except ValueError as e:
        raise APIError(400, f"{param}: {e}", param, "unknown_modality") from None


def _resolve_input(svc: "Service", value: Any, default: str | None, param: str) -> tuple[str, Any]:
    """One /v1/embeddings input -> (view column, raw item)."""
    if (
        isinstance(value, bool)
        or isinstance(value, (int, float))
        or (isinstance(value, list) and value and all(isinstance(v, int) for v in value))
    ):
        raise APIError(
            400, f"{param}: token-id inputs are not supported; send text", param, "unsupported_input"
        )
    if isinstance(value, dict):
        if "type" in value:
            kind, data = value.get("type"), value.get("data", value.get(value.get("type", ""), None))
        elif len(value) == 1:
            ((kind, data),) = value.items()
        else:
            raise APIError(400, f'{param}: an object input is {{"type": MODALITY, "data": ...}}', param)
        if not isinstance(kind, str):
            raise APIError(400, f"{param}: 'type' must be a modality name", param, "unknown_modality")
        col = column(svc, kind, param)
        return col, read_item(svc.embedder.modalities[col], data, param)
    if isinstance(value, str):
        parsed = parse_data_url(value)
        if parsed is not None:
            col = column(svc, parsed[0], param)
            return col, read_item(parsed[0], value, param)
        col = column(svc, default or "text", param)
        modality = svc.embedder.modalities[col]
        if registered(modality).inline and len(value) > svc.settings.max_text_chars:
            raise APIError(400, f"{param}: text longer than {svc.settings.max_text_chars} characters", param)
        return col, read_item(modality, value, param)
    raise APIError(
        400, f"{param}: expected a string or a {{type, data}} object, got {type(value).__name__}", param
    )


async def embed(service: "Service", items: list[tuple[str, Any]], param: str) -> np.ndarray:
    try:
        return await service.embed(items)
    except ValueError as e:  # an encoder refusing this request's input (e.g. a sensor array's shape)
        raise APIError(400, f"{param}: {e}", param, "invalid_value") from None


def _usage(items: list[tuple[str, Any]]) -> int:
    # Word count, not tokens of any particular tokenizer: clients only display it.
    return sum(len(r.split()) if isinstance(r, str) else 1 for _, r in items)


_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": EmbeddingsRequest.model_json_schema()}}}}


def router(service: "Service") -> APIRouter:
    r = APIRouter()
    s = service.settings

    @r.post("/v1/embeddings", response_model=EmbeddingsResponse, openapi_extra=_BODY)
    async def embeddings(request: Request) -> dict[str, Any]:
        """OpenAI-compatible embeddings. Text as usual; images, audio and sensor arrays as data URLs,
        `{"type": "image", "data": "<base64>"}` objects, or base64 strings with `"modality": "image"`."""
        req = validate(EmbeddingsRequest, await json_object(request))
        values = [req.input] if isinstance(req.input, str) else list(req.input)
        if not values:
            raise APIError(400, "input: empty list", "input", "empty_input")
        if len(values) > s.max_inputs:
            raise APIError(400, f"input: {len(values)} items, at most {s.max_inputs} per request", "input")
        dim = service.embedder.model.out_dim
        if req.dimensions is not None and req.dimensions != dim:
            raise APIError(
                400,
                f"dimensions: this model returns {dim}-d embeddings (omit it or pass {dim})",
                "dimensions",
            )
        single = isinstance(req.input, str)
        items = await service.read(
            lambda: [
                _resolve_input(service, v, req.modality, "input" if single else f"input[{i}]")
                for i, v in enumerate(values)
            ]
        )
        z = await embed(service, items, "input")
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": (
                    base64.b64encode(v.astype("<f4").tobytes()).decode()
                    if req.encoding_format == "base64"
                    else v.tolist()
                ),
            }
            for i, v in enumerate(z)
        ]
        n = _usage(items)
        return {
            "object": "list",
            "data": data,
            "model": service.model_id,
            "usage": {"prompt_tokens": n, "total_tokens": n},
        }

    return r
