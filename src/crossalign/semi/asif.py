"""ASIF relative representations (Norelli et al. 2023, "ASIF: coupled data turns unimodal models to
multimodal without training"): a training-free cross-modal baseline.

Each item of view a is described by its similarities to the n paired anchors of view a, and each
item of view b by its similarities to the same n anchors in view b; the two descriptions live in
one n-dimensional space (anchor i means the same pair in both). Similarities are sparsified to the
top k and raised to the power p, as in the paper, then L2-normalised.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["RelativeRep", "asif_fit", "asif_grid", "GRID"]

GRID = ((16, 64, 256), (1.0, 4.0, 8.0))  # (k, p) tried on validation


class RelativeRep:
    """Similarities to anchors: x (N, ...) -> (N, n_anchors), top-k sparse, power p, unit norm."""

    def __init__(self, anchors: np.ndarray, k: int = 64, p: float = 8.0):
        a = anchors.reshape(len(anchors), -1).astype(np.float64)
        self.mu, self.sd = a.mean(0), a.std(0) + 1e-6  # standardise with the anchors' own statistics
        self.anchors = self._unit(a)
        self.k, self.p = min(k, len(anchors)), p

    def with_params(self, k: int, p: float) -> "RelativeRep":
        """The same anchors with another sparsity and power (no refit: a grid shares one fit)."""
        out = copy.copy(self)
        out.k, out.p = min(k, len(self.anchors)), p
        return out

    def _unit(self, x: np.ndarray) -> np.ndarray:
        x = (x - self.mu) / self.sd
        return x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)

    def sims(self, x: np.ndarray) -> np.ndarray:
        """(N, ...) -> (N, n) cosine to every anchor (what every (k, p) of a grid starts from)."""
        return self._unit(x.reshape(len(x), -1).astype(np.float64)) @ self.anchors.T

    def relative(self, s: np.ndarray) -> np.ndarray:
        """(N, n) cosines -> (N, n) relative representations: top k kept, clipped at 0, ** p, unit rows."""
        if self.k < s.shape[1]:
            cut = np.partition(s, -self.k, axis=1)[:, -self.k][:, None]  # k-th largest per row
            s = np.where(s >= cut, s, 0.0)
        s = np.clip(s, 0.0, None) ** self.p
        return (s / np.linalg.norm(s, axis=1, keepdims=True).clip(min=1e-12)).astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.relative(self.sims(x))


def asif_grid(tr: tuple[np.ndarray, np.ndarray], va: tuple[np.ndarray, np.ndarray],
              score: Callable[[np.ndarray, np.ndarray], float],
              cache: tuple[dict[str, Any], str, str] | None = None) -> tuple[float, dict[str, Any], tuple[RelativeRep, RelativeRep]]:
    """ASIF with (k, p) chosen on validation: `tr`/`va` are (view a, view b) features; returns
    (score, {"k", "p"}, (rep a, rep b)). Each view's anchors and validation cosines are computed once
    for the whole grid; `cache` = (dict, key a, key b) shares them across the pairs of one view set."""
    store, keys = (cache[0], cache[1:]) if cache else ({}, ("a", "b"))
    fits = []
    for key, t, v in zip(keys, tr, va):
        if key not in store:
            rep = RelativeRep(t)
            store[key] = (rep, rep.sims(v))
        fits.append(store[key])
    best: tuple[float, dict[str, Any], Any] = (-1.0, {}, None)
    for k in GRID[0]:
        for p in GRID[1]:
            ra, rb = fits[0][0].with_params(k, p), fits[1][0].with_params(k, p)
            sc = score(ra.relative(fits[0][1]), rb.relative(fits[1][1]))
            if sc > best[0]:
                best = (sc, {"k": ra.k, "p": p}, (ra, rb))
    return best


def asif_fit(a: np.ndarray, b: np.ndarray, seed: int = 0, reduce: Any = None, k: int = 64,
             p: float = 8.0) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Baseline interface of `evaluate.baselines`: train pairs (a, b) are the anchors; returns
    project(x, y) -> (relative reps of x in view a, of y in view b). No fitting beyond that."""
    ra, rb = RelativeRep(a, k, p), RelativeRep(b, k, p)
    return lambda x, y: (ra(x), rb(y))
