"""Deterministic train/val/test splits: one place that every room (training, evaluation,
benchmark, index build, fusion, bridge, the built-in data sets) asks, so `--split test` means the
same rows everywhere."""

from __future__ import annotations

import hashlib

from crossalign.data.manifest import Manifest

__all__ = ["ensure_splits", "has_splits", "split_of"]


def split_of(key: str, seed: int, fractions: tuple[float, float] = (0.8, 0.1)) -> str:
    """'train' / 'val' / 'test' from a hash of (seed, key): stable across runs and machines."""
    h = int(hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "train" if h < fractions[0] else ("val" if h < fractions[0] + fractions[1] else "test")


def has_splits(m: Manifest) -> bool:
    return all(r.get("split") for r in m.rows)


def ensure_splits(m: Manifest, seed: int = 0) -> Manifest:
    """Rows without a `split` get a deterministic 80/10/10 one by id hash (groups kept together)."""
    if has_splits(m):
        return m
    for i, r in enumerate(m.rows):
        if not r.get("split"):
            r["split"] = split_of(str(r.get("group") or r.get("id") or i), seed)
    return m
