"""Geometry of the shared space.

- alignment (Wang & Isola 2020): E ||f(x) - f(y)||^2 over positive pairs (lower is better);
- uniformity (Wang & Isola 2020): log E exp(-2 ||f(x) - f(y)||^2) over all pairs of one view (lower);
- modality gap (Liang et al. 2022): || mean(A) - mean(B) || between two views' centroids.
"""

from __future__ import annotations

import numpy as np

__all__ = ["alignment", "uniformity", "modality_gap", "space_diagnostics"]


def alignment(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a - b) ** 2).sum(1).mean())


def uniformity(x: np.ndarray, t: float = 2.0, max_n: int = 2000) -> float:
    x = x[:max_n].astype(np.float64)
    sq = np.clip(2 - 2 * x @ x.T, 0, None)  # squared distances of unit vectors
    iu = np.triu_indices(len(x), 1)
    return float(np.log(np.exp(-t * sq[iu]).mean()))


def modality_gap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.mean(0) - b.mean(0)))


def space_diagnostics(emb: dict[str, np.ndarray]) -> dict[str, float]:
    out: dict[str, float] = {}
    cols = list(emb)
    for c in cols:
        out[f"{c}/uniformity"] = uniformity(emb[c])
    for i, a in enumerate(cols):
        for b in cols[i + 1:]:
            out[f"{a}-{b}/alignment"] = alignment(emb[a], emb[b])
            out[f"{a}-{b}/gap"] = modality_gap(emb[a], emb[b])
    return out
