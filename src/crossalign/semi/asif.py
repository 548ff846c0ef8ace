"""ASIF relative representations (Norelli et al. 2023, "ASIF: coupled data turns unimodal models to
multimodal without training"): a training-free cross-modal baseline.

Each item of view a is described by its similarities to the n paired anchors of view a, and each
item of view b by its similarities to the same n anchors in view b; the two descriptions live in
one n-dimensional space (anchor i means the same pair in both). Similarities are sparsified to the
top k and raised to the power p, as in the paper, then L2-normalised.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["RelativeRep", "asif_fit"]


class RelativeRep:
    """Similarities to anchors: x (N, ...) -> (N, n_anchors), top-k sparse, power p, unit norm."""

    def __init__(self, anchors: np.ndarray, k: int = 64, p: float = 8.0):
        a = anchors.reshape(len(anchors), -1).astype(np.float64)
        self.mu, self.sd = a.mean(0), a.std(0) + 1e-6  # standardise with the anchors' own statistics
        self.anchors = self._unit(a)
        self.k, self.p = min(k, len(anchors)), p

    def _unit(self, x: np.ndarray) -> np.ndarray:
        x = (x - self.mu) / self.sd
        return x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        s = self._unit(x.reshape(len(x), -1).astype(np.float64)) @ self.anchors.T  # (N, n) cosine
        if self.k < s.shape[1]:
            cut = np.partition(s, -self.k, axis=1)[:, -self.k][:, None]  # k-th largest per row
            s = np.where(s >= cut, s, 0.0)
        s = np.clip(s, 0.0, None) ** self.p
        return (s / np.linalg.norm(s, axis=1, keepdims=True).clip(min=1e-12)).astype(np.float32)


def asif_fit(a: np.ndarray, b: np.ndarray, seed: int = 0, reduce: Any = None, k: int = 64,
             p: float = 8.0) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Baseline interface of `evaluate.baselines`: train pairs (a, b) are the anchors; returns
    project(x, y) -> (relative reps of x in view a, of y in view b). No fitting beyond that."""
    ra, rb = RelativeRep(a, k, p), RelativeRep(b, k, p)
    return lambda x, y: (ra(x), rb(y))
