"""The evaluator contract and the evaluators that need only embeddings.

An evaluator is a callable `(emb, table) -> dict[str, float]` over the embeddings of one split's
row-aligned views (`emb[view]`: (N, D), unit length) and that split's `FeatureTable`, returning flat
keys such as `text->image/R@1`. It declares its `primary` metric (a key, or for per-view metrics the
name after `<view>/`) and whether greater is better, as sentence-transformers' evaluators do.
Evaluators that need the model (zero-shot, hard negatives, probes) live in `evaluate/plugins.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from crossalign.evaluate.diagnostics import space_diagnostics
from crossalign.evaluate.retrieval import retrieval_metrics

if TYPE_CHECKING:
    from crossalign.data.features import FeatureTable

__all__ = ["Evaluator", "RetrievalEvaluator", "DiagnosticsEvaluator", "mean_over_directions"]


@runtime_checkable
class Evaluator(Protocol):
    primary: str  # the headline metric: a key, or the metric name of per-view keys (`<view>/<primary>`)
    greater_is_better: bool

    def __call__(self, emb: dict[str, np.ndarray], table: FeatureTable | None = None) -> dict[str, float]: ...


def mean_over_directions(metrics: dict[str, float], names: tuple[str, ...] = ("R@1", "R@5", "R@10", "MRR")) -> dict[str, float]:
    out = {}
    for n in names:
        vals = [v for k, v in metrics.items() if "->" in k and k.endswith("/" + n)]
        if vals:
            out[f"mean/{n}"] = float(np.mean(vals))
    return out


@dataclass
class RetrievalEvaluator:
    """Retrieval in every direction between every pair of views. Positives: the same row, or with
    `groups` (else the table's `group` column) any row of the same group. Primary: mean/R@1 (higher)."""

    groups: np.ndarray | None = None
    primary: str = "mean/R@1"
    greater_is_better: bool = True

    def __call__(self, emb: dict[str, np.ndarray], table: FeatureTable | None = None) -> dict[str, float]:
        groups = self.groups if self.groups is not None or table is None else table.groups()
        out: dict[str, float] = {}
        cols = list(emb)
        for a in cols:
            for b in cols:
                if a == b:
                    continue
                for k, v in retrieval_metrics(emb[a], emb[b], groups).items():
                    out[f"{a}->{b}/{k}"] = v
        out.update(mean_over_directions(out))
        return out


@dataclass
class DiagnosticsEvaluator:
    """Geometry of the space (evaluate/diagnostics.py): uniformity per view; alignment and modality gap
    per pair of views. Primary: alignment of positive pairs (lower is better)."""

    primary: str = "alignment"
    greater_is_better: bool = False

    def __call__(self, emb: dict[str, np.ndarray], table: FeatureTable | None = None) -> dict[str, float]:
        return space_diagnostics(emb)
