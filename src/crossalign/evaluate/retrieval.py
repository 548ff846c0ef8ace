"""Retrieval metrics between two row-aligned embedding sets."""

from __future__ import annotations

import numpy as np

__all__ = ["ranks", "retrieval_metrics", "score_margin", "score_ranks"]


def ranks(q: np.ndarray, d: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """Rank (1 = best) of the best-scored relevant document for every query.

    q: (N, D) queries, d: (N, D) documents, row i of each is a pair. A document is relevant to
    query i when it is d[i] or, with `groups`, any d[j] with groups[j] == groups[i]. Ties count
    against the query (pessimistic), so a collapsed space cannot score well.
    """
    return score_ranks(q @ d.T, groups)


def score_ranks(s: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """`ranks` from an (N, N) score matrix (row i: query i against every document)."""
    if groups is None:
        rel = np.eye(len(s), dtype=bool)
    else:
        rel = groups[:, None] == groups[None, :]
    best = np.where(rel, s, -np.inf).max(1)  # (N,)
    return 1 + ((s >= best[:, None]) & ~rel).sum(1)


def score_margin(s: np.ndarray, groups: np.ndarray | None = None) -> float:
    """Mean over queries of (best relevant score - best irrelevant score) / sd of all scores: how far apart
    the right answers stand, in the space's own units. A tie-break where R@1 and MRR saturate (every
    candidate at 1.0 on a small validation split): it still tells a clear winner from a narrow one."""
    rel = np.eye(len(s), dtype=bool) if groups is None else groups[:, None] == groups[None, :]
    if rel.all():
        return 0.0
    best = np.where(rel, s, -np.inf).max(1)  # (N,)
    neg = np.where(rel, -np.inf, s).max(1)  # (N,)
    return float(np.mean(best - neg) / max(float(s.std()), 1e-12))


def retrieval_metrics(q: np.ndarray, d: np.ndarray, groups: np.ndarray | None = None,
                      ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    r = ranks(q, d, groups)
    out = {f"R@{k}": float((r <= k).mean()) for k in ks}
    out["MdR"] = float(np.median(r))
    out["MRR"] = float((1.0 / r).mean())
    return out
