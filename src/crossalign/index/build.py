"""Fill an index from a manifest with a trained run: cached features -> heads -> VectorIndex."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from crossalign.data.check import Problem
from crossalign.data.manifest import Manifest, column_modality, load_manifest
from crossalign.data.splits import ensure_splits, has_splits
from crossalign.index.backends import IndexParams
from crossalign.index.identity import IncompatibleRunError, run_identity
from crossalign.index.store import OnDuplicate, VectorIndex

if TYPE_CHECKING:
    from crossalign.align.embedder import Embedder

__all__ = ["build_index", "add_to_index", "delete_from_index", "embed_manifest", "BuildReport"]

log = logging.getLogger(__name__)
_EXTRA_MAX_CHARS = 500  # longer strings are not copied into the metadata


@dataclass
class BuildReport:
    path: Path
    added: int
    by_column: dict[str, int]
    problems: list[Problem] = field(default_factory=list)
    generation: int = 0


def _item(m: Manifest, i: int, col: str, modality: str) -> dict[str, Any]:
    row = m.rows[i]
    value = row.get(col)
    # Files are recorded as the manifest names them (relative to its folder): a hit served over
    # HTTP must not reveal where the data lives on the server.
    source = str(value) if isinstance(value, (str, Path)) else None
    extra = {
        k: v
        for k, v in row.items()
        if not k.startswith("_")
        and k not in ("id", "group", "label", "split", col)
        and isinstance(v, (str, int, float, bool))
        and column_modality(k) in (None, "text")
        and not (isinstance(v, str) and len(v) > _EXTRA_MAX_CHARS)
    }
    return {
        "id": str(row.get("id", m.row_number(i))),
        "modality": modality,
        "column": col,
        "source": source,
        "group": row.get("group"),
        "label": row.get("label"),
        "split": row.get("split"),
        "extra": extra,
    }


def _resolve_columns(embedder: "Embedder", m: Manifest, modalities: Sequence[str] | None) -> list[str]:
    if not modalities:
        cols = [c for c in embedder.model.columns if c in m.columns]
        if not cols:
            raise ValueError(
                f"{m.path}: none of the run's views ({', '.join(embedder.model.columns)}) are columns"
            )
        return cols
    cols = []
    for name in modalities:
        col = embedder.column_for(name.strip())  # raises naming the run's views
        if col not in m.columns:
            raise ValueError(f"{m.path}: no column '{col}' (columns: {', '.join(m.columns)})")
        cols.append(col)
    return list(dict.fromkeys(cols))


def embed_manifest(
    embedder: "Embedder",
    manifest: Manifest,
    columns: Sequence[str],
    batch_size: int = 32,
    progress: bool = False,
) -> tuple[np.ndarray, list[dict[str, Any]], list[Problem]]:
    """Embed every readable value of `columns` -> (vectors (N, dim), items, problems).

    Each column is encoded on its own, so a row with a broken audio file still indexes its image.
    Frozen towers go through the content-keyed feature cache (re-indexing is cheap); fine-tuned
    pretrained towers must see raw inputs, so those columns are read and encoded directly.
    """
    from crossalign.data.features import encode_views

    views = {v.column: v for v in embedder.cfg.model.views}
    vecs, items, problems = [], [], []
    for col in columns:
        modality = embedder.modalities[col]
        spec = embedder.model.specs[col]
        if col in embedder.model.towers and not spec.caches_inputs:
            rows, raws = [], []
            reader = embedder.read  # same readers as training
            for i, r in enumerate(manifest.rows):
                try:
                    raws.extend(reader(col, [r.get(col)], manifest.base_dir))
                    rows.append(i)
                except ValueError as e:
                    problems.append(Problem(manifest.row_number(i), col, str(e)))
            z = embedder.embed_raw(col, raws, batch_size)
        else:
            table = encode_views(
                manifest, [copy.deepcopy(views[col])], batch_size=batch_size, progress=progress
            )
            problems.extend(table.problems)
            rows = table.rows.tolist()
            z = embedder.embed_features(col, table.features[col])
        vecs.append(z)
        items.extend(_item(manifest, i, col, modality) for i in rows)
    dim = embedder.model.out_dim
    return (np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32)), items, problems


def _load(data: str | Path | Manifest, split: str | None, run: str | Path | None = None) -> Manifest:
    m = data if isinstance(data, Manifest) else load_manifest(data)
    if split is not None and not has_splits(m):
        # No split column: the same hash split that train/eval assigned (with the run's seed).
        ensure_splits(m, _run_seed(run))
    if split is not None:
        m = m.select(split)
        if not len(m):
            raise ValueError(f"{m.path}: no rows with split '{split}'")
    return m


def build_index(
    run: str | Path,
    data: str | Path | Manifest,
    out: str | Path,
    modalities: Sequence[str] | None = None,
    split: str | None = None,
    params: IndexParams | None = None,
    overwrite: bool = False,
    batch_size: int = 32,
    progress: bool = False,
) -> BuildReport:
    """Embed `modalities` (names or columns; default: every view of the run in the manifest) of a
    manifest with a trained run and write a new index at `out`."""
    from crossalign.align.embedder import Embedder

    m = _load(data, split, run)
    embedder = Embedder.from_run(run)
    cols = _resolve_columns(embedder, m, modalities)
    ident = run_identity(run)
    x, items, problems = embed_manifest(embedder, m, cols, batch_size, progress)
    if not items:
        raise ValueError(f"{m.path}: no readable values in column(s) {', '.join(cols)}")
    with VectorIndex.create(out, embedder.model.out_dim, params, ident, overwrite=overwrite) as ix:
        ix.add(x, items)
        gen = ix.commit()
    return BuildReport(Path(out), len(items), _count(items), problems, gen)


def _count(items: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for it in items:
        out[it["column"]] = out.get(it["column"], 0) + 1
    return out


def add_to_index(
    index: str | Path,
    data: str | Path | Manifest,
    modalities: Sequence[str] | None = None,
    split: str | None = None,
    run: str | Path | None = None,
    on_duplicate: OnDuplicate = "error",
    batch_size: int = 32,
    progress: bool = False,
) -> BuildReport:
    """Embed more manifest rows with the index's own run and add them without a rebuild."""
    from crossalign.align.embedder import Embedder

    with VectorIndex.open(index, writable=True) as ix:
        run = Path(run) if run is not None else _recorded_run(ix)
        ident = run_identity(run)
        if ix.identity is not None and (diff := ix.identity.mismatch(ident)):
            raise IncompatibleRunError(
                f"{index} was built with run {ix.identity.run_id}, {run} is run "
                f"{ident.run_id} ({'; '.join(diff)}); add with the original run"
            )
        m = _load(data, split, run)
        embedder = Embedder.from_run(run)
        cols = _resolve_columns(embedder, m, modalities)
        x, items, problems = embed_manifest(embedder, m, cols, batch_size, progress)
        added = ix.add(x, items, on_duplicate=on_duplicate) if items else 0
        gen = ix.commit()
    return BuildReport(Path(index), added, _count(items), problems, gen)


def _recorded_run(ix: VectorIndex) -> Path:
    if ix.identity is None or not ix.identity.path:
        raise ValueError(f"{ix.path}: the index records no run; pass one explicitly (--run)")
    p = Path(ix.identity.path)
    if not (p / "config.json").exists():
        raise FileNotFoundError(
            f"{ix.path} was built with the run at {p}, which is gone; pass its new location (--run)"
        )
    return p


def delete_from_index(
    index: str | Path, ids: Sequence[str], modality: str | None = None
) -> tuple[int, list[str]]:
    """Delete items by id (every modality of that id unless `modality`). -> (deleted, ids not found)."""
    with VectorIndex.open(index, writable=True) as ix:
        n, missing = ix.delete(ids, modality)
        if n:
            ix.commit()
    return n, missing


def _run_seed(run: str | Path | None) -> int:
    """The seed the run's hash split used (train.seed in its config.json; 0 when unknown)."""
    import json

    try:
        return int(json.loads((Path(run) / "config.json").read_text())["train"]["seed"]) if run else 0
    except (OSError, ValueError, KeyError, TypeError):
        return 0

