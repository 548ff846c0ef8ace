"""Federated closed-form start: the pooled multi-view CCA from sufficient statistics, tuned on the
sites' validation rows, so federated training starts where centralised `train.start: auto` does.

Three query stages, once, before the Flower strategy starts (every message carries the pooled
standardisation of the linear paths, so each site standardises exactly as the server does):
1. `factor`: per view, the site's standardised training features X (N x D) as F = V S from the thin
   SVD X = U S V^T (D x rank). F F^T = X^T X, the site's scatter matrix; stacking every site's F
   gives the pooled PCA basis exactly (U, the rows' coordinates, never leaves the site);
2. `moments`: with the pooled bases broadcast, per pair of views the site holds, the summed
   cross-products z_a^T z_b of its basis scores (K_a x K_b) and its row count;
3. `score`: every (dims, reg) candidate the server solved, scored on the site's validation rows for
   every (components, power) of the grid `fit_closed_form` searches centrally: scalars only.
The server picks the candidate with the best val-row-weighted mean score and writes it into the
linear paths (gates 0), as `apply_closed_form` does centrally.

Hybrid (as centrally, `hybrid_split`): with three or more views of which some are from-scratch towers
and at least two are not, the stages cover only the others; the from-scratch views keep their heads
(gate 1, linear path 0) and the sites then train only those towers into the fixed closed-form space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from crossalign.data.features import FeatureTable
from crossalign.evaluate.closed_form import AffineMap, PairScorer, mcca_solve
from crossalign.evaluate.tuning import POWERS, REGS, dims_grid
from crossalign.train.start import ClosedForm

__all__ = ["STAGES", "Candidate", "pooled_bases", "solve_candidates", "pick", "site_stage", "stage_arrays", "standardised"]

STAGES = ("factor", "moments", "score")


@dataclass
class Candidate:
    dims: int
    reg: float
    proj: dict[str, np.ndarray]  # view -> (k_view, c) in its pooled basis
    weights: np.ndarray  # (c,) canonical correlations


# -- site side -----------------------------------------------------------------------------------
@torch.no_grad()
def standardised(model: Any, table: FeatureTable, col: str) -> np.ndarray:
    x = torch.from_numpy(np.asarray(table.features[col])).float()
    return model.linear[col].norm(x).flatten(1).double().numpy()  # (N, D)


def _factors(model: Any, table: FeatureTable, cols: list[str]) -> dict[str, np.ndarray]:
    out = {}
    for c in cols:
        x = standardised(model, table, c)
        if not len(x):  # a site without training rows adds nothing to the scatter
            s, vt = np.zeros(0), np.zeros((0, x.shape[1]))
        else:
            _, s, vt = np.linalg.svd(x, full_matrices=False)
        keep = s > 1e-9 * max(float(s[0]) if len(s) else 0.0, 1e-30)
        out[f"{c}/factor"] = (vt[keep].T * s[keep]).astype(np.float32)  # (D, rank)
        out[f"{c}/count"] = np.array([len(x)], np.float64)
    return out


def _pairs(cols: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for i, a in enumerate(cols) for b in cols[i + 1:]]


def _moments(model: Any, table: FeatureTable, cols: list[str], arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    z = {c: standardised(model, table, c) @ arrays[f"basis/{c}"].astype(np.float64) for c in cols}  # (N, K)
    out = {}
    for a, b in _pairs(cols):
        out[f"{a}|{b}/cross"] = (z[a].T @ z[b]).astype(np.float32)  # (K_a, K_b)
        out[f"{a}|{b}/count"] = np.array([len(table)], np.float64)
    return out


def _candidates_in(arrays: dict[str, np.ndarray], cols: list[str]) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
    n = sum(1 for k in arrays if k.startswith("cand/") and k.endswith("/w"))
    return [({c: arrays[f"cand/{i}/{c}"] for c in cols if f"cand/{i}/{c}" in arrays}, arrays[f"cand/{i}/w"])
            for i in range(n)]


def _scores(model: Any, table: FeatureTable, cols: list[str], arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean pair score (R@1 both ways + 1e-3 MRR, as `fit_closed_form`) of every candidate point."""
    zva = {c: standardised(model, table, c) @ arrays[f"basis/{c}"].astype(np.float64) for c in cols}
    score = PairScorer(table.groups(), len(table))
    out: dict[str, float] = {}
    for i, (proj, w) in enumerate(_candidates_in(arrays, cols)):
        z = {c: zva[c][:, :len(p)] @ p.astype(np.float64) for c, p in proj.items()}  # (N, c)
        pairs = [(a, b) for a, b in _pairs(cols) if a in z and b in z]
        for nc in dims_grid(len(w), lo=16):
            for j, pw in enumerate(POWERS):
                s = w[:nc].astype(np.float64) ** pw
                out[f"{i}/{nc}/{j}"] = float(np.mean([score(z[a][:, :nc] * s, z[b][:, :nc] * s) for a, b in pairs]))
    return out


