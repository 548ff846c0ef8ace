"""Per-query ranks for crossalign and every baseline on one split, and bootstrap 95 % intervals.

The bootstrap resamples test queries with replacement (the same resamples for every method, so
intervals of two methods on one direction are comparable) and recomputes each metric from the
fixed per-query ranks.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from crossalign.data.features import FeatureTable
from crossalign.evaluate.baselines import baseline_vectors
from crossalign.evaluate.retrieval import ranks

__all__ = ["model_ranks", "baseline_ranks", "metrics_from_ranks", "bootstrap", "METRICS"]

METRICS = ("R@1", "R@5", "R@10", "MdR", "MRR")


def model_ranks(emb: dict[str, np.ndarray], groups: np.ndarray | None) -> dict[str, np.ndarray]:
    return {f"{a}->{b}": ranks(emb[a], emb[b], groups) for a in emb for b in emb if a != b}


def baseline_ranks(
    table: FeatureTable,
    columns: Sequence[str],
    train_split: str,
    test_split: str,
    methods: Sequence[str],
    seed: int = 0,
) -> dict[str, dict[str, np.ndarray]]:
    """{method: {"a->b": ranks}} with the baselines of `evaluate.baselines`: fitted on the train split,
    hyperparameters and the hubness correction chosen on validation, exactly as `crossalign benchmark`
    scores them."""
    vecs, groups = baseline_vectors(table, list(columns), train_split, test_split, list(methods), seed)
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, pairs in vecs.items():
        res = {}
        for (a, b), (za, zb) in pairs.items():
            res[f"{a}->{b}"], res[f"{b}->{a}"] = ranks(za, zb, groups), ranks(zb, za, groups)
        out[name] = res
    return out


def metrics_from_ranks(r: np.ndarray) -> dict[str, float]:
    """Same definitions as `evaluate.retrieval.retrieval_metrics`."""
    return {
        "R@1": float((r <= 1).mean()),
        "R@5": float((r <= 5).mean()),
        "R@10": float((r <= 10).mean()),
        "MdR": float(np.median(r)),
        "MRR": float((1.0 / r).mean()),
    }


def bootstrap(r: np.ndarray, n: int = 1000, seed: int = 0) -> dict[str, tuple[float, float]]:
    """{metric: (low, high)} 95 % percentile intervals over `n` resamples of the queries."""
    idx = np.random.default_rng(seed).integers(0, len(r), size=(n, len(r)))  # same resamples per call
    s = r[idx].astype(np.float64)  # (n, N)
    vals = {
        "R@1": (s <= 1).mean(1),
        "R@5": (s <= 5).mean(1),
        "R@10": (s <= 10).mean(1),
        "MdR": np.median(s, 1),
        "MRR": (1.0 / s).mean(1),
    }
    return {k: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) for k, v in vals.items()}
