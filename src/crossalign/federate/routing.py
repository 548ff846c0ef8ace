"""Federated per-pair routing: after the rounds, each pair of the closed-form views is served by the
best on the sites' validation rows of the federated joint model, the pair's own CCA, or a score-level
mixture of the two, as `train.route: auto` does centrally (train/routing.py).

The pair's CCA needs nothing new from the sites: the server solves it for every (dims, reg) of the
central grid from the pooled bases and per-pair cross-moments the closed-form start already gathered
(federate/closed_form.py). One query stage (`route`) sends the candidates with the best global model;
each site scores, on its own validation rows, the joint model, every (candidate, components, power)
of the pair's CCA and its mixtures with the joint model (joint weight 1/4, 1/2, 3/4): scalars only.
The server sums them weighted by the sites' validation rows and keeps, per pair, the best; ties go to
the simpler route (joint, then CCA alone, then a mixture). From-scratch towers have no closed form:
their pairs keep the joint model.

A site's validation rows alone are a small gallery (about 35 rows per site on `scenes`), where every
candidate scores R@1 = 1 and nothing separates them. So each validation query is ranked against its
partner among the other view's validation rows *and* the site's training rows: the training rows are
distractors only, never queries or positives, which gives a gallery of several hundred.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch

from crossalign.align.embed import embed_table
from crossalign.align.heads import LinearPath
from crossalign.align.model import AlignmentModel
from crossalign.align.routes import MIX, route_key
from crossalign.config import RunConfig
from crossalign.data.features import FeatureTable
from crossalign.evaluate.closed_form import PairScorer, cca_solve, l2
from crossalign.evaluate.tuning import POWERS, REGS, dims_grid
from crossalign.federate.closed_form import Candidate, standardised
from crossalign.federate.params import exchanged_keys, from_record, norm_keys, to_record
from crossalign.train.routing import RouteChoice, routed_model

__all__ = ["JOINT_WEIGHTS", "GalleryScorer", "Pooled", "pair_candidates", "pick_routes", "route_arrays", "route_best_round",
           "site_route_scores", "val_then_train"]

log = logging.getLogger(__name__)
JOINT_WEIGHTS = (0.25, 0.5, 0.75)  # the joint model's weight in a joint + CCA mixture (quarters, as centrally)
MAX_COMPONENTS = 128  # components a pair's CCA may keep: the central picks on scenes keep 32


class Pooled(NamedTuple):
    """The closed-form start's pooled statistics: bases per view, the sites' per-pair moments, the views."""

    bases: dict[str, tuple[np.ndarray, np.ndarray]]
    moments: list[dict[str, np.ndarray]]
    views: list[str]


def route_best_round(model: AlignmentModel, cfg: RunConfig, pooled: Pooled,
                     ask: Callable[[dict[str, np.ndarray]], list[dict[str, float]]], info: dict[str, Any]
                     ) -> tuple[AlignmentModel, RunConfig] | None:
    """The server's side: `model` holds the best round; `ask` sends the arrays to every site in a `route`
    query and returns their scalars. Fills `info` (federation.json -> routing); returns the routed model
    and its config, or None when every pair keeps the joint model."""
    t0 = time.time()
    cands = pair_candidates(pooled.bases, pooled.moments, pooled.views)
    if not cands:
        info.update(routes={}, note="no pair of closed-form views to route")
        return None
    arrays = {**from_record(to_record(model, exchanged_keys(model) + norm_keys(model))),
              **route_arrays({c: pooled.bases[c] for c in pooled.views if c in pooled.bases}, cands)}
    choice = pick_routes(model, pooled.bases, cands, ask(arrays))
    info.update(routes=choice.report, candidates={k: len(v) for k, v in cands.items()}, seconds=round(time.time() - t0, 3))
    for key, r in choice.report.items():
        log.info("route %s: %s (sites' val %s)", key, r["chosen"], ", ".join(f"{k} {v:.4f}" for k, v in r["val"].items()))
    return routed_model(model, cfg, choice) if choice.routes else None


# -- server: the candidates ------------------------------------------------------------------------
def pair_candidates(bases: dict[str, tuple[np.ndarray, np.ndarray]], moments: list[dict[str, np.ndarray]],
                    cols: list[str]) -> dict[str, list[Candidate]]:
    """Per pair of `cols` that some site holds: its regularised CCA for every (dims, reg) of the central
    grid, from the pooled cross-moments of the sites holding both views (pooled PCA variances whiten)."""
    out: dict[str, list[Candidate]] = {}
    for i, a in enumerate(cols):
        for b in cols[i + 1:]:
            parts = [m for m in moments if f"{a}|{b}/cross" in m]
            n = sum(float(m[f"{a}|{b}/count"][0]) for m in parts)
            if not parts or n <= 0 or a not in bases or b not in bases:
                continue
            cross = sum(m[f"{a}|{b}/cross"].astype(np.float64) for m in parts) / n  # (K_a, K_b)
            var_a, var_b = bases[a][1], bases[b][1]
            cands = []
            for k in dims_grid(max(len(var_a), len(var_b)), lo=32):
                ka, kb = min(k, len(var_a)), min(k, len(var_b))
                for reg in REGS:
                    pa, pb, s = cca_solve(cross[:ka, :kb], var_a[:ka], var_b[:kb], float(reg))
                    c = min(len(s), MAX_COMPONENTS)
                    cands.append(Candidate(k, float(reg), {a: pa[:, :c], b: pb[:, :c]}, s[:c]))
            out[route_key(a, b)] = cands
    return out


def route_arrays(bases: dict[str, tuple[np.ndarray, np.ndarray]], cands: dict[str, list[Candidate]]
                 ) -> dict[str, np.ndarray]:
    out = {f"basis/{c}": comps.astype(np.float32) for c, (comps, _) in bases.items()}
    for key, cs in cands.items():
        for i, cand in enumerate(cs):
            out[f"route/{key}/{i}/w"] = cand.weights.astype(np.float32)
            out.update({f"route/{key}/{i}/{c}": p.astype(np.float32) for c, p in cand.proj.items()})
    return out


# -- site: scalars on its validation rows ----------------------------------------------------------
@torch.no_grad()
def site_route_scores(model: AlignmentModel, val: FeatureTable, train: FeatureTable,
                      arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """`model` holds the best global weights; `train` rows are gallery distractors (see the module
    docstring). For each routed pair whose both views this site holds:
    `KEY/joint`, `KEY/i/components/power/q` (q = 0: the CCA alone; q >= 1: mixed with the joint model at
    weight JOINT_WEIGHTS[q - 1]) and `KEY/rows`. Score: R@1 both ways + 1e-3 MRR, as centrally."""
    keys = sorted({k.split("/")[1] for k in arrays if k.startswith("route/")})
    cols = set(model.columns)
    pairs = [(key, *key.split("|")) for key in keys if set(key.split("|")) <= cols]
    if not pairs or len(val) < 2:
        return {}
    used = sorted({c for _, a, b in pairs for c in (a, b)})
    both = val_then_train(val, train)  # val rows first: the queries
    nv = len(val)
    joint = {c: e.astype(np.float64) for c, e in embed_table(model, both, columns=used).items()}  # unit rows
    zs = {c: standardised(model, both, c) @ arrays[f"basis/{c}"].astype(np.float64) for c in used}  # (N, K)
    score = GalleryScorer(val.groups(), nv, len(both))
    out: dict[str, float] = {}
    for key, a, b in pairs:
        ja, jb = joint[a], joint[b]
        out[f"{key}/joint"] = score(ja, jb)
        out[f"{key}/rows"] = float(nv)
        n = sum(1 for k in arrays if k.startswith(f"route/{key}/") and k.endswith("/w"))
        for i in range(n):
            w = arrays[f"route/{key}/{i}/w"].astype(np.float64)
            pa, pb = (arrays[f"route/{key}/{i}/{c}"].astype(np.float64) for c in (a, b))
            za, zb = zs[a][:, :len(pa)] @ pa, zs[b][:, :len(pb)] @ pb  # (N, c)
            for nc in dims_grid(len(w), lo=8):
                for j, pw in enumerate(POWERS):
                    s = w[:nc] ** pw
                    ua, ub = l2(za[:, :nc] * s), l2(zb[:, :nc] * s)
                    out[f"{key}/{i}/{nc}/{j}/0"] = score(ua, ub)
                    for q, wj in enumerate(JOINT_WEIGHTS, 1):  # unit blocks: cosine = wj cos_joint + (1-wj) cos_cca
                        mix_a = np.concatenate([ja * math.sqrt(wj), ua * math.sqrt(1 - wj)], 1)
                        mix_b = np.concatenate([jb * math.sqrt(wj), ub * math.sqrt(1 - wj)], 1)
                        out[f"{key}/{i}/{nc}/{j}/{q}"] = score(mix_a, mix_b)
    return out


def val_then_train(val: FeatureTable, train: FeatureTable) -> FeatureTable:
    """The site's validation rows, then its training rows (one manifest: both are splits of the site's table)."""
    if not len(train):
        return val
    return FeatureTable(val.manifest, np.concatenate([val.rows, train.rows]),
                        {c: np.concatenate([val.features[c], train.features[c]]) for c in val.features},
                        val.specs, [])


class GalleryScorer(PairScorer):
    """`PairScorer` (R@1 both ways + 1e-3 MRR, same ranking rule) for the first `nv` rows (the validation
    queries) against a gallery of all `n` rows of the other view: rows past `nv` are distractors only."""

    def __init__(self, groups: np.ndarray | None, nv: int, n: int):
        super().__init__(groups, nv)
        self.nv, self.plain = nv, False
        self.rel = np.pad(self.rel, ((0, 0), (0, n - nv)))  # (nv, n): distractor columns never relevant

    def __call__(self, za: np.ndarray, zb: np.ndarray) -> float:
        ua, ub = l2(za), l2(zb)
        r = np.concatenate([self._ranks(ua[:self.nv] @ ub.T), self._ranks(ub[:self.nv] @ ua.T)])
        return float((r == 1).mean() + 1e-3 * (1.0 / r).mean())


# -- server: the choice ----------------------------------------------------------------------------
def pick_routes(model: AlignmentModel, bases: dict[str, tuple[np.ndarray, np.ndarray]],
                cands: dict[str, list[Candidate]], site_scores: list[dict[str, float]]) -> RouteChoice:
    """Per pair, the best route by the val-row-weighted mean of the scores of the sites holding it;
    `model` (the global model) gives the linear paths' pooled standardisation."""
    out = RouteChoice()
    for key in cands:
        total: dict[str, float] = {}
        rows = 0.0
        for sc in site_scores:
            n = sc.get(f"{key}/rows", 0.0)
            if n <= 0:
                continue
            rows += n
            for k, v in sc.items():
                if k.startswith(f"{key}/") and not k.endswith("/rows"):
                    name = k[len(key) + 1:]
                    total[name] = total.get(name, 0.0) + n * v
        if rows <= 0 or "joint" not in total:
            continue
        mean = {k: v / rows for k, v in total.items()}
        # ties: joint, then a CCA alone, then a mixture (the simpler route), then the earlier candidate
        order = ["joint"] + sorted((k for k in mean if k != "joint"), key=lambda k: (k.endswith("/0") is False,))
        win = max(enumerate(order), key=lambda t: (round(mean[t[1]], 12), -t[0]))[1]
        best_cca = max((k for k in mean if k.endswith("/0")), key=lambda k: mean[k], default=None)
        report: dict[str, Any] = {"chosen": "joint", "val": {"joint": mean["joint"]},
                                  "sites_rows": rows}
        best_mix = max((k for k in mean if k != "joint" and not k.endswith("/0")), key=lambda k: mean[k], default=None)
        for name, k in (("cca", best_cca), ("mix", best_mix)):  # the best of each kind, for the record
            if k is not None:
                report["val"][name] = mean[k]
        out.report[key] = report
        if win == "joint":
            out.routes[key] = {"method": "joint"}
            continue
        i, nc, j, q = (int(x) for x in win.split("/"))
        cand = cands[key][i]
        s = cand.weights[:nc] ** POWERS[j]
        route = {"method": "cca", "width": nc,
                 "params": {"dims": cand.dims, "reg": cand.reg, "components": nc, "power": POWERS[j], "federated": True}}
        a, b = key.split("|")
        mods = {c: _path(model, c, bases[c][0][:, :len(cand.proj[c])] @ (cand.proj[c][:, :nc] * s)) for c in (a, b)}
        if q:
            wj = JOINT_WEIGHTS[q - 1]
            route = {"method": MIX, "parts": [{"weight": wj, "method": "joint"}, {"weight": 1 - wj, **route}]}
            prefix = f"router.paths.{key}@cca"
        else:
            prefix = f"router.paths.{key}"
        for c, m in mods.items():
            out.state.update({f"{prefix}.{c}.{n}": t for n, t in m.state_dict().items()})
        out.routes[key] = route
        report.update(chosen="cca" if not q else f"joint*{JOINT_WEIGHTS[q - 1]:.2f}+cca*{1 - JOINT_WEIGHTS[q - 1]:.2f}",
                      route=route)
        report["val"]["chosen"] = mean[win]
    if all(r["method"] == "joint" for r in out.routes.values()):
        out.routes = {}
    return out


def _path(model: AlignmentModel, col: str, w: np.ndarray) -> LinearPath:
    """A route's linear path: the global model's pooled standardisation of `col`, then `w` (D, c)."""
    src = model.linear[col]
    lp = LinearPath(tuple(src.norm.mean.shape), w.shape[1])
    with torch.no_grad():
        lp.norm.mean.copy_(src.norm.mean)
        lp.norm.std.copy_(src.norm.std)
        lp.linear.weight.copy_(torch.from_numpy(w.T.copy()).float())
        lp.linear.bias.zero_()
        lp.gate.zero_()
    return lp