def site_stage(stage: str, model: Any, train: FeatureTable, val: FeatureTable, cols: list[str],
               arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """One stage at a site -> (arrays to send, scalars to send). `model` holds the pooled linear norms;
    `cols`: the site's views that the closed form fits (a hybrid start leaves from-scratch towers out)."""
    if stage not in STAGES:
        raise ValueError(f"unknown closed-form stage {stage!r}; expected one of {STAGES}")
    if stage == "factor":
        return _factors(model, train, cols), {}
    if stage == "moments":
        return _moments(model, train, cols, arrays), {}
    if len(cols) < 2:  # a site with one fitted view (hybrid) scores no pair: it carries no weight in the pick
        return {}, {"val-rows": 0.0}
    if len(val) < 2:
        raise ValueError(f"needs at least 2 validation rows to score the closed form, has {len(val)}")
    return {}, {**_scores(model, val, cols, arrays), "val-rows": float(len(val))}


# -- server side ---------------------------------------------------------------------------------
def pooled_bases(stats: list[dict[str, np.ndarray]], cols: list[str], max_k: int
                 ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """view -> (comps (D, K), var (K,)): the PCA of the pooled standardised training features (whose
    pooled mean is 0 by construction), exactly as `pca_basis` would compute it on the pooled rows."""
    out = {}
    for c in cols:
        fs = [st[f"{c}/factor"].astype(np.float64) for st in stats if f"{c}/factor" in st]
        n = sum(float(st[f"{c}/count"][0]) for st in stats if f"{c}/count" in st)
        if not fs or n < 2:
            continue
        u, s, _ = np.linalg.svd(np.concatenate(fs, axis=1), full_matrices=False)  # (D, sum of ranks)
        var = s ** 2 / n
        keep = int(min(max_k, (var > 1e-9 * max(float(var[0]), 1e-30)).sum()))
        out[c] = (u[:, :keep], var[:keep])
    return out


def solve_candidates(bases: dict[str, tuple[np.ndarray, np.ndarray]], moments: list[dict[str, np.ndarray]],
                     dim: int) -> list[Candidate]:
    """Multi-view CCA (as `_tune_mcca`) for every (dims, reg) of the central grid; each pair's
    cross-covariance is pooled over the sites that hold both views (a pair nobody holds is 0)."""
    cols = list(bases)
    cross: dict[tuple[int, int], np.ndarray] = {}
    for i, a in enumerate(cols):
        for j, b in enumerate(cols):
            if i < j:
                parts = [m for m in moments if f"{a}|{b}/cross" in m]
                n = sum(float(m[f"{a}|{b}/count"][0]) for m in parts)
                if parts and n > 0:
                    cross[(i, j)] = sum(m[f"{a}|{b}/cross"].astype(np.float64) for m in parts) / n
    out = []
    for k in dims_grid(max(len(v) for _, v in bases.values()), lo=32):
        ks = [min(k, len(bases[c][1])) for c in cols]
        sub = {(i, j): m[:ks[i], :ks[j]] for (i, j), m in cross.items()}
        for reg in REGS:
            proj, w = mcca_solve(sub, [bases[c][1][:ks[i]] for i, c in enumerate(cols)], float(reg),
                                 min(dim, sum(ks)))
            out.append(Candidate(k, float(reg), {c: proj[i] for i, c in enumerate(cols)}, w))
    return out


def stage_arrays(bases: dict[str, tuple[np.ndarray, np.ndarray]], cands: list[Candidate] | None = None
                 ) -> dict[str, np.ndarray]:
    out = {f"basis/{c}": comps.astype(np.float32) for c, (comps, _) in bases.items()}
    for i, cand in enumerate(cands or []):
        out[f"cand/{i}/w"] = cand.weights.astype(np.float32)
        out.update({f"cand/{i}/{c}": p.astype(np.float32) for c, p in cand.proj.items()})
    return out


def pick(bases: dict[str, tuple[np.ndarray, np.ndarray]], cands: list[Candidate],
         site_scores: list[dict[str, float]]) -> ClosedForm:
    """The best (candidate, components, power) by the val-row-weighted mean of the sites' scores,
    as maps on the standardised, flattened inputs (pooled mean 0: no bias)."""
    total: dict[str, float] = {}
    rows = 0.0
    for sc in site_scores:
        n = sc["val-rows"]
        rows += n
        for k, v in sc.items():
            if k.count("/") == 2:  # "candidate/components/power"; other scalars (val-rows, site) are not scores
                total[k] = total.get(k, 0.0) + n * v
    if not total or rows <= 0:
        raise ValueError("no site scored the closed-form candidates")
    key = max(total, key=lambda k: total[k])
    i, nc, j = (int(x) for x in key.split("/"))
    cand = cands[i]
    s = cand.weights[:nc] ** POWERS[j]
    maps = {}
    for c, p in cand.proj.items():
        w = bases[c][0][:, :len(p)] @ (p[:, :nc] * s)  # (D, nc)
        maps[c] = AffineMap(w, np.zeros(w.shape[1]))
    params = {"dims": cand.dims, "reg": cand.reg, "components": nc, "power": POWERS[j], "candidates": len(cands)}
    return ClosedForm("mcca", params, total[key] / rows, maps)
