"""Items to explain from a manifest row (`--id ROW --data M`) or from the views of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from crossalign.align.embedder import Embedder
from crossalign.data.manifest import Manifest, load_manifest

__all__ = ["find_row", "row_items", "default_views"]


def find_row(m: Manifest, key: str) -> dict[str, Any]:
    """A row by its `id`, else by 1-based row number."""
    for i, r in enumerate(m.rows):
        if str(r.get("id", i + 1)) == key:
            return r
    if key.isdigit() and 1 <= int(key) <= len(m.rows):
        return m.rows[int(key) - 1]
    raise ValueError(f"{m.path}: no row with id '{key}' (and it is not a row number 1..{len(m.rows)})")


def default_views(embedder: Embedder, row: dict[str, Any] | None = None) -> list[str]:
    """Text and image when the run has both (the usual question), else its first two views."""
    cols = [c for c in embedder.model.columns if row is None or row.get(c) is not None]
    mods = embedder.modalities
    pick = [next((c for c in cols if mods[c] == m), None) for m in ("text", "image")]
    if all(pick):
        return [str(p) for p in pick]
    if len(cols) < 2:
        raise ValueError(
            f"need two views to explain a match; the row has {cols or 'none'} of the run's views"
        )
    return cols[:2]


def row_items(
    embedder: Embedder, data: str | Path, key: str, views: Sequence[str] | None = None
) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """(row, [(view column, raw item) x 2]) for one manifest row, read with the run's readers."""
    m = load_manifest(data)
    row = find_row(m, key)
    cols = [embedder.column_for(v) for v in views] if views else default_views(embedder, row)
    if len(cols) != 2:
        raise ValueError(f"give two views to explain (got {', '.join(cols)})")
    items = []
    for c in cols:
        if row.get(c) is None:
            raise ValueError(f"{m.path}: row '{key}' has no value in column '{c}'")
        items.append((c, embedder.read(c, [row[c]], m.base_dir)[0]))
    return row, items
