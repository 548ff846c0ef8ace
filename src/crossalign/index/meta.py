"""Metadata kept beside the vectors: one row per indexed item, the row number is the FAISS id.

Columnar in memory (a list per field) so a million items stay cheap; JSON lines on disk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

__all__ = ["FIELDS", "MetaTable", "Hit", "FilterError"]

# Fields every item has (None when unknown). `extra` holds other short scalar manifest fields.
FIELDS = ("id", "modality", "column", "source", "group", "label", "split")


class FilterError(ValueError):
    """A metadata filter names a key no item has (a typo would otherwise silently match nothing)."""


@dataclass(slots=True)
class Hit:
    """One search result."""

    rank: int
    score: float  # cosine similarity in the shared space
    id: str
    modality: str
    column: str
    source: str | None  # file path as the manifest wrote it (relative to its folder), or the text
    group: Any = None
    label: Any = None
    split: Any = None
    extra: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            f: getattr(self, f)
            for f in ("rank", "score", "id", "modality", "column", "source", "group", "label", "split")
        }
        d["extra"] = self.extra or {}
        return d


@dataclass
class MetaTable:
    cols: dict[str, list[Any]] = field(default_factory=lambda: {f: [] for f in FIELDS})
    extra: list[dict[str, Any] | None] = field(default_factory=list)
    deleted: list[bool] = field(default_factory=list)
    _arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # filter cache

    def __len__(self) -> int:
        return len(self.deleted)

    @property
    def live_count(self) -> int:
        return len(self.deleted) - sum(self.deleted)

    def append(self, items: Iterable[dict[str, Any]]) -> np.ndarray:
        start = len(self)
        for it in items:
            for f in FIELDS:
                v = it.get(f)
                self.cols[f].append(str(v) if f == "id" and v is not None else v)
            self.extra.append(dict(it["extra"]) if it.get("extra") else None)
            self.deleted.append(False)
        self._arrays.clear()
        return np.arange(start, len(self), dtype=np.int64)

    def mark_deleted(self, rows: np.ndarray) -> None:
        for r in rows.tolist():
            self.deleted[r] = True
        self._arrays.clear()

    def column_array(self, name: str) -> np.ndarray:
        """Values of a field (or an `extra` key) as strings, for vectorised filter matching."""
        if name not in self._arrays:
            if name in self.cols:
                vals = self.cols[name]
            else:
                vals = [e.get(name) if e else None for e in self.extra]
            self._arrays[name] = np.array(["\0none" if v is None else str(v) for v in vals], dtype=object)
        return self._arrays[name]

    def live_mask(self) -> np.ndarray:
        if "\0deleted" not in self._arrays:
            self._arrays["\0deleted"] = ~np.asarray(self.deleted, dtype=bool)
        return self._arrays["\0deleted"]

    def filter_keys(self) -> set[str]:
        """Keys a filter may use: the fixed fields and every `extra` key some row has."""
        if "\0keys" not in self._arrays:
            keys = set(FIELDS)
            for e in self.extra:
                if e:
                    keys.update(e)
            self._arrays["\0keys"] = np.array(sorted(keys), dtype=object)
        return set(self._arrays["\0keys"].tolist())

    def check_filters(self, filters: dict[str, Any] | None) -> None:
        unknown = sorted(set(filters or {}) - self.filter_keys())
        if unknown:
            raise FilterError(f"unknown filter key{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(repr(k) for k in unknown)}; this index has "
                              f"{', '.join(sorted(self.filter_keys()))}")

    def match(self, filters: dict[str, Any] | None, modality: str | None = None) -> np.ndarray:
        """Boolean mask of live rows matching every filter (a list value means any of them)."""
        self.check_filters(filters)
        mask = self.live_mask().copy()
        if modality is not None:
            mask &= self.column_array("modality") == modality
        for key, want in (filters or {}).items():
            values = want if isinstance(want, (list, tuple, set)) else [want]
            col = self.column_array(key)
            mask &= np.isin(col, np.array([str(v) for v in values], dtype=object))
        return mask

    def rows_of_ids(self, ids: Iterable[str], modality: str | None = None) -> np.ndarray:
        want = {str(i) for i in ids}
        mods = self.cols["modality"]
        return np.array(
            [
                r
                for r, i in enumerate(self.cols["id"])
                if i in want and not self.deleted[r] and (modality is None or mods[r] == modality)
            ],
            dtype=np.int64,
        )

    def hit(self, row: int, rank: int, score: float) -> Hit:
        c = self.cols
        return Hit(
            rank,
            score,
            c["id"][row],
            c["modality"][row],
            c["column"][row],
            c["source"][row],
            c["group"][row],
            c["label"][row],
            c["split"][row],
            self.extra[row],
        )

    def modalities(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for m, d in zip(self.cols["modality"], self.deleted):
            if not d:
                out[m] = out.get(m, 0) + 1
        return out

    def write(self, path: Path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for r in range(len(self)):
                rec = {fname: self.cols[fname][r] for fname in FIELDS}
                if self.extra[r]:
                    rec["extra"] = self.extra[r]
                if self.deleted[r]:
                    rec["deleted"] = True
                f.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
            f.flush()

    @classmethod
    def read(cls, path: Path) -> "MetaTable":
        t = cls()
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                try:
                    rec = json.loads(line)
                except (json.JSONDecodeError, RecursionError) as e:
                    raise ValueError(f"{path}: line {lineno}: {e}") from e
                if not isinstance(rec, dict) or not isinstance(rec.get("extra") or {}, dict):
                    raise ValueError(f"{path}: line {lineno}: not a metadata record")
                for fname in FIELDS:
                    t.cols[fname].append(rec.get(fname))
                t.extra.append(rec.get("extra"))
                t.deleted.append(bool(rec.get("deleted", False)))
        return t
