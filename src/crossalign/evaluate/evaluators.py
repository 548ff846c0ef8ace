"""Evaluators over embeddings of row-aligned views: flat `{"a->b/R@1": ...}` dicts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crossalign.evaluate.retrieval import retrieval_metrics

__all__ = ["RetrievalEvaluator", "mean_over_directions"]


def mean_over_directions(metrics: dict[str, float], names: tuple[str, ...] = ("R@1", "R@5", "R@10", "MRR")) -> dict[str, float]:
    out = {}
    for n in names:
        vals = [v for k, v in metrics.items() if "->" in k and k.endswith("/" + n)]
        if vals:
            out[f"mean/{n}"] = float(np.mean(vals))
    return out


@dataclass
class RetrievalEvaluator:
    """Retrieval in every direction between every pair of views. Primary metric: mean/R@1 (higher)."""

    groups: np.ndarray | None = None
    primary: str = "mean/R@1"
    greater_is_better: bool = True

    def __call__(self, emb: dict[str, np.ndarray]) -> dict[str, float]:
        out: dict[str, float] = {}
        cols = list(emb)
        for a in cols:
            for b in cols:
                if a == b:
                    continue
                for k, v in retrieval_metrics(emb[a], emb[b], self.groups).items():
                    out[f"{a}->{b}/{k}"] = v
        out.update(mean_over_directions(out))
        return out
