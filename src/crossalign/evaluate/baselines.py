"""Classical baselines on the same cached features and splits as crossalign's heads.

Each baseline is fitted per pair of views on the train split and embeds the test split of both
views into a common space, where retrieval is scored exactly as for crossalign:
- `cca`: exact regularised CCA (closed form: whitening + SVD of the cross-covariance) on
  PCA-reduced, standardised features;
- `cca-sklearn`: scikit-learn's iterative CCA on the same inputs (slow: ~10 s a pair, and its
  NIPALS iterations often stop before converging; kept for reference in `crossalign benchmark`);
- `procrustes`: orthogonal Procrustes rotation between the two PCA spaces (scipy);
- `ridge`: least-squares (ridge) map from view a's PCA space to view b's;
- `random`: an untrained random projection of each view (the floor);
- `asif`: training-free relative representations over the train pairs as anchors (`semi/asif.py`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from crossalign.data.features import FeatureTable
from crossalign.evaluate.retrieval import retrieval_metrics
from crossalign.semi.asif import asif_fit

__all__ = ["BASELINES", "run_baselines"]


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-9)


class _Reducer:
    """Flatten, standardise, PCA to k dims (fitted on train)."""

    def __init__(self, k: int, seed: int = 0):
        self.k, self.seed = k, seed

    def fit(self, x: np.ndarray) -> "_Reducer":
        from sklearn.decomposition import PCA

        x = x.reshape(len(x), -1)
        self.mu, self.sd = x.mean(0), x.std(0) + 1e-6
        self.pca = PCA(n_components=min(self.k, x.shape[1], len(x) - 1), random_state=self.seed).fit((x - self.mu) / self.sd)
        return self

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.pca.transform((x.reshape(len(x), -1) - self.mu) / self.sd)


Reduce = Callable[[np.ndarray, int], _Reducer]
Fit = Callable[[np.ndarray, np.ndarray, int, Reduce],
               Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]]


def _fresh(seed: int) -> Reduce:
    return lambda x, k: _Reducer(k, seed).fit(x)


def _inv_sqrt(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    return (v / np.sqrt(np.clip(w, 1e-12, None))) @ v.T


def _cca(a: np.ndarray, b: np.ndarray, seed: int, reduce: Reduce | None = None, n: int = 48, reg: float = 1e-3):  # type: ignore[no-untyped-def]
    """Canonical directions maximise corr(A wa, B wb): with Ca^-1/2 Cab Cb^-1/2 = U S V^T,
    wa = Ca^-1/2 U and wb = Cb^-1/2 V (Hotelling 1936); a small ridge keeps the covariances invertible."""
    ra, rb = (reduce or _fresh(seed))(a, 128), (reduce or _fresh(seed))(b, 128)
    xa, xb = ra(a), rb(b)
    ma, mb = xa.mean(0), xb.mean(0)
    xa, xb = xa - ma, xb - mb
    ca, cb = xa.T @ xa / len(xa), xb.T @ xb / len(xb)
    ca += reg * np.trace(ca) / len(ca) * np.eye(len(ca))
    cb += reg * np.trace(cb) / len(cb) * np.eye(len(cb))
    wa, wb = _inv_sqrt(ca), _inv_sqrt(cb)
    u, _, vt = np.linalg.svd(wa @ (xa.T @ xb / len(xa)) @ wb)
    k = min(n, u.shape[1], vt.shape[0])
    pa, pb = wa @ u[:, :k], wb @ vt[:k].T
    return lambda x, y: (_l2((ra(x) - ma) @ pa), _l2((rb(y) - mb) @ pb))


def _cca_sklearn(a: np.ndarray, b: np.ndarray, seed: int, reduce: Reduce | None = None):  # type: ignore[no-untyped-def]
    from sklearn.cross_decomposition import CCA

    ra, rb = (reduce or _fresh(seed))(a, 128), (reduce or _fresh(seed))(b, 128)
    n = min(48, ra.pca.n_components_, rb.pca.n_components_)
    cca = CCA(n_components=n, max_iter=1000).fit(ra(a), rb(b))
    return lambda x, y: tuple(map(_l2, cca.transform(ra(x), rb(y))))


def _procrustes(a: np.ndarray, b: np.ndarray, seed: int, reduce: Reduce | None = None):  # type: ignore[no-untyped-def]
    from scipy.linalg import orthogonal_procrustes

    k = 128
    ra, rb = (reduce or _fresh(seed))(a, k), (reduce or _fresh(seed))(b, k)
    k = min(ra.pca.n_components_, rb.pca.n_components_)
    r, _ = orthogonal_procrustes(ra(a)[:, :k], rb(b)[:, :k])
    return lambda x, y: (_l2(ra(x)[:, :k] @ r), _l2(rb(y)[:, :k]))


def _ridge(a: np.ndarray, b: np.ndarray, seed: int, reduce: Reduce | None = None):  # type: ignore[no-untyped-def]
    from sklearn.linear_model import Ridge

    ra, rb = (reduce or _fresh(seed))(a, 256), (reduce or _fresh(seed))(b, 128)
    reg = Ridge(alpha=10.0).fit(ra(a), rb(b))
    return lambda x, y: (_l2(reg.predict(ra(x))), _l2(rb(y)))


def _random(a: np.ndarray, b: np.ndarray, seed: int, reduce: Reduce | None = None):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    pa = rng.standard_normal((int(np.prod(a.shape[1:])), 256)).astype(np.float32)
    pb = rng.standard_normal((int(np.prod(b.shape[1:])), 256)).astype(np.float32)
    return lambda x, y: (_l2(x.reshape(len(x), -1) @ pa), _l2(y.reshape(len(y), -1) @ pb))


BASELINES: dict[str, Fit] = {"cca": _cca, "cca-sklearn": _cca_sklearn, "procrustes": _procrustes, "ridge": _ridge,
                             "random": _random, "asif": asif_fit}


def run_baselines(table: FeatureTable, columns: list[str], train_split: str = "train", test_split: str = "test",
                  methods: list[str] | None = None, seed: int = 0) -> dict[str, dict[str, float]]:
    """{method: {"a->b/R@1": ...}} for every ordered pair of views."""
    tr, te = table.split(train_split), table.split(test_split)
    groups = te.groups()
    out: dict[str, dict[str, float]] = {}
    # A view's PCA is the same for every pair and method: fit it once per (view, size).
    memo: dict[tuple[str, int], _Reducer] = {}
    by_id = {id(tr.features[c]): c for c in columns}

    def reduce(x: np.ndarray, k: int) -> _Reducer:
        key = (by_id[id(x)], k)
        if key not in memo:
            memo[key] = _Reducer(k, seed).fit(x)
        return memo[key]

    for name in methods or list(BASELINES):
        res: dict[str, float] = {}
        for i, a in enumerate(columns):
            for b in columns[i + 1:]:
                project = BASELINES[name](tr.features[a], tr.features[b], seed, reduce)
                za, zb = project(te.features[a], te.features[b])
                for q, d, key in ((za, zb, f"{a}->{b}"), (zb, za, f"{b}->{a}")):
                    for k, v in retrieval_metrics(q, d, groups).items():
                        res[f"{key}/{k}"] = v
        from crossalign.evaluate.evaluators import mean_over_directions

        res.update(mean_over_directions(res))
        out[name] = res
    return out
