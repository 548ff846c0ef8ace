"""The closed-form start of a model, and defaults for small data.

`fit_closed_form` tunes a closed form on the train split against the validation split — for two
views the best of regularised CCA, kernel (Nyström RBF) CCA, ridge and Procrustes (exactly the
baselines `crossalign benchmark` prints), for more views a multi-view CCA — and `apply_closed_form` writes it into the model's linear paths with the heads' gates at
0, so the model *is* that solution until training moves it. A kernel solution needs linear paths
built with its Nyström front (`ClosedForm.kernel_shapes` -> `model.head.kernel`).

Hybrid start: with three or more views of which some are towers trained from scratch (the radar of
`scenes`), the closed form is fitted on the other views only and the from-scratch views keep their
heads (gate 1, linear path 0); `freeze_closed_form` then holds the fitted views still while those
towers learn into their space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

from crossalign.align.model import AlignmentModel
from crossalign.config import AlignTrainConfig, RunConfig
from crossalign.data.features import FeatureTable
from crossalign.evaluate.closed_form import AffineMap, KernelMap, LinearMap, PairScorer, mcca_solve
from crossalign.evaluate.tuning import (POWERS, REGS, Fitted, ViewData, dims_grid, tune_cca, tune_kcca,
                                       tune_procrustes, tune_ridge)

__all__ = ["ClosedForm", "fit_closed_form", "hybrid_split", "apply_closed_form", "freeze_closed_form", "small_data_defaults"]


@dataclass
class ClosedForm:
    method: str  # cca | kcca | ridge | procrustes | encoder | mcca | semi_cca (PCA axes from unpaired items too)
    params: dict[str, Any]
    val_score: float  # the tuner's validation score (mean R@1 over the fitted pairs + MRR tie-break)
    maps: dict[str, LinearMap | AffineMap | KernelMap] = field(repr=False, default_factory=dict)
    scratch: list[str] = field(default_factory=list)  # hybrid: views left to their from-scratch towers
    # two views: every tuned closed form by method (the winner included), for per-pair routing to reuse
    alternatives: dict[str, ClosedForm] = field(repr=False, default_factory=dict)

    def kernel_shapes(self) -> dict[str, list[int]]:
        """{column: [p, m]} of the views whose map is a Nyström kernel map (for `model.head.kernel`)."""
        return {c: [m.p, len(m.nystrom.landmarks)] for c, m in self.maps.items() if isinstance(m, KernelMap)}


@torch.no_grad()
def _standardised(model: AlignmentModel, table: FeatureTable | np.ndarray, col: str) -> np.ndarray:
    feats = table if isinstance(table, np.ndarray) else table.features[col]
    x = model.linear_source(col, torch.from_numpy(np.asarray(feats)))  # a tuned top: its outputs
    return model.linear[col].norm(x).flatten(1).numpy()


def hybrid_split(cols: list[str], from_scratch: list[str]) -> tuple[list[str], list[str]]:
    """(views the closed form fits, views left to their from-scratch towers): with three or more views
    the from-scratch ones learn into the others' closed form, if at least two others remain."""
    scratch = [c for c in cols if c in from_scratch] if len(cols) >= 3 else []
    fixed = [c for c in cols if c not in scratch]
    return (fixed, scratch) if len(fixed) >= 2 else (list(cols), [])


