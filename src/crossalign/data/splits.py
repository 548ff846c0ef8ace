"""Hash splits for manifests without a `split` column: the same assignment everywhere
(train, eval, benchmark, index build), so `--split test` means the same rows in each."""

from __future__ import annotations

from crossalign.data.manifest import Manifest

__all__ = ["ensure_splits", "has_splits"]


def has_splits(m: Manifest) -> bool:
    return all(r.get("split") for r in m.rows)


def ensure_splits(m: Manifest, seed: int = 0) -> Manifest:
    """Rows without a `split` get a deterministic 80/10/10 one by id hash (groups kept together)."""
    from crossalign.data.scenes import split_of

    if has_splits(m):
        return m
    for i, r in enumerate(m.rows):
        if not r.get("split"):
            r["split"] = split_of(str(r.get("group") or r.get("id") or i), seed)
    return m
