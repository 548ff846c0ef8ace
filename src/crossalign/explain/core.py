"""`explain_pair`: the similarity of two items in a run's shared space, attributed to the units of each side."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from crossalign.align.embedder import Embedder
from crossalign.explain.methods import (
    METHODS,
    Attribution,
    default_method,
    integrated_gradients,
    occlusion,
    raw_score,
)
from crossalign.explain.units import Units, make_units

__all__ = ["SideExplanation", "PairExplanation", "explain_side", "explain_pair", "side_units"]


@dataclass
class SideExplanation:
    column: str
    modality: str
    method: str
    why: str  # why this method (the default per tower, or "asked for")
    unit_kind: str  # word | cell | window
    labels: list[str]
    values: list[float]  # attribution per unit, in units of the cosine score
    baseline_score: float  # the score with every unit of this side removed
    completeness_gap: float | None  # IG: |sum(values) - (score - baseline_score)|; None for occlusion
    geometry: dict[str, Any]
    raw: Any = field(default=None, repr=False)  # the item itself (for pictures; not serialised)
    units: Units | None = field(default=None, repr=False)

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        order = np.argsort(-np.asarray(self.values), kind="stable")[:k]
        return [(self.labels[i], self.values[i]) for i in order]

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "modality": self.modality,
            "method": self.method,
            "why": self.why,
            "unit": self.unit_kind,
            "units": [{"label": lbl, "attribution": v} for lbl, v in zip(self.labels, self.values)],
            "baseline_score": self.baseline_score,
            "completeness_gap": self.completeness_gap,
            "geometry": self.geometry,
        }


@dataclass
class PairExplanation:
    score: float  # cosine similarity of the two items in the shared space
    sides: list[SideExplanation]

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "sides": [s.to_dict() for s in self.sides]}


def side_units(
    embedder: Embedder,
    col: str,
    raw: Any,
    grid: int | None = None,
    window_s: float = 0.25,
    cells: Any = None,
    fill: str = "noise",
) -> Units:
    """Units of one item as the run's tower for `col` reads it (image cells on the encoder's grid and
    at its input size when its spec records them). Every unit maker takes the options it knows."""
    spec = embedder.model.specs[col]
    size = spec.options.get("size")
    return make_units(spec.modality, raw, grid=grid or int(spec.options.get("grid") or 0) or 4,
                      size=int(size) if size else None, window_s=window_s, cells=cells, fill=fill)


def explain_side(
    embedder: Embedder,
    col: str,
    raw: Any,
    target: np.ndarray | torch.Tensor,
    method: str = "auto",
    steps: int = 64,
    ig_baseline: str = "expected",
    **unit_opts: Any,
) -> SideExplanation:
    """Attribute `cos(embed(raw), target)` to the units of `raw` (target: the other side's embedding)."""
    col = embedder.column_for(col)
    t = torch.as_tensor(np.asarray(target, dtype=np.float32)).reshape(-1)
    if method == "auto":
        method, why = default_method(embedder, col)
    elif method in METHODS:
        why = "asked for"
    else:
        raise ValueError(f"unknown method '{method}' (auto, {', '.join(METHODS)})")
    u = side_units(embedder, col, raw, **unit_opts)
    a: Attribution
    if method == "ig":
        a = integrated_gradients(embedder, col, u, t, steps=steps, baseline=ig_baseline)
    else:
        a = occlusion(raw_score(embedder, col, u, t), u)
    spec = embedder.model.specs[col]
    return SideExplanation(
        col,
        spec.modality,
        a.method,
        why,
        u.kind,
        list(u.labels),
        [float(v) for v in a.values],
        float(a.baseline_score),
        a.gap,
        u.geometry,
        raw,
        u,
    )


def explain_pair(
    embedder: Embedder,
    a: tuple[str, Any],
    b: tuple[str, Any],
    method: str = "auto",
    methods: dict[str, str] | None = None,
    sides: str = "both",
    **opts: Any,
) -> PairExplanation:
    """Explain the similarity of raw item a = (view, raw) and b = (view, raw); `sides` is both | a | b.
    `methods` picks a method per view column (else `method` for all)."""
    col_a, col_b = embedder.column_for(a[0]), embedder.column_for(b[0])
    za = embedder.embed_raw(col_a, [a[1]])[0]
    zb = embedder.embed_raw(col_b, [b[1]])[0]
    score = float(za @ zb)
    out = []
    todo = {
        "both": ((col_a, a[1], zb), (col_b, b[1], za)),
        "a": ((col_a, a[1], zb),),
        "b": ((col_b, b[1], za),),
    }
    if sides not in todo:
        raise ValueError("sides must be both, a or b")
    for col, raw, target in todo[sides]:
        m = (methods or {}).get(col, method)
        out.append(explain_side(embedder, col, raw, target, m, **opts))
    return PairExplanation(score, out)