def fit_closed_form(model: AlignmentModel, tr: FeatureTable, va: FeatureTable, max_k: int = 512,
                    seed: int = 0, kernel: bool = True, extra: Mapping[str, np.ndarray] | None = None,
                    cache: dict[str, ViewData] | None = None) -> ClosedForm | None:
    """The best closed form on validation, in the linear paths' standardised inputs; None when a view
    has no linear path (a fine-tuned pretrained tower reads raw inputs). `kernel`: also try Nyström
    RBF solutions (landmarks drawn with `seed`, as the kcca baseline draws them). `extra`: unpaired
    items per view (features as in the tables): one more candidate, a (multi-view) CCA whose PCA
    bases are fitted on the paired + unpaired items of each view (see `_semi_mcca`). `cache`: each
    view's PCA basis and Nyström features, shared by calls whose models standardise that view alike
    (routing fits one closed form per pair; a view sits in V - 1 pairs)."""
    cols = model.columns
    if any(c not in model.linear for c in cols) or len(cols) < 2:
        return None
    fixed, scratch = hybrid_split(cols, [c for c in cols if model.specs[c].from_scratch])
    k = max_k if len(fixed) == 2 else min(max_k, 256)  # the joint eigenproblem grows with every view
    cache = {} if cache is None else cache
    for c in fixed:
        if f"{c}@{k}" not in cache:
            cache[f"{c}@{k}"] = ViewData.fit(_standardised(model, tr, c), _standardised(model, va, c), k,
                                             standardize=False)
    views = {c: cache[f"{c}@{k}"] for c in fixed}
    score = PairScorer(va.groups(), len(va))
    dim = model.cfg.dim
    if len(fixed) == 2:
        a, b = fixed
        tuners = [("cca", tune_cca), ("ridge", tune_ridge), ("procrustes", tune_procrustes)]
        fits = {n: t(views[a], views[b], score, max_c=dim) for n, t in tuners}
        if kernel:
            fits["kcca"] = tune_kcca(views[a], views[b], score, seed=seed)
        shared = _shared_space(model, views, tr, a, b, score)
        if shared is not None:
            fits["encoder"] = shared
        name = max(fits, key=lambda n: fits[n].score)  # ties keep the earlier (linear) one
        f = fits[name]
        alts = {n: ClosedForm(n, g.params, g.score, {a: g.maps[0], b: g.maps[1]})  # type: ignore[dict-item]
                for n, g in fits.items()}
        cf = ClosedForm(name, f.params, f.score, dict(alts[name].maps), alternatives=alts)
    else:
        # No kernel here: a multi-view CCA on Nyström features lost to the linear one on emoji
        # (val 0.328 vs 0.340, test 0.320 vs 0.357) at ~3x the time (docs/nobehind.md).
        cf = _tune_mcca(views, fixed, score, dim)
    semi = _semi_mcca(model, tr, va, extra, fixed, k, score, dim) if extra else None
    if semi is not None and len(fixed) == 2:  # one more of the pair's solutions (routing serves any of them)
        semi.method = "semi_cca"
        cf.alternatives["semi_cca"] = semi
    if semi is not None and semi.val_score > cf.val_score:  # ties keep the pairs-only fit
        cf = semi if len(fixed) > 2 else ClosedForm(semi.method, semi.params, semi.val_score, dict(semi.maps),
                                                    alternatives=cf.alternatives)
    cf.scratch = scratch
    return cf


def _semi_mcca(model: AlignmentModel, tr: FeatureTable, va: FeatureTable, extra: Mapping[str, np.ndarray],
               cols: list[str], k: int, score: PairScorer, dim: int) -> ClosedForm | None:
    """Semi-supervised CCA: each view's PCA basis (which axes the fit may use, up to k) from its paired
    and unpaired items; the within-view covariances that whiten, and the cross-covariances, from the
    pairs alone (full matrices in that basis). Whitening with the all-items covariance instead (classic
    SemiCCA mixing) scored lower on validation at every weight tried on scenes (docs/semi.md)."""
    if not all(len(extra.get(c, ())) for c in cols):
        return None
    views = {c: ViewData.fit(x := _standardised(model, tr, c), _standardised(model, va, c), k, standardize=False,
                             basis_from=np.concatenate([x, _standardised(model, np.asarray(extra[c]), c)]))
             for c in cols}
    cf = _tune_mcca(views, cols, score, dim, full=True)
    cf.params["basis"] = "paired+unpaired"
    return cf


def _shared_space(model: AlignmentModel, views: dict[str, ViewData], tr: FeatureTable, a: str, b: str,
                  score: PairScorer) -> Fitted | None:
    """Two columns from one encoder: the encoder's own cosine, kept as the top `dim` principal axes
    of both views' raw features together (an identity path that fits the shared dimension)."""
    sa, sb = model.specs[a], model.specs[b]
    if (sa.name, tuple(sa.output_shape), sa.version) != (sb.name, tuple(sb.output_shape), sb.version) or sa.from_scratch:
        return None
    raw = np.concatenate([views[a].raw_tr, views[b].raw_tr]).astype(np.float64)  # standardised, per view
    scale = {c: model.linear[c].norm.std.flatten().double().numpy() for c in (a, b)}
    mean = {c: model.linear[c].norm.mean.flatten().double().numpy() for c in (a, b)}
    x = np.concatenate([raw[:len(views[a].raw_tr)] * scale[a] + mean[a], raw[len(views[a].raw_tr):] * scale[b] + mean[b]])
    mu = x.mean(0)
    _, _, vt = np.linalg.svd(x - mu, full_matrices=False)
    p = vt[:model.cfg.dim].T  # (D, c)
    maps = {c: AffineMap(scale[c][:, None] * p, (mean[c] - mu) @ p) for c in (a, b)}
    return Fitted(score(maps[a](views[a].raw_va), maps[b](views[b].raw_va)), {"components": p.shape[1]},
                  (maps[a], maps[b]))


