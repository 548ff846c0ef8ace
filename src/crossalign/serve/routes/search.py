"""POST /v1/search: nearest index items to one query (JSON or multipart)."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from crossalign.index.meta import FilterError, Hit
from crossalign.modalities import modality, modality_names
from crossalign.serve.body import check_depth, content_type, json_object, validate
from crossalign.serve.errors import APIError
from crossalign.serve.inputs import read_item
from crossalign.serve.routes.embeddings import column, embed
from crossalign.serve.schemas import SearchResponse, search_request_model

if TYPE_CHECKING:
    from crossalign.serve.service import Service

__all__ = ["router", "public_hit"]



def public_hit(h: Hit) -> dict[str, Any]:
    """A hit as clients see it: `source` is the manifest-relative path (or the text), never an
    absolute path on this server (indexes built before 0.x stored those: then it is None)."""
    d = h.to_dict()
    src = d.get("source")
    if h.modality != "text" and isinstance(src, str) and (os.path.isabs(src) or src.startswith("~")):
        d["source"] = None
    return d


def _uploads() -> list[str]:
    return [m for m in modality_names() if modality(m).upload]


async def _search_body(request: Request, model: type[BaseModel]) -> tuple[Any, dict[str, bytes]]:
    ctype = content_type(request)
    if ctype == "application/json":
        return validate(model, await json_object(request)), {}
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            form = await request.form(max_files=4, max_fields=16)
        except APIError:  # the body grew past the size limit: 413, not "malformed"
            raise
        except Exception as e:  # malformed multipart or a field past the part-size limit
            raise APIError(400, f"malformed multipart body: {e}", code="invalid_multipart") from None
        fields: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        for key, val in form.multi_items():
            if isinstance(val, UploadFile):
                if key not in _uploads():
                    raise APIError(400, f"unexpected file field '{key}' (use {_or(_uploads())})", key)
                files[key] = await val.read()
            else:
                fields[key] = val
        if "filters" in fields:
            try:
                fields["filters"] = json.loads(fields["filters"])
            except (json.JSONDecodeError, RecursionError) as e:
                raise APIError(400, f"filters: not valid JSON ({e})", "filters") from None
            check_depth(fields["filters"])
        return validate(model, fields), files
    raise APIError(
        415,
        f"unsupported content type '{ctype or 'none'}': send application/json or multipart/form-data "
        "(or a url-encoded form)",
        code="unsupported_media_type",
    )


def _or(names: list[str]) -> str:
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)


def _body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body: JSON, or multipart with one field per modality (files for those
    that may be uploaded)."""
    per_modality = {m: {"type": "string", "format": "binary"} if modality(m).upload else {"type": "string"}
                    for m in modality_names()}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": model.model_json_schema()},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": per_modality | {
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


def router(service: "Service") -> APIRouter:
    r = APIRouter()
    s = service.settings
    model = search_request_model()
    fields = modality_names()

    @r.post("/v1/search", response_model=SearchResponse, openapi_extra=_body(model))
    async def search(request: Request) -> dict[str, Any]:
        """Nearest items of the index to one query (text, an image, audio, a sensor array or any
        other registered modality, in the field of its name)."""
        ix = await run_in_threadpool(service.index)  # a reload verifies files: keep it off the loop
        if ix is None:
            raise APIError(
                404, "this server has no index; start it with `crossalign serve RUN --index INDEX`"
            )
        req, files = await _search_body(request, model)
        given = {f: getattr(req, f) for f in fields if getattr(req, f) is not None}
        given.update(files)
        if len(given) != 1:
            raise APIError(
                400,
                f"give exactly one query: {_or(list(fields))} (got {', '.join(given) or 'none'})",
                code="invalid_query",
            )
        ((qmod, value),) = given.items()
        if not 1 <= req.k <= s.max_k:
            raise APIError(400, f"k must be between 1 and {s.max_k}, got {req.k}", "k", "k_out_of_range")
        if req.modality is not None and req.modality not in ix.modalities():
            known = req.modality in fields
            raise APIError(
                400,
                f"modality: {'the index holds no' if known else 'unknown modality'} "
                f"'{req.modality}' (it holds {', '.join(ix.modalities()) or 'nothing'})",
                "modality",
                "unknown_modality",
            )
        try:  # before decoding anything: a typo in a filter key would silently match nothing
            ix.meta.check_filters(req.filters)
        except FilterError as e:
            raise APIError(400, f"filters: {e}", "filters", "unknown_filter") from None
        col = column(service, req.view or qmod, "view" if req.view else qmod)
        if service.embedder.modalities[col] != qmod:
            raise APIError(400, f"view '{col}' is not a {qmod} view of the run", "view")
        if modality(qmod).inline and isinstance(value, str) and len(value) > s.max_text_chars:
            raise APIError(400, f"text longer than {s.max_text_chars} characters", "text")
        raw = await service.read(read_item, qmod, value, qmod)
        q = await embed(service, [(col, raw)], qmod)
        hits = await run_in_threadpool(service.search, q, req.k, req.modality, req.filters)
        return {
            "object": "search.result",
            "model": service.model_id,
            "query": {"modality": qmod, "view": col},
            "k": req.k,
            "modality": req.modality,
            "index_generation": ix.generation,
            "results": [public_hit(h) for h in hits],
        }

    return r
