"""FastAPI routes: /health, /v1/models, /v1/embeddings (OpenAI-compatible), /v1/search."""

from __future__ import annotations

import base64
import json
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import numpy as np
from fastapi import FastAPI, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from crossalign import __version__
from crossalign.modalities import MODALITIES
from crossalign.serve.errors import APIError, install_error_handlers
from crossalign.serve.inputs import parse_data_url, read_item
from crossalign.serve.limits import BodySizeLimit
from crossalign.serve.schemas import (
    EmbeddingsRequest,
    EmbeddingsResponse,
    HealthResponse,
    SearchRequest,
    SearchResponse,
)
from crossalign.serve.service import Service

__all__ = ["create_app"]

_QUERY_FIELDS = ("text", "image", "audio", "sensor")


def _column(svc: Service, name: str, param: str) -> str:
    try:
        return svc.embedder.column_for(name)
    except ValueError as e:
        raise APIError(400, f"{param}: {e}", param, "unknown_modality") from None


def _resolve_input(svc: Service, value: Any, default: str | None, param: str) -> tuple[str, Any]:
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
        col = _column(svc, kind, param)
        return col, read_item(svc.embedder.modalities[col], data, param)
    if isinstance(value, str):
        parsed = parse_data_url(value)
        if parsed is not None:
            col = _column(svc, parsed[0], param)
            return col, read_item(parsed[0], value, param)
        col = _column(svc, default or "text", param)
        modality = svc.embedder.modalities[col]
        if modality == "text" and len(value) > svc.settings.max_text_chars:
            raise APIError(400, f"{param}: text longer than {svc.settings.max_text_chars} characters", param)
        return col, read_item(modality, value, param)
    raise APIError(
        400, f"{param}: expected a string or a {{type, data}} object, got {type(value).__name__}", param
    )


async def _embed(service: Service, items: list[tuple[str, Any]], param: str) -> np.ndarray:
    try:
        return await service.embed(items)
    except ValueError as e:  # an encoder refusing this request's input (e.g. a sensor array's shape)
        raise APIError(400, f"{param}: {e}", param, "invalid_value") from None


def _usage(items: list[tuple[str, Any]]) -> int:
    # Word count, not tokens of any particular tokenizer: clients only display it.
    return sum(len(r.split()) if isinstance(r, str) else 1 for _, r in items)


