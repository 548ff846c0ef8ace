"""Closed-form alignment in a view's PCA basis: regularised CCA (two or more views), ridge, Procrustes,
and a Nyström RBF feature map for kernel CCA.

Every view is first standardised (as the heads' `Standardize` does) and rotated into its principal
axes once; in that basis a view's covariance is diagonal, so whitening with any ridge is a division
and a whole grid of (dimensions, regularisation) costs one small SVD per point. Hyperparameters are
chosen elsewhere (`evaluate/tuning.py`) on the validation split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Basis", "pca_basis", "NystromMap", "LinearMap", "AffineMap", "KernelMap", "cca_solve", "mcca_solve", "l2",
           "pair_score", "PairScorer"]


def l2(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-9)


def _flat(x: np.ndarray) -> np.ndarray:
    return np.asarray(x).reshape(len(x), -1)


@dataclass
class Basis:
    """Standardise, centre, rotate into principal axes (all fitted on the train split)."""

    mean: np.ndarray  # (D,) per-feature train mean
    scale: np.ndarray  # (D,) per-feature train std (unbiased, >= 1e-4, as `Standardize`)
    comps: np.ndarray  # (D, K) orthonormal principal directions of the standardised features
    var: np.ndarray  # (K,) variance along each direction, descending

    @property
    def k(self) -> int:
        return len(self.var)

    def scores(self, x: np.ndarray, k: int | None = None) -> np.ndarray:
        z = (_flat(x).astype(np.float32) - self.mean) / self.scale  # (N, D)
        return z @ self.comps[:, :k]  # (N, k)


def pca_basis(x: np.ndarray, max_k: int = 512, standardize: bool = True) -> Basis:
    """Exact PCA via the smaller of the covariance (D x D) and Gram (N x N) matrices."""
    x = _flat(x).astype(np.float32)
    n, d = x.shape
    mean = x.mean(0)
    scale = x.std(0, ddof=1).clip(min=1e-4) if standardize and n > 1 else np.ones(d, np.float32)
    z = (x - mean) / scale  # (N, D)
    if d <= n:
        w, v = np.linalg.eigh((z.T @ z).astype(np.float64) / n)
        w, v = w[::-1], v[:, ::-1]
    else:  # principal directions from the Gram matrix's eigenvectors: v = z^T u / sqrt(n w)
        w, u = np.linalg.eigh((z @ z.T).astype(np.float64) / n)
        w, u = w[::-1], u[:, ::-1]
        keep = w > 1e-9 * max(w[0], 1e-30)
        w, u = w[keep], u[:, keep]
        v = (z.T @ u.astype(np.float32)) / np.sqrt(n * w).astype(np.float32)  # (D, K)
    keep = w > 1e-9 * max(float(w[0]), 1e-30)
    k = int(min(max_k, keep.sum()))
    return Basis(mean.astype(np.float32), scale.astype(np.float32), v[:, :k].astype(np.float32),
                 w[:k].astype(np.float64))


@dataclass
class NystromMap:
    """RBF kernel features phi(x) = K(x, L) K(L, L)^-1/2 over m landmarks (Williams & Seeger 2001)."""

    landmarks: np.ndarray  # (m, p)
    gamma: float
    inv_sqrt: np.ndarray  # (m, m)

    @classmethod
    def fit(cls, s: np.ndarray, m: int, width: float, seed: int = 0) -> "NystromMap":
        rng = np.random.default_rng(seed)
        lm = s[rng.choice(len(s), size=min(m, len(s)), replace=False)]
        sample = s[rng.choice(len(s), size=min(len(s), 400), replace=False)]
        d2 = _sqdist(sample, sample)
        gamma = 1.0 / (width * float(np.median(d2[d2 > 0])) + 1e-12)
        w, v = np.linalg.eigh(np.exp(-gamma * _sqdist(lm, lm)))
        inv = (v / np.sqrt(np.clip(w, 1e-6 * w.max(), None))) @ v.T
        return cls(lm, gamma, inv.astype(np.float32))

    def __call__(self, s: np.ndarray) -> np.ndarray:
        return np.exp(-self.gamma * _sqdist(s, self.landmarks)).astype(np.float32) @ self.inv_sqrt  # (N, m)


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.clip((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0, None)


@dataclass
class LinearMap:
    """x -> basis scores (first len(proj) axes) @ proj: linear in the standardised features."""

    basis: Basis
    proj: np.ndarray  # (k, c)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.basis.scores(x, len(self.proj)) @ self.proj

    def weight(self) -> np.ndarray:
        """(D, c) map from the standardised, flattened features (what a linear head holds)."""
        return self.basis.comps[:, :len(self.proj)].astype(np.float64) @ self.proj

    def bias(self) -> np.ndarray:
        return -(self.basis.mean.astype(np.float64) @ self.weight())  # (c,)


@dataclass
class AffineMap:
    """x -> flat(x) @ w + b: any linear map given directly (e.g. the encoder's own space)."""

    w: np.ndarray  # (D, c)
    b: np.ndarray  # (c,)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return _flat(x).astype(np.float64) @ self.w + self.b

    def weight(self) -> np.ndarray:
        return self.w

    def bias(self) -> np.ndarray:
        return self.b


@dataclass
class KernelMap:
    """x -> view PCA scores (p axes) -> Nyström RBF features -> their PCA basis (k axes) @ proj."""

    basis: Basis
    p: int
    nystrom: NystromMap
    kbasis: Basis
    proj: np.ndarray  # (k, c)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.kbasis.scores(self.nystrom(self.basis.scores(x, self.p)), len(self.proj)) @ self.proj

    def front(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(center (D,), axes (D, p), landmarks (m, p), gamma): flat x -> (x - center) @ axes are the
        scores the landmarks live in (what `heads.NystromFeatures` holds)."""
        b = self.basis
        return b.mean, b.comps[:, :self.p] / b.scale[:, None], self.nystrom.landmarks, self.nystrom.gamma

    def weight(self) -> np.ndarray:
        """(m, c): the RBF values against the landmarks -> the common space (K(L,L)^-1/2 folded in)."""
        kb, k = self.kbasis, len(self.proj)
        return self.nystrom.inv_sqrt.astype(np.float64) @ (kb.comps[:, :k] / kb.scale[:, None]) @ self.proj

    def bias(self) -> np.ndarray:
        kb, k = self.kbasis, len(self.proj)
        return -((kb.mean / kb.scale).astype(np.float64) @ kb.comps[:, :k] @ self.proj)  # (c,)


def cca_solve(c: np.ndarray, var_a: np.ndarray, var_b: np.ndarray, reg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Regularised CCA given the cross-covariance c (ka, kb) of two views in their PCA bases (whose own
    covariances are diag(var)). With Ca_r^-1/2 C Cb_r^-1/2 = U S V^T the directions are Ca_r^-1/2 U and
    Cb_r^-1/2 V (Hotelling 1936); the ridge is `reg` times the mean variance. Returns (pa, pb, s)."""
    da = 1.0 / np.sqrt(var_a + reg * var_a.mean())
    db = 1.0 / np.sqrt(var_b + reg * var_b.mean())
    t = da[:, None] * c * db[None, :]  # (ka, kb)
    flip = t.shape[0] > t.shape[1]
    t = t.T if flip else t
    # eigh of the smaller Gram matrix is about twice as fast as an SVD at these sizes
    w, u = np.linalg.eigh(t @ t.T)
    w, u = w[::-1], u[:, ::-1]
    s = np.sqrt(np.clip(w, 0.0, None))
    v = (t.T @ u) / np.maximum(s, 1e-12)
    u, v = (v, u) if flip else (u, v)
    return da[:, None] * u, db[:, None] * v, s


def _whitener(v: np.ndarray, reg: float) -> np.ndarray:
    """Inverse square root of a ridged covariance: (k,) for diag(var) given as (k,) (the common case:
    a view's own PCA basis), else the (k, k) matrix for a full (k, k) covariance."""
    if v.ndim == 1:
        return 1.0 / np.sqrt(v + reg * v.mean())
    w, u = np.linalg.eigh(v + reg * np.trace(v) / len(v) * np.eye(len(v)))
    return (u / np.sqrt(np.clip(w, 1e-12 * max(float(w.max()), 1e-30), None))) @ u.T


def _whiten(d: np.ndarray, x: np.ndarray) -> np.ndarray:
    """d @ x for a whitener from `_whitener` (a (k,) diagonal scales rows; no (k, k) product)."""
    return d[:, None] * x if d.ndim == 1 else d @ x


def mcca_solve(cross: dict[tuple[int, int], np.ndarray], var: list[np.ndarray], reg: float,
               c: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Multi-view CCA (sum of correlations, Kettenring 1971) with each view whitened under a ridge:
    the top eigenvectors of the block matrix of whitened cross-covariances (identity blocks on the
    diagonal). With two views it is exactly `cca_solve`. `var[i]`: view i's covariance in its basis,
    its diagonal (k,) when the basis is the view's own PCA on these rows, else the full (k, k)
    matrix (a basis fitted on more items than the pairs). Returns per-view projections and weights."""
    d = [_whitener(v, reg) for v in var]  # (k_i,) or (k_i, k_i) each
    off = np.cumsum([0] + [len(v) for v in var])
    m = np.zeros((off[-1], off[-1]))
    for (i, j), cij in cross.items():
        blk = _whiten(d[j], _whiten(d[i], cij).T).T  # d_i C_ij d_j (whiteners are symmetric)
        m[off[i]:off[i + 1], off[j]:off[j + 1]] = blk
        m[off[j]:off[j + 1], off[i]:off[i + 1]] = blk.T
    w, v = np.linalg.eigh(m)
    w, v = w[::-1][:c], v[:, ::-1][:, :c]
    return [_whiten(d[i], v[off[i]:off[i + 1]]) for i in range(len(var))], np.clip(w, 1e-6, None)


class PairScorer:
    """Mean R@1 of both directions plus a 1e-3 MRR tie-break (small validation splits tie often).
    Same ranking rule as `evaluate.retrieval.ranks` (ties count against the query)."""

    def __init__(self, groups: np.ndarray | None, n: int):
        self.rel = np.eye(n, dtype=bool) if groups is None else groups[:, None] == groups[None, :]
        self.plain = groups is None

    def _ranks(self, s: np.ndarray) -> np.ndarray:
        best = np.diagonal(s) if self.plain else np.where(self.rel, s, -np.inf).max(1)
        return 1 + ((s >= best[:, None]) & ~self.rel).sum(1)

    def __call__(self, za: np.ndarray, zb: np.ndarray) -> float:
        s = l2(za) @ l2(zb).T  # (N, N)
        r = np.concatenate([self._ranks(s), self._ranks(s.T)])
        return float((r == 1).mean() + 1e-3 * (1.0 / r).mean())


def pair_score(za: np.ndarray, zb: np.ndarray, groups: np.ndarray | None) -> float:
    return PairScorer(groups, len(za))(za, zb)
