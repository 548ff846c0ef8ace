"""A persistent vector index: FAISS sub-indexes (one per modality) + metadata, in generations.

Reading and writing generations (atomic commit, verification) lives in `persist.py`; this module
is the in-memory index: add, delete, search, and the writer lock.

Long file: one class whose methods share the in-memory state (sub-indexes, metadata rows, the
writer lock); splitting it would pass that state between modules instead of keeping it in one.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Literal, Sequence

import faiss
import numpy as np

from crossalign.index.backends import (
    IndexParams,
    new_faiss_index,
    search_params,
    supports_remove,
    train_if_needed,
)
from crossalign.index.identity import RunIdentity
from crossalign.index.meta import FIELDS, Hit, MetaTable
from crossalign.index.persist import INDEX_FORMAT, CorruptIndexError, read_generation, write_generation

__all__ = ["VectorIndex", "CorruptIndexError", "IndexLockedError", "INDEX_FORMAT"]

log = logging.getLogger(__name__)
OnDuplicate = Literal["error", "skip", "replace"]
# A lone query gains nothing from OpenMP (FAISS parallelises over queries) but pays for waking and
# syncing a thread team; on a busy machine that made single-query search ~10x slower (measured).
# omp_set_num_threads is per calling thread, so concurrent server threads do not disturb each other.
_MAX_THREADS = faiss.omp_get_max_threads()
_SMALL_BATCH = 4


def _record_bytes(path: Path) -> bytes:
    try:
        return (path / "index.json").read_bytes()
    except FileNotFoundError:
        return b""


class IndexLockedError(RuntimeError):
    """Another process is writing the index."""


def _normalise(x: np.ndarray, dim: int, what: str) -> np.ndarray:
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{what}: expected vectors of shape (N, {dim}), got {x.shape}")
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))[:, None].astype(
        np.float32
    )  # NaN/inf show here
    if not np.isfinite(norms).all():
        raise ValueError(f"{what}: vectors contain NaN or infinite values")
    if (norms == 0).any():
        raise ValueError(f"{what}: zero vector(s) at {np.flatnonzero(norms[:, 0] == 0)[:10].tolist()}")
    return np.ascontiguousarray(x / norms)  # inner product of unit vectors = cosine


class VectorIndex:
    """Open with `VectorIndex.open(path)` (read-only) or `open(path, writable=True)` / `create(...)`
    (holds the writer lock until `close()`); changes become durable with `commit()`."""

    def __init__(
        self,
        path: Path,
        dim: int,
        params: IndexParams,
        identity: RunIdentity | None,
        meta: MetaTable,
        subs: dict[str, faiss.Index],
        generation: int,
        record: dict[str, Any] | None = None,
        lock_fd: int | None = None,
    ):
        self.path, self.dim, self.params, self.identity = path, dim, params, identity
        self.meta, self.subs, self.generation = meta, subs, generation
        self.record = record or {}
        self._lock_fd = lock_fd
        self._keys: dict[str, int] | None = None  # "column\0id" -> live row, built on demand

    # ---- opening -------------------------------------------------------------------------------
    @staticmethod
    def _lock(path: Path, wait_s: float) -> int:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise IndexLockedError(
                        f"{path}: another process is writing this index (waited {wait_s:.0f}s)"
                    )
                time.sleep(0.05)

    @classmethod
    def create(
        cls,
        path: str | Path,
        dim: int,
        params: IndexParams | None = None,
        identity: RunIdentity | None = None,
        overwrite: bool = False,
        lock_wait_s: float = 30.0,
    ) -> "VectorIndex":
        """A new, empty, writable index. With `overwrite`, an existing index at `path` is replaced by
        the next commit (atomically: until then readers keep seeing the old one)."""
        path = Path(path).expanduser()
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(f"{path}: exists and is not a folder")
        if (path / "index.json").exists() and not overwrite:
            raise FileExistsError(f"{path}: an index already exists (use overwrite / --overwrite)")
        if (
            path.exists()
            and not (path / "index.json").exists()
            and any(p.name != ".lock" and not p.name.startswith("gen-") for p in path.iterdir())
        ):
            raise FileExistsError(
                f"{path}: folder is not empty and holds no index; refusing to write into it"
            )
        fd = cls._lock(path, lock_wait_s)
        gen = 0
        if (path / "index.json").exists():
            try:
                gen = int(json.loads((path / "index.json").read_text())["generation"])
            except (ValueError, KeyError, TypeError):
                gen = 0
        return cls(path, dim, params or IndexParams(), identity, MetaTable(), {}, gen, lock_fd=fd)

    @classmethod
    def open(
        cls, path: str | Path, writable: bool = False, verify: bool = True, lock_wait_s: float = 30.0
    ) -> "VectorIndex":
        path = Path(path).expanduser()
        if not (path / "index.json").exists():
            raise FileNotFoundError(
                f"{path}: no index here (no index.json); build one with `crossalign index build`"
            )
        fd = cls._lock(path, lock_wait_s) if writable else None
        try:
            return cls._open_current(path, verify, fd, retries=0 if writable else 20)
        except BaseException:
            if fd is not None:
                os.close(fd)
            raise

    @classmethod
    def _open_current(cls, path: Path, verify: bool, fd: int | None, retries: int) -> "VectorIndex":
        """Open the generation index.json names. A writer may commit and garbage-collect while we
        read (it keeps one previous generation, a slow reader can be two behind): when a file is
        missing or does not verify and index.json has changed meanwhile, open the newer one."""
        for attempt in range(retries + 1):
            before = _record_bytes(path)
            try:
                return cls._load(path, verify, fd)
            except (FileNotFoundError, CorruptIndexError) as e:
                if before != _record_bytes(path) and attempt < retries:
                    log.debug("index generation changed while opening, retrying: %s", e)
                    continue
                if isinstance(e, FileNotFoundError):  # index.json is stable and names absent files
                    raise CorruptIndexError(str(e)) from None
                raise
        raise AssertionError("unreachable")

    @classmethod
    def _load(cls, path: Path, verify: bool, fd: int | None) -> "VectorIndex":
        rec, meta, subs = read_generation(path, verify)
        params = IndexParams.from_dict(rec["params"])
        ident = RunIdentity.from_dict(rec["run"]) if rec.get("run") else None
        return cls(path, int(rec["dim"]), params, ident, meta, subs, int(rec["generation"]), rec, fd)

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __enter__(self) -> "VectorIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def writable(self) -> bool:
        return self._lock_fd is not None

    def _require_writable(self) -> None:
        if not self.writable:
            raise PermissionError(f"{self.path}: opened read-only; use VectorIndex.open(path, writable=True)")

    # ---- changing ------------------------------------------------------------------------------
    def _key_map(self) -> dict[str, int]:
        if self._keys is None:
            c = self.meta.cols
            self._keys = {
                f"{col}\0{i}": r
                for r, (col, i, d) in enumerate(zip(c["column"], c["id"], self.meta.deleted))
                if not d
            }
        return self._keys

    def add(
        self, vectors: np.ndarray, items: Sequence[dict[str, Any]], on_duplicate: OnDuplicate = "error"
    ) -> int:
        """Add items (dicts with at least `id` and `modality`; `column` defaults to the modality).
        An item whose (column, id) is already present is an error, skipped or replaced. Returns the
        number of items added."""
        self._require_writable()
        x = _normalise(vectors, self.dim, "add")
        if len(x) != len(items):
            raise ValueError(f"add: {len(x)} vectors but {len(items)} items")
        items = [dict(it) for it in items]
        for n, it in enumerate(items):
            if it.get("id") is None or not it.get("modality"):
                raise ValueError(f"add: item {n} needs an 'id' and a 'modality' (got {sorted(it)})")
            it.setdefault("column", it["modality"])
            unknown = set(it) - set(FIELDS) - {"extra"}
            if unknown:
                raise ValueError(
                    f"add: item {n} has unknown fields {sorted(unknown)}; put them under 'extra'"
                )
        keys = self._key_map() if len(self.meta) else {}
        batch: dict[str, int] = {}
        keep, replace_rows = [], []
        for n, it in enumerate(items):
            k = f"{it['column']}\0{it['id']}"
            if k in batch:
                raise ValueError(f"add: item id '{it['id']}' appears twice for column '{it['column']}'")
            batch[k] = n
            if k in keys:
                if on_duplicate == "error":
                    raise ValueError(
                        f"add: id '{it['id']}' ({it['column']}) is already in {self.path}; "
                        f"use on_duplicate='skip' or 'replace' (--on-duplicate)"
                    )
                if on_duplicate == "skip":
                    continue
                replace_rows.append(keys[k])
            keep.append(n)
        if replace_rows:
            self._delete_rows(np.array(replace_rows, dtype=np.int64))
        if not keep:
            return 0
        x, items = x[keep], [items[n] for n in keep]
        rows = self.meta.append(items)
        mods = np.array([it["modality"] for it in items], dtype=object)
        for m in dict.fromkeys(mods.tolist()):
            sel = mods == m
            if m not in self.subs:
                self.subs[m] = new_faiss_index(self.dim, self.params, int(sel.sum()))
            idx = self.subs[m]
            train_if_needed(idx, x[sel])
            idx.add_with_ids(x[sel], rows[sel])
        if self._keys is not None:
            for r, it in zip(rows.tolist(), items):
                self._keys[f"{it['column']}\0{it['id']}"] = r
        return len(items)

    def _delete_rows(self, rows: np.ndarray) -> None:
        mods = np.array([self.meta.cols["modality"][r] for r in rows.tolist()], dtype=object)
        if supports_remove(self.params):
            for m in dict.fromkeys(mods.tolist()):
                self.subs[m].remove_ids(np.ascontiguousarray(rows[mods == m]))
        self.meta.mark_deleted(rows)
        if self._keys is not None:
            c = self.meta.cols
            for r in rows.tolist():
                self._keys.pop(f"{c['column'][r]}\0{c['id'][r]}", None)

    def delete(self, ids: Sequence[str], modality: str | None = None) -> tuple[int, list[str]]:
        """Delete every item with one of `ids` (only of `modality` if given). Returns (items deleted,
        ids that matched nothing)."""
        self._require_writable()
        rows = self.meta.rows_of_ids(ids, modality)
        found = {self.meta.cols["id"][r] for r in rows.tolist()}
        if len(rows):
            self._delete_rows(rows)
        return len(rows), [str(i) for i in ids if str(i) not in found]

    def commit(self) -> int:
        """Write a new generation and make it current atomically. Returns its number."""
        self._require_writable()
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        header = {
            "created": self.record.get("created", now),
            "updated": now,
            "dim": self.dim,
            "metric": "inner_product (cosine of L2-normalised vectors)",
            "params": self.params.to_dict(),
            "run": self.identity.to_dict() if self.identity else None,
        }
        rec = write_generation(self.path, self.generation + 1, self.subs, self.meta, header)
        self.generation, self.record = rec["generation"], rec
        return self.generation

    # ---- reading -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.meta.live_count

    def modalities(self) -> dict[str, int]:
        return self.meta.modalities()

    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        modality: str | None = None,
        filters: dict[str, Any] | None = None,
    ) -> list[list[Hit]]:
        """Top-k items per query vector, best first, over one target modality or all of them."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = _normalise(queries, self.dim, "search")
        if modality is not None and modality not in self.subs:
            have = ", ".join(sorted(self.modalities())) or "nothing"
            raise ValueError(f"this index holds no '{modality}' items (it holds {have})")
        targets = [modality] if modality is not None else list(self.subs)
        faiss.omp_set_num_threads(1 if len(q) < _SMALL_BATCH else _MAX_THREADS)
        per_query: list[list[tuple[float, int]]] = [[] for _ in range(len(q))]
        tombstones = not supports_remove(self.params) and self.meta.live_count < len(self.meta)
        for m in targets:
            idx = self.subs[m]
            if idx.ntotal == 0:
                continue
            sel, bits = None, None
            if filters or tombstones:
                mask = self.meta.match(filters, m)
                if not mask.any():
                    continue
                bits = np.packbits(mask, bitorder="little")  # kept alive for the selector's lifetime
                sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
            kk = min(k, int(idx.ntotal))
            D, I = idx.search(q, kk, params=search_params(self.params, kk, sel, bool(filters)))
            del sel, bits
            for qi in range(len(q)):
                per_query[qi].extend((float(s), int(r)) for s, r in zip(D[qi], I[qi]) if r >= 0)
        out = []
        for cands in per_query:
            if len(targets) > 1:
                cands.sort(key=lambda t: -t[0])
            out.append([self.meta.hit(r, rank, s) for rank, (s, r) in enumerate(cands[:k], 1)])
        return out

    def info(self) -> dict[str, Any]:
        size = sum(
            f.stat().st_size for f in (self.path / self.record.get("dir", "-")).glob("*") if f.is_file()
        )
        return {
            "path": str(self.path),
            "generation": self.generation,
            "items": len(self),
            "by_modality": self.modalities(),
            "deleted_rows": len(self.meta) - len(self),
            "dim": self.dim,
            "kind": self.params.kind,
            "params": self.params.to_dict(),
            "bytes_on_disk": size,
            "created": self.record.get("created"),
            "updated": self.record.get("updated"),
            "run": self.identity.to_dict() if self.identity else None,
        }
