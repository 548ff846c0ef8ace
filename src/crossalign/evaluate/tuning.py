"""Closed-form baselines with every hyperparameter chosen on the validation split.

A tuner sees only the train split (to fit) and the validation split (to score): `ViewData` holds
nothing else, so the test split cannot influence a choice. Each tuner returns the best `Fitted`
pair of maps with its validation score and the chosen hyperparameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from crossalign.evaluate.closed_form import (Basis, KernelMap, LinearMap, NystromMap, PairScorer, cca_solve,
                                             pca_basis)

__all__ = ["ViewData", "Fitted", "TUNERS", "REGS", "POWERS", "dims_grid"]

REGS = np.logspace(-3, 1, 9)  # ridge on the covariances, relative to their mean variance
POWERS = (0.0, 0.5, 1.0, 2.0)  # canonical components weighted by correlation ** power
Map = Callable[[np.ndarray], np.ndarray]


def dims_grid(k: int, lo: int = 16) -> list[int]:
    return sorted({d for d in (lo, 32, 64, 128, 256, 512) if d < k} | {k})


@dataclass
class ViewData:
    """One view's train fit and validation scores in its PCA basis (all axes up to `max_k`)."""

    basis: Basis
    tr: np.ndarray  # (N_train, K) train scores
    va: np.ndarray  # (N_val, K) validation scores
    raw_tr: np.ndarray = field(repr=False)  # flattened features (for the encoder's own space)
    raw_va: np.ndarray = field(repr=False)
    spec_key: tuple[Any, ...] = ()  # (encoder name, output shape): equal keys share an encoder space
    kernel: dict[tuple[int, float], tuple[NystromMap, Basis, np.ndarray, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def fit(cls, train: np.ndarray, val: np.ndarray, max_k: int = 512, spec_key: tuple[Any, ...] = (),
            standardize: bool = True, basis_from: np.ndarray | None = None) -> "ViewData":
        """`basis_from`: the items the PCA basis is fitted on (default the train rows; e.g. paired +
        unpaired items). Then the train scores' covariance is not diagonal in it (see `mcca_solve`)."""
        b = pca_basis(train if basis_from is None else basis_from, max_k, standardize)
        return cls(b, b.scores(train).astype(np.float64), b.scores(val).astype(np.float64),
                   train.reshape(len(train), -1), val.reshape(len(val), -1), spec_key)

    @property
    def k(self) -> int:
        return self.basis.k

    def kernel_view(self, m: int, width: float, p: int = 128, seed: int = 0):  # type: ignore[no-untyped-def]
        """Nyström RBF features of the first p PCA axes, in their own PCA basis (memoised)."""
        key = (m, width)
        if key not in self.kernel:
            p = min(p, self.k)
            ny = NystromMap.fit(self.tr[:, :p].astype(np.float32), m, width, seed)
            phi = ny(self.tr[:, :p].astype(np.float32))
            kb = pca_basis(phi, max_k=m, standardize=False)
            self.kernel[key] = (ny, kb, kb.scores(phi).astype(np.float64),
                                kb.scores(ny(self.va[:, :p].astype(np.float32))).astype(np.float64))
        return self.kernel[key]


@dataclass
class Fitted:
    score: float  # validation: mean R@1 of both directions (+ MRR tie-break)
    params: dict[str, Any]
    maps: tuple[Map, Map]  # features of view a, of view b -> the common space
    linear: bool = True  # LinearMap on both sides (a head can hold it)


def _cca_grid(tr_a: np.ndarray, tr_b: np.ndarray, va_a: np.ndarray, va_b: np.ndarray, var_a: np.ndarray,
              var_b: np.ndarray, score: PairScorer, ks: list[int], regs: np.ndarray,
              max_c: int | None = None) -> tuple[float, dict[str, Any], tuple[np.ndarray, np.ndarray] | None]:
    """Best (dims, reg, components, weighting) on validation: every dims with every other reg of the
    grid, then the remaining regs at the best dims. Returns (score, params, (pa, pb))."""
    cross = tr_a.T @ tr_b / len(tr_a)  # (Ka, Kb)
    best: list[Any] = [-1.0, {}, None]

    def point(k: int, reg: float) -> None:
        ka, kb = min(k, len(var_a)), min(k, len(var_b))
        pa, pb, s = cca_solve(cross[:ka, :kb], var_a[:ka], var_b[:kb], reg)
        za, zb = va_a[:, :ka] @ pa, va_b[:, :kb] @ pb
        for c in dims_grid(min(len(s), max_c or len(s)), lo=8):
            for pw in POWERS:
                w = s[:c] ** pw
                sc = score(za[:, :c] * w, zb[:, :c] * w)
                if sc > best[0]:
                    best[:] = [sc, {"dims": k, "reg": reg, "components": c, "power": pw},
                               (pa[:, :c] * w, pb[:, :c] * w)]

    for k in ks:
        for reg in regs[::2]:
            point(k, float(reg))
    k_best = best[1]["dims"]
    for reg in regs[1::2]:
        point(k_best, float(reg))
    return best[0], best[1], best[2]


def tune_cca(a: ViewData, b: ViewData, score: PairScorer, max_c: int | None = None, **_: Any) -> Fitted:
    sc, params, (pa, pb) = _cca_grid(a.tr, b.tr, a.va, b.va, a.basis.var, b.basis.var, score,
                                     dims_grid(max(a.k, b.k)), REGS, max_c)  # type: ignore[misc]
    return Fitted(sc, params, (LinearMap(a.basis, pa), LinearMap(b.basis, pb)))


def tune_kcca(a: ViewData, b: ViewData, score: PairScorer, seed: int = 0, **_: Any) -> Fitted:
    """Nyström RBF kernel CCA: bandwidth (times the median squared distance) chosen with 256
    landmarks, then 768 landmarks tried at that bandwidth."""
    n = len(a.tr)
    best: tuple[float, dict[str, Any], Any] = (-1.0, {}, None)

    def point(m: int, width: float) -> None:
        nonlocal best
        na, kba, tra, vaa = a.kernel_view(m, width, seed=seed)
        nb, kbb, trb, vab = b.kernel_view(m, width, seed=seed)
        sc, params, proj = _cca_grid(tra, trb, vaa, vab, kba.var, kbb.var, score, [max(kba.k, kbb.k)], REGS)
        if sc > best[0]:
            best = (sc, {"landmarks": m, "width": width, **params}, (na, kba, nb, kbb, proj))

    for width in (0.5, 1.0, 2.0):
        point(min(n, 256), width)
    if n > 256:
        point(min(n, 768), best[1]["width"])
    sc, params, (na, kba, nb, kbb, (pa, pb)) = best
    # Each view's kernel sits on its own first p PCA axes (p = min(128, that view's rank)).
    p_a, p_b = len(na.landmarks[0]), len(nb.landmarks[0])
    return Fitted(sc, params, (KernelMap(a.basis, p_a, na, kba, pa), KernelMap(b.basis, p_b, nb, kbb, pb)),
                  linear=False)


def tune_ridge(a: ViewData, b: ViewData, score: PairScorer, max_c: int | None = None, **_: Any) -> Fitted:
    """Least squares from one view's PCA scores to the other's (raw or whitened), either direction."""
    best: tuple[float, dict[str, Any], Any] = (-1.0, {}, None)
    for src, dst, name in ((a, b, "a->b"), (b, a, "b->a")):
        cross = src.tr.T @ dst.tr / len(src.tr)
        for k in dims_grid(max(src.k, dst.k)):
            ks, kd = min(k, src.k), min(k, dst.k, max_c or dst.k)
            for white in (False, True):
                tgt = 1.0 / np.sqrt(dst.basis.var[:kd]) if white else np.ones(kd)
                for alpha in np.logspace(-3, 2, 11):
                    w = cross[:ks, :kd] / (src.basis.var[:ks] + alpha * src.basis.var[:ks].mean())[:, None] * tgt
                    zs, zd = src.va[:, :ks] @ w, dst.va[:, :kd] * tgt
                    sc = score(zs, zd)
                    if sc > best[0]:
                        best = (sc, {"map": name, "dims": k, "alpha": float(alpha), "whiten_target": white},
                                (src, w, dst, np.diag(tgt)))
    sc, params, (src, w, dst, t) = best
    maps = (LinearMap(src.basis, w), LinearMap(dst.basis, t))
    return Fitted(sc, params, maps if params["map"] == "a->b" else maps[::-1])


def tune_procrustes(a: ViewData, b: ViewData, score: PairScorer, max_c: int | None = None, **_: Any) -> Fitted:
    """Orthogonal rotation between the two PCA spaces (raw or whitened scores), dims tuned."""
    best: tuple[float, dict[str, Any], Any] = (-1.0, {}, None)
    for k in dims_grid(min(a.k, b.k, max_c or a.k)):
        for white in (False, True):
            ta = 1.0 / np.sqrt(a.basis.var[:k]) if white else np.ones(k)
            tb = 1.0 / np.sqrt(b.basis.var[:k]) if white else np.ones(k)
            u, _, vt = np.linalg.svd((a.tr[:, :k] * ta).T @ (b.tr[:, :k] * tb), full_matrices=False)
            pa, pb = ta[:, None] * (u @ vt), np.diag(tb)
            sc = score(a.va[:, :k] @ pa, b.va[:, :k] @ pb)
            if sc > best[0]:
                best = (sc, {"dims": k, "whiten": white}, (pa, pb))
    sc, params, (pa, pb) = best
    return Fitted(sc, params, (LinearMap(a.basis, pa), LinearMap(b.basis, pb)))


def tune_encoder(a: ViewData, b: ViewData, score: PairScorer, **_: Any) -> Fitted | None:
    """The encoders' own cosine, where both columns come from the same encoder (nothing to fit)."""
    if not a.spec_key or a.spec_key != b.spec_key:
        return None
    flat: Map = lambda x: np.asarray(x, np.float32).reshape(len(x), -1)  # noqa: E731
    return Fitted(score(a.raw_va, b.raw_va), {}, (flat, flat), linear=False)


def tune_random(a: ViewData, b: ViewData, score: PairScorer, seed: int = 0, **_: Any) -> Fitted:
    """An untrained random projection of each view's raw features (the floor)."""
    rng = np.random.default_rng(seed)
    pa = rng.standard_normal((a.raw_tr.shape[1], 256)).astype(np.float32)
    pb = rng.standard_normal((b.raw_tr.shape[1], 256)).astype(np.float32)
    maps = (lambda x: np.asarray(x, np.float32).reshape(len(x), -1) @ pa,
            lambda y: np.asarray(y, np.float32).reshape(len(y), -1) @ pb)
    return Fitted(score(maps[0](a.raw_va), maps[1](b.raw_va)), {}, maps, linear=False)


def tune_asif(a: ViewData, b: ViewData, score: PairScorer, **_: Any) -> Fitted:
    """ASIF relative representations (Norelli et al. 2023): the train pairs are the anchors; the
    sparsity k and the power p are chosen on validation, like every other baseline's settings."""
    from crossalign.semi.asif import asif_grid

    sc, params, reps = asif_grid((a.raw_tr, b.raw_tr), (a.raw_va, b.raw_va), score)
    return Fitted(sc, params, reps, linear=False)


TUNERS: dict[str, Callable[..., Fitted | None]] = {
    "cca": tune_cca, "kcca": tune_kcca, "ridge": tune_ridge, "procrustes": tune_procrustes,
    "encoder": tune_encoder, "random": tune_random, "asif": tune_asif}