def _tune_mcca(views: dict[str, ViewData], cols: list[str], score: PairScorer, dim: int,
               full: bool = False) -> ClosedForm:
    """`full`: whiten with the train scores' full covariance (a basis not fitted on the train rows)."""
    n = len(views[cols[0]].tr)
    cross = {(i, j): views[a].tr.T @ views[b].tr / n for i, a in enumerate(cols) for j, b in enumerate(cols) if i < j}
    own = {c: views[c].tr.T @ views[c].tr / n if full else views[c].basis.var for c in cols}  # (K, K) or (K,)
    pairs = list(cross)
    best: list[Any] = [-1.0, {}, None]

    def point(k: int, reg: float) -> None:
        ks = [min(k, views[c].k) for c in cols]
        sub = {(i, j): c[:ks[i], :ks[j]] for (i, j), c in cross.items()}
        var = [own[c][:ks[i], :ks[i]] if full else own[c][:ks[i]] for i, c in enumerate(cols)]
        proj, w = mcca_solve(sub, var, reg, min(dim, sum(ks)))
        z = [views[c].va[:, :ks[i]] @ proj[i] for i, c in enumerate(cols)]
        for nc in dims_grid(len(w), lo=16):
            for pw in POWERS:
                s = w[:nc] ** pw
                sc = float(np.mean([score(z[i][:, :nc] * s, z[j][:, :nc] * s) for i, j in pairs]))
                if sc > best[0]:
                    best[:] = [sc, {"dims": k, "reg": reg, "components": nc, "power": pw},
                               [p[:, :nc] * s for p in proj]]

    for k in dims_grid(max(v.k for v in views.values()), lo=32):
        for reg in REGS[::2]:
            point(k, float(reg))
    for reg in REGS[1::2]:
        point(best[1]["dims"], float(reg))
    return ClosedForm("mcca", best[1], best[0], {c: LinearMap(views[c].basis, best[2][i]) for i, c in enumerate(cols)})


@torch.no_grad()
def apply_closed_form(model: AlignmentModel, cf: ClosedForm) -> None:
    """Linear paths := the closed form (zero-padded to `dim`); heads' gates := 0. Hybrid: the
    from-scratch views' linear paths := 0 and their gates := 1 (their heads carry them)."""
    for col, m in cf.maps.items():
        lp = model.linear[col]
        if isinstance(m, KernelMap):
            if lp.kernel is None:
                raise ValueError(f"view '{col}': a kernel closed form needs linear paths built with "
                                 "model.head.kernel = ClosedForm.kernel_shapes()")
            center, axes, lm, gamma = m.front()
            for buf, v in ((lp.kernel.center, center), (lp.kernel.axes, axes), (lp.kernel.landmarks, lm)):
                buf.copy_(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)))
            lp.kernel.gamma.fill_(float(gamma))
        w, bias = m.weight(), m.bias()  # (D or m, c), (c,) on standardised inputs (or kernel features)
        c = min(w.shape[1], lp.linear.out_features)
        lp.linear.weight.zero_()
        lp.linear.bias.zero_()
        lp.linear.weight[:c] = torch.from_numpy(w[:, :c].T.copy()).float()
        lp.linear.bias[:c] = torch.from_numpy(bias[:c].copy()).float()
        lp.gate.zero_()
    for col in cf.scratch:
        lp = model.linear[col]
        lp.linear.weight.zero_()
        lp.linear.bias.zero_()
        lp.gate.fill_(1.0)


def freeze_closed_form(model: AlignmentModel, cf: ClosedForm) -> None:
    """Hybrid start: the fitted views' linear paths, gates and heads stop training, so the
    from-scratch towers learn into the closed form's space instead of pulling it apart."""
    for col in cf.maps:
        for p in list(model.linear[col].parameters()) + list(model.heads[col].parameters()):
            p.requires_grad_(False)


def small_data_defaults(cfg: RunConfig, n_train: int, n_val: int) -> dict[str, Any]:
    """Below 5000 train rows, fields still at their defaults are scaled to the data: batches that give
    several steps an epoch, patience that a noisy small validation split cannot trip at epoch 0, a
    narrower head. Returns what changed (recorded in train_result.json)."""
    if not cfg.train.small_data or n_train >= 5000:
        return {}
    d, changed = AlignTrainConfig(), {}
    t = cfg.train
    if t.batch_size == d.batch_size:
        t.batch_size = int(min(256, max(32, n_train // 8)))
        changed["batch_size"] = t.batch_size
    if t.patience == d.patience and n_val < 500:
        t.patience = max(t.patience, t.epochs // 2)
        changed["patience"] = t.patience
    h = cfg.model.head
    if h.hidden == 1024 and n_train < 1000:
        h.hidden = 512
        changed["head.hidden"] = h.hidden
    return changed
