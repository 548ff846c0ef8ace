"""Request/response bodies (pydantic): OpenAI's embeddings API plus crossalign's search."""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

__all__ = ["EmbeddingsRequest", "EmbeddingsResponse", "SearchOptions", "search_request_model", "SearchResponse",
           "HealthResponse", "with_modality_fields"]

Scalar = Union[str, int, float, bool]


class EmbeddingsRequest(BaseModel):
    """OpenAI `POST /v1/embeddings`. Extension: image/audio/sensor inputs as data URLs
    (`data:image/png;base64,...`), as `{"type": "image", "data": "<base64>"}` objects, or as plain
    base64 strings when `modality` says which."""

    model_config = ConfigDict(extra="ignore")

    input: Union[str, list[Any]] = Field(
        description="text, or a list of texts / data URLs / {type, data} objects"
    )
    model: Optional[str] = Field(None, description="any name; the response reports the served run's model id")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[int] = Field(None, description="must be omitted or equal the run's dimension")
    user: Optional[str] = None
    modality: Optional[str] = Field(
        None, description="extension: modality (or view column) of plain string inputs"
    )


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: Union[list[float], str]


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: Usage


def with_modality_fields(base: type[BaseModel], name: str) -> type[BaseModel]:
    """`base` plus one optional field per registered modality (its `json_type` and `help`): request
    bodies follow the modality registry, so a new modality needs no edit here."""
    from crossalign.modalities import modality, modality_names

    fields: dict[str, Any] = {m: (Optional[modality(m).json_type], Field(None, description=modality(m).help))
                              for m in modality_names()}
    return create_model(name, __base__=base, __doc__=base.__doc__, **fields)


def search_request_model() -> type[BaseModel]:
    return with_modality_fields(SearchOptions, "SearchRequest")


class SearchOptions(BaseModel):
    """Exactly one query field, named after its modality (text, image, audio, sensor, ...). As
    multipart/form-data, upload the file under its modality's name and send `k`, `modality`,
    `view`, `filters` (JSON) as fields."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(10, description="results to return (1..max_k)")
    modality: Optional[str] = Field(None, description="only results of this modality")
    view: Optional[str] = Field(None, description="query view column when the run has several (text_zh)")
    filters: Optional[dict[str, Union[Scalar, list[Scalar]]]] = Field(
        None, description='metadata equality filters, a list means any of: {"label": ["red circle"]}'
    )


class SearchHit(BaseModel):
    rank: int
    score: float
    id: str
    modality: str
    column: str
    source: Optional[str]
    group: Any = None
    label: Any = None
    split: Any = None
    extra: dict[str, Any] = {}


class SearchResponse(BaseModel):
    object: Literal["search.result"] = "search.result"
    model: str
    query: dict[str, Any]
    k: int
    modality: Optional[str]
    index_generation: int
    results: list[SearchHit]


class HealthResponse(BaseModel):
    status: str
    model: str
    run_id: str
    dim: int
    views: dict[str, str]
    index: Optional[dict[str, Any]]
    batching: dict[str, Any]
