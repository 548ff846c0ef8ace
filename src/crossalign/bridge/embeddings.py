"""Aligned embeddings of a manifest's views under a run, from cached features, cached themselves.

Projector training and evaluation read these (N, dim) arrays only: the towers never run again,
and a second `bridge train`/`eval` on the same run and data skips even the heads. The cache key
holds the run's weights file (size + mtime + path) and the manifest (path + size + mtime).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crossalign.align.embed import embed_table
from crossalign.align.embedder import Embedder
from crossalign.data.features import ViewSpec, encode_views
from crossalign.data.manifest import Manifest, load_manifest
from crossalign.paths import cache_root
from crossalign.saved import weights_file

__all__ = ["AlignedTable", "aligned_embeddings"]

log = logging.getLogger(__name__)


@dataclass
class AlignedTable:
    """Row-aligned shared-space embeddings of several views of one manifest."""

    manifest: Manifest
    rows: np.ndarray  # (N,) indices into manifest.rows
    emb: dict[str, np.ndarray]  # column -> (N, dim), L2-normalised
    splits: list[str]

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, j: int) -> dict[str, Any]:
        return self.manifest.rows[int(self.rows[j])]

    def where(self, split: str) -> np.ndarray:
        return np.array([j for j, s in enumerate(self.splits) if s == split], dtype=np.int64)


def _stamp(p: Path) -> str:
    st = p.stat()
    return f"{p.resolve()}:{st.st_size}:{int(st.st_mtime_ns)}"


def _weights_file(run: Path) -> Path:
    return weights_file(run, "best")  # the file the run's embedder loaded


def aligned_embeddings(embedder: Embedder, data: str | Path, columns: list[str] | None = None,
                       progress: bool = True, use_cache: bool = True) -> AlignedTable:
    """Embed `columns` (default: every view of the run) of a manifest into the run's space."""
    m = load_manifest(data)
    if not all(r.get("split") for r in m.rows):
        from crossalign.data.splits import ensure_splits  # same deterministic split as training

        m = ensure_splits(m, embedder.cfg.train.seed)
    cols = columns or list(embedder.model.columns)
    for c in cols:
        embedder.column_for(c)  # raises naming the run's views when a column is unknown
        if c not in m.columns:
            raise ValueError(f"{m.path}: no column '{c}' (columns: {m.columns})")
    key_src = json.dumps({"run": _stamp(_weights_file(embedder.run_dir)) if embedder.run_dir else id(embedder),
                          "data": _stamp(m.path) if m.path else "", "cols": sorted(cols)})
    folder = cache_root() / "bridge-embeddings" / hashlib.blake2b(key_src.encode(), digest_size=12).hexdigest()
    if use_cache and (folder / "rows.npy").exists():
        emb = {c: np.load(folder / f"{c}.npy") for c in cols}
        rows = np.load(folder / "rows.npy")
    else:
        views: list[ViewSpec] = [v for v in embedder.cfg.model.views if v.column in cols]
        table = encode_views(m, views, progress=progress)  # cached features: encoders run only once
        for p in table.problems:
            log.warning("skipped: %s", p)
        rows = table.rows
        # One path to Z for every room: fine-tuned towers re-read raw items instead of stale features.
        emb = {c: e.astype(np.float32) for c, e in embed_table(embedder.model, table, columns=cols).items()}
        if use_cache:
            tmp = folder.with_name(f".{folder.name}-{uuid.uuid4().hex[:8]}")
            tmp.mkdir(parents=True)
            for c, e in emb.items():
                np.save(tmp / f"{c}.npy", e)
            np.save(tmp / "rows.npy", rows)
            if folder.exists():  # a concurrent run wrote it first
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.rename(folder)
    splits = [str(m.rows[int(i)].get("split") or "") for i in rows]
    return AlignedTable(m, rows, emb, splits)