async def _search_body(request: Request) -> tuple[SearchRequest, dict[str, bytes]]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            raw = json.loads(await request.body() or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise APIError(400, f"body is not valid JSON: {e}", code="invalid_json") from None
        if not isinstance(raw, dict):
            raise APIError(400, "body must be a JSON object", code="invalid_json")
        return _validate(raw), {}
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            form = await request.form(max_files=4, max_fields=16)
        except Exception as e:  # malformed multipart or a field past the part-size limit
            raise APIError(400, f"malformed multipart body: {e}", code="invalid_multipart") from None
        fields: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        for key, val in form.multi_items():
            if isinstance(val, UploadFile):
                if key not in ("image", "audio", "sensor"):
                    raise APIError(400, f"unexpected file field '{key}' (use image, audio or sensor)", key)
                files[key] = await val.read()
            else:
                fields[key] = val
        if "filters" in fields:
            try:
                fields["filters"] = json.loads(fields["filters"])
            except json.JSONDecodeError as e:
                raise APIError(400, f"filters: not valid JSON ({e})", "filters") from None
        return _validate(fields), files
    raise APIError(
        415,
        f"unsupported content type '{ctype or 'none'}': send application/json or multipart/form-data "
        "(or a url-encoded form)",
        code="unsupported_media_type",
    )


def _validate(raw: dict[str, Any]) -> SearchRequest:
    try:
        return SearchRequest.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise APIError(400, f"{where}: {err['msg']}", where, "invalid_value") from None


def create_app(service: Service) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(service.warm_up)
        yield
        await service.batcher.close()
        service.close()

    app = FastAPI(
        title="crossalign",
        version=__version__,
        lifespan=lifespan,
        description="Embeddings (OpenAI-compatible) and cross-modal search over a crossalign index.",
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=service.settings.max_upload_bytes)
    s = service.settings

    @app.get("/health", response_model=HealthResponse)
    async def health() -> dict[str, Any]:
        ix = await run_in_threadpool(service.index)  # a reload verifies files: keep it off the loop
        return {
            "status": "ok",
            "model": service.model_id,
            "run_id": service.identity.run_id,
            "dim": service.embedder.model.cfg.dim,
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

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": service.model_id, "object": "model", "created": 0, "owned_by": "crossalign"}],
        }

    @app.post("/v1/embeddings", response_model=EmbeddingsResponse)
    async def embeddings(req: EmbeddingsRequest) -> dict[str, Any]:
        """OpenAI-compatible embeddings. Text as usual; images, audio and sensor arrays as data URLs,
        `{"type": "image", "data": "<base64>"}` objects, or base64 strings with `"modality": "image"`."""
        values = [req.input] if isinstance(req.input, str) else list(req.input)
        if not values:
            raise APIError(400, "input: empty list", "input", "empty_input")
        if len(values) > s.max_inputs:
            raise APIError(400, f"input: {len(values)} items, at most {s.max_inputs} per request", "input")
        dim = service.embedder.model.cfg.dim
        if req.dimensions is not None and req.dimensions != dim:
            raise APIError(
                400,
                f"dimensions: this model returns {dim}-d embeddings (omit it or pass {dim})",
                "dimensions",
            )
        items = await run_in_threadpool(
            lambda: [
                _resolve_input(
                    service, v, req.modality, f"input[{i}]" if not isinstance(req.input, str) else "input"
                )
                for i, v in enumerate(values)
            ]
        )
        z = await _embed(service, items, "input")
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

    search_body = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": SearchRequest.model_json_schema()},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "text": {"type": "string"},
                            "image": {"type": "string", "format": "binary"},
                            "audio": {"type": "string", "format": "binary"},
                            "sensor": {"type": "string", "format": "binary"},
                            "k": {"type": "integer", "default": 10},
                            "modality": {"type": "string"},
                            "view": {"type": "string"},
                            "filters": {"type": "string", "description": "JSON object"},
                        },
                    }
                },
            },
        }
    }

    @app.post("/v1/search", response_model=SearchResponse, openapi_extra=search_body)
    async def search(request: Request) -> dict[str, Any]:
        """Nearest items of the index to one query (text, image, audio or sensor array)."""
        ix = await run_in_threadpool(service.index)  # a reload verifies files: keep it off the loop
        if ix is None:
            raise APIError(
                404, "this server has no index; start it with `crossalign serve RUN --index INDEX`"
            )
        req, files = await _search_body(request)
        given = {f: getattr(req, f) for f in _QUERY_FIELDS if getattr(req, f) is not None}
        given.update(files)
        if len(given) != 1:
            raise APIError(
                400,
                f"give exactly one query: text, image, audio or sensor (got {', '.join(given) or 'none'})",
                code="invalid_query",
            )
        ((qmod, value),) = given.items()
        if not 1 <= req.k <= s.max_k:
            raise APIError(400, f"k must be between 1 and {s.max_k}, got {req.k}", "k", "k_out_of_range")
        if req.modality is not None and req.modality not in ix.modalities():
            known = req.modality in MODALITIES
            raise APIError(
                400,
                f"modality: {'the index holds no' if known else 'unknown modality'} "
                f"'{req.modality}' (it holds {', '.join(ix.modalities()) or 'nothing'})",
                "modality",
                "unknown_modality",
            )
        col = _column(service, req.view or qmod, "view" if req.view else qmod)
        if service.embedder.modalities[col] != qmod:
            raise APIError(400, f"view '{col}' is not a {qmod} view of the run", "view")
        if qmod == "text" and isinstance(value, str) and len(value) > s.max_text_chars:
            raise APIError(400, f"text longer than {s.max_text_chars} characters", "text")
        raw = await run_in_threadpool(read_item, qmod, value, qmod)
        q = await _embed(service, [(col, raw)], qmod)
        hits = await run_in_threadpool(service.search, q, req.k, req.modality, req.filters)
        return {
            "object": "search.result",
            "model": service.model_id,
            "query": {"modality": qmod, "view": col},
            "k": req.k,
            "modality": req.modality,
            "index_generation": ix.generation,
            "results": [h.to_dict() for h in hits],
        }

    from crossalign.serve.explain_route import add_explain_route  # POST /v1/explain, its own module

    add_explain_route(app, service)
    return app
