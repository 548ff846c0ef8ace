"""FAISS index kinds, keyed by name: exact inner product by default, HNSW or IVF for large sets.

Vectors are L2-normalised, so inner product is cosine similarity. Every kind stores our own
int64 ids (positions in the metadata table), so deletions never renumber anything.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable

import faiss
import numpy as np

__all__ = ["IndexParams", "KINDS", "new_faiss_index", "search_params", "supports_remove", "train_if_needed"]


@dataclass
class IndexParams:
    """How vectors are indexed. Stored in index.json; search-time knobs can be changed on open."""

    kind: str = "flat"  # flat (exact) | hnsw | ivf
    hnsw_m: int = 32  # HNSW graph degree: more -> better recall, more memory, slower build
    ef_construction: int = 80  # HNSW build-time beam width
    ef_search: int = 128  # HNSW query-time beam width (raised to k when k is larger)
    nlist: int = 0  # IVF cells; 0 -> about sqrt(N), capped so every cell gets >= 39 training points
    nprobe: int = 16  # IVF cells visited per query

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown index kind '{self.kind}'; choose one of {', '.join(KINDS)}")
        if (
            self.hnsw_m < 4
            or self.ef_construction < 1
            or self.ef_search < 1
            or self.nprobe < 1
            or self.nlist < 0
        ):
            raise ValueError("hnsw_m >= 4, ef_construction/ef_search/nprobe >= 1, nlist >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "IndexParams":
        return cls(**d)


def _flat(dim: int, p: IndexParams, n_hint: int) -> faiss.Index:
    return faiss.IndexIDMap(faiss.IndexFlatIP(dim))


def _hnsw(dim: int, p: IndexParams, n_hint: int) -> faiss.Index:
    inner = faiss.IndexHNSWFlat(dim, p.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    inner.hnsw.efConstruction = p.ef_construction
    return faiss.IndexIDMap(inner)


def auto_nlist(n: int, requested: int = 0) -> int:
    # FAISS warns below 39 training points per centroid. sqrt(N) cells keeps k-means training
    # affordable on a laptop CPU (1M vectors: 1000 cells); more cells search faster per probe.
    want = requested or int(math.sqrt(max(n, 1)))
    return max(1, min(want, n // 39 if n >= 39 else 1))


def _ivf(dim: int, p: IndexParams, n_hint: int) -> faiss.Index:
    nlist = auto_nlist(n_hint, p.nlist)
    quantizer = faiss.IndexFlatIP(dim)
    # The Python wrapper keeps `quantizer` alive with the index; read_index makes it owned.
    return faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)


KINDS: dict[str, Callable[[int, IndexParams, int], faiss.Index]] = {"flat": _flat, "hnsw": _hnsw, "ivf": _ivf}


def new_faiss_index(dim: int, params: IndexParams, n_hint: int) -> faiss.Index:
    """An empty index for `dim`-d vectors; `n_hint` (first batch size) sizes IVF's cell count."""
    return KINDS[params.kind](dim, params, n_hint)


def train_if_needed(index: faiss.Index, vectors: np.ndarray) -> None:
    if not index.is_trained:
        index.train(vectors)


def supports_remove(params: IndexParams) -> bool:
    """HNSW graphs cannot drop nodes; there deleted ids become tombstones filtered at search time."""
    return params.kind != "hnsw"


def search_params(params: IndexParams, k: int, sel: Any | None, filtered: bool) -> Any | None:
    if params.kind == "hnsw":
        # A filter hides many graph nodes; a wider beam keeps recall up when it does.
        ef = max(params.ef_search, k, 4 * k if filtered else 0)
        return (
            faiss.SearchParametersHNSW(efSearch=ef, sel=sel)
            if sel is not None
            else faiss.SearchParametersHNSW(efSearch=ef)
        )
    if params.kind == "ivf":
        nprobe = params.nprobe * (2 if filtered else 1)
        return (
            faiss.SearchParametersIVF(nprobe=nprobe, sel=sel)
            if sel is not None
            else faiss.SearchParametersIVF(nprobe=nprobe)
        )
    return faiss.SearchParameters(sel=sel) if sel is not None else None
