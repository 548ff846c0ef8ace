"""Soft pseudo-targets for unpaired items from an optimal-transport coupling (S-CLIP, Mo et al. 2023).

An unpaired item u of view `a` is matched, in view a's own space, to the paired items P of that
view by an entropic OT plan (Sinkhorn, POT). Row u of the plan, normalised, is a distribution over
the paired rows; the partners of those rows in another view `b` become u's soft targets there.
The paired side's marginal is relaxed (unbalanced OT, KL penalty `balance`) so that a paired item
that really has many look-alikes may take more than its uniform share; `balance=None` is the plain
balanced Sinkhorn of S-CLIP.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["PseudoTargets", "cosine_cost", "pseudo_targets"]


def _l2(x: np.ndarray) -> np.ndarray:
    x = x.reshape(len(x), -1).astype(np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)


def cosine_cost(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N, M) cosine distance 1 - cos(x_i, y_j), in [0, 2]."""
    return 1.0 - _l2(x) @ _l2(y).T


@dataclass
class PseudoTargets:
    targets: np.ndarray  # (U, P) rows sum to 1: distribution of unpaired item u over the paired rows
    confidence: np.ndarray  # (U,) in [0, 1]: 1 - normalised entropy of the row

    def top(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(U, k) indices and renormalised weights of each row's k largest targets."""
        k = min(k, self.targets.shape[1])
        idx = np.argpartition(-self.targets, k - 1, axis=1)[:, :k]  # (U, k)
        w = np.take_along_axis(self.targets, idx, 1)
        return idx, w / w.sum(1, keepdims=True).clip(min=1e-12)


def pseudo_targets(unpaired: np.ndarray, paired: np.ndarray, reg: float = 0.05,
                   balance: float | None = 1.0, max_iter: int = 2000) -> PseudoTargets:
    """Sinkhorn coupling between U unpaired and P paired items of one view -> soft targets.

    unpaired (U, ...), paired (P, ...): features or embeddings of the same view (flattened, compared
    by cosine). reg: entropic regularisation relative to the mean cost (smaller = sharper).
    balance: KL weight on the paired-side marginal (None: exact uniform marginals).
    """
    import ot

    if len(paired) == 0:
        raise ValueError("pseudo-targets need at least one paired item")
    u, p = len(unpaired), len(paired)
    if u == 0:
        return PseudoTargets(np.zeros((0, p), np.float32), np.zeros(0, np.float32))
    m = cosine_cost(unpaired, paired)
    m = m / max(float(m.mean()), 1e-12)  # reg is relative to the typical cost
    a, b = np.full(u, 1.0 / u), np.full(p, 1.0 / p)
    if balance is None:
        plan = ot.sinkhorn(a, b, m, reg, method="sinkhorn_log", numItermax=max_iter, warn=False)
    else:  # exact marginal on the unpaired side (every item gets its full mass), relaxed on the paired side
        with warnings.catch_warnings():  # "did not converge" at max_iter still leaves a usable plan
            warnings.simplefilter("ignore")
            plan = ot.unbalanced.sinkhorn_unbalanced(a, b, m, reg, (float("inf"), balance),
                                                     method="sinkhorn_stabilized", numItermax=max_iter)
    plan = np.nan_to_num(np.asarray(plan, dtype=np.float64), nan=0.0)
    rows = plan.sum(1, keepdims=True)
    empty = rows[:, 0] <= 0  # underflow: fall back to the nearest paired item
    t = plan / np.where(rows > 0, rows, 1.0)
    if empty.any():
        t[empty] = 0.0
        t[empty, m[empty].argmin(1)] = 1.0
    ent = -(t * np.log(t.clip(min=1e-30))).sum(1)
    conf = 1.0 - ent / np.log(p) if p > 1 else np.ones(u)
    return PseudoTargets(t.astype(np.float32), np.clip(conf, 0.0, 1.0).astype(np.float32))
