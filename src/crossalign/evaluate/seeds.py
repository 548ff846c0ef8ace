"""Several seeds of one experiment: per-metric mean and standard deviation."""

from __future__ import annotations

import numpy as np

__all__ = ["aggregate"]


def aggregate(runs: list[dict[str, float]]) -> dict[str, float]:
    """[{metric: value}, ...] -> {metric: mean, metric + "/sd": sample sd (0 for one run)}, over the
    metrics every run reports."""
    if not runs:
        return {}
    keys = [k for k in runs[0] if all(k in r for r in runs)]
    out: dict[str, float] = {}
    for k in keys:
        v = np.array([r[k] for r in runs], dtype=np.float64)
        out[k] = float(v.mean())
        out[f"{k}/sd"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    out["seeds"] = float(len(runs))
    return out
