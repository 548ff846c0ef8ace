"""Is an explanation faithful? Deletion (remove the top-attributed units vs random ones) and pointing.

Deletion follows RISE / ROAR-style checks without retraining: if the attribution is right, removing
its top 10 % of units lowers the similarity far more than removing a random 10 %.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from crossalign.align.embedder import Embedder
from crossalign.explain.core import SideExplanation
from crossalign.explain.methods import raw_score
from crossalign.explain.units import remove_units

__all__ = ["DeletionResult", "deletion", "n_remove", "top_cell"]


@dataclass
class DeletionResult:
    score: float  # the full item's similarity
    top_drop: float  # score minus score without the top-attributed units
    random_drop: float  # the same for random units (mean over draws)
    k: int  # units removed


def n_remove(n_units: int, frac: float) -> int:
    return max(1, int(round(frac * n_units)))


def deletion(
    embedder: Embedder,
    side: SideExplanation,
    target: np.ndarray,
    frac: float = 0.1,
    draws: int = 8,
    seed: int = 0,
) -> DeletionResult:
    """Similarity drop after removing the top `frac` units (by attribution) vs `draws` random sets."""
    u = side.units
    if u is None:
        raise ValueError("deletion needs the explanation's units (explain_side keeps them)")
    t = torch.as_tensor(np.asarray(target, dtype=np.float32)).reshape(-1)
    f = raw_score(embedder, side.column, u, t)
    k = n_remove(u.n, frac)
    top = np.argsort(-np.asarray(side.values), kind="stable")[:k]
    rng = np.random.default_rng(seed)
    rand = [rng.choice(u.n, size=k, replace=False) for _ in range(draws)]
    batch = torch.cat([u.x, remove_units(u, top)] + [remove_units(u, r) for r in rand])  # (2 + draws, ...)
    s = f(batch).double().numpy()
    return DeletionResult(float(s[0]), float(s[0] - s[1]), float(s[0] - s[2:].mean()), k)


def top_cell(side: SideExplanation) -> tuple[int, int]:
    """(row, col) of the highest-attributed grid cell of an image/sensor side."""
    rows, cols = side.geometry["grid"]
    i = int(np.argmax(side.values))
    return i // cols, i % cols
