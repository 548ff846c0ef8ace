"""`train.route: auto`: after the joint model is chosen, route every pair of views to the candidate that
serves that pair best on the validation split.

Candidates per pair (a, b): the joint model's own space (`joint`); the pair's own closed form tuned on
train against validation exactly as the two-view `train.start` candidate and the `crossalign benchmark`
baselines are (the best of CCA, kernel CCA, ridge, Procrustes and, where both columns share an encoder,
its own space); and ASIF relative representations (k, p chosen on validation like the `asif`
baseline). Every closed form the tuners fitted is a candidate (CCA, kernel CCA, ridge, Procrustes, the
shared encoder space), not only the pair's best one. With `train.route: auto` the best `MIX_TOP` single
candidates are also mixed at score level: the block sqrt(w1) u1 (+) sqrt(w2) u2 (+) ... gives the
similarity sum_i w_i cos_i, the weights on a grid of quarters (align/routes.py). Each candidate and
mixture is scored on validation by R@1 averaged over a->b and b->a (with `hubness`, as served after the
CSLS correction: train/route_csls.py); ties go to the simpler route (fewer parts, then MRR, then the
standardised margin, then the earlier candidate: joint first). The test split is never read. When every
pair keeps `joint` the model is unchanged; otherwise the winners become `model.routes` and fixed blocks
of the model.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from crossalign.align.embed import embed_table
from crossalign.align.io import build_towers
from crossalign.align.model import AlignmentModel, linear_input_shape
from crossalign.align.routes import MIX, route_key, route_parts
from crossalign.config import RunConfig
from crossalign.data.features import FeatureTable, with_unpaired
from crossalign.encoders import EncoderSpec
from crossalign.evaluate.closed_form import PairScorer
from crossalign.evaluate.retrieval import retrieval_metrics, score_margin
from crossalign.progress import progress_bar
from crossalign.train.route_csls import HubScorer
from crossalign.train.start import apply_closed_form, fit_closed_form

__all__ = ["RouteChoice", "candidate_route", "choose_routes", "joint_model", "pair_closed_forms", "routed_model"]

log = logging.getLogger(__name__)
MAX_WIDTH = 512  # components a pair's closed form may keep (the baselines' PCA cap)
MIX_TOP, MIX_STEPS = 3, 4  # mixtures of the best 3 single candidates, weights in quarters
Extra = Mapping[str, np.ndarray] | None  # unpaired items per view (semi-supervised runs)


class RouteChoice:
    """What `choose_routes` found: `routes` (for `model.routes`, empty when every pair keeps the joint
    space), `state` (the router's weights, `router.`-prefixed) and `report` (train_result.json)."""

    def __init__(self) -> None:
        self.routes: dict[str, dict[str, Any]] = {}
        self.state: dict[str, torch.Tensor] = {}
        self.report: dict[str, Any] = {}
        self.mix_s = 0.0  # seconds spent scoring mixtures (the candidates' fits are the rest)


def pair_closed_forms(cfg: RunConfig) -> bool:
    """Whether routing fits each pair's own closed forms. Two views started from their closed form already
    had it as a start candidate, compared uncorrected; with `train.hubness` on, the pair's closed forms
    are candidates again, scored as served (cedict: 0.669 -> 0.676 test mean R@1, README)."""
    return len(cfg.model.columns) > 2 or cfg.train.start == "scratch" or cfg.train.hubness != "off"


def _pair_score(za: np.ndarray, zb: np.ndarray, groups: np.ndarray | None, a: str, b: str) -> dict[str, float]:
    ab, ba = retrieval_metrics(za, zb, groups), retrieval_metrics(zb, za, groups)
    s = za @ zb.T  # (N, N)
    return {f"{a}->{b}": ab["R@1"], f"{b}->{a}": ba["R@1"], "R@1": (ab["R@1"] + ba["R@1"]) / 2,
            "MRR": (ab["MRR"] + ba["MRR"]) / 2, "margin": (score_margin(s, groups) + score_margin(s.T, groups)) / 2}


def _pair_model(cfg: RunConfig, specs: dict[str, EncoderSpec], tr: FeatureTable, a: str, b: str, dim: int,
                kernel: dict[str, list[int]] | None = None, extra: Extra = None,
                cache: dict[str, Any] | None = None) -> AlignmentModel:
    """A throw-away two-view model whose linear paths hold the pair's closed form (`dim` wide), its
    inputs standardised like the run's (train rows plus `extra`, the unpaired items, where given).
    `cache`: each view's standardisation, fitted once and copied into every later pair model (the
    same statistics: a view's training features do not depend on its partner, width or kernel)."""
    c = copy.deepcopy(cfg.model)
    c.dim = dim
    c.views = [v for v in c.views if v.column in (a, b)]
    c.objective, c.pairing, c.anchor, c.pair_weights, c.routes = "infonce", "all", None, {}, {}
    c.train_towers, c.tower_tuning = [], {}
    c.head.linear_path, c.head.kernel = True, dict(kernel or {})
    sub = {k: specs[k] for k in (a, b)}
    model = AlignmentModel(c, sub, build_towers(RunConfig(model=c, train=cfg.train), sub))
    cache = {} if cache is None else cache
    todo = [k for k in (a, b) if f"norm:{k}" not in cache]
    model.fit_normalizers({k: torch.from_numpy(with_unpaired(tr, k, extra)) for k in todo})
    state = model.state_dict()
    for k in (a, b):
        own = (f"heads.{k}.norm.", f"linear.{k}.norm.")
        if k in todo:
            cache[f"norm:{k}"] = {n: v.clone() for n, v in state.items() if n.startswith(own)}
        else:
            model.load_state_dict(cache[f"norm:{k}"], strict=False)
    return model


@torch.no_grad()
def _closed_forms(cfg: RunConfig, specs: dict[str, EncoderSpec], tr: FeatureTable, va: FeatureTable, a: str, b: str,
                  seed: int, cache: dict[str, Any] | None = None,
                  extra: Extra = None) -> dict[str, tuple[dict[str, Any], dict[str, torch.nn.Module], dict[str, np.ndarray]]]:
    """Every closed form the tuners fitted for the pair: {method: (route, linear paths, val unit vectors)}.
    `cache`: per-view PCA bases and Nyström features shared by the pairs of one view set. `extra`: the
    run's unpaired items per view: they join the standardisation and add the `semi_cca` candidate."""
    # As wide as the pair's closed form wants (the benchmark's baselines are not cut to the joint `dim`:
    # a kernel CCA cut from 8 to 6 components lost 3 points of R@1 on a synthetic pair).
    cache = {} if cache is None else cache
    model = _pair_model(cfg, specs, tr, a, b, MAX_WIDTH, extra=extra, cache=cache)
    best = fit_closed_form(model, tr, va, seed=seed, cache=cache, extra=extra)
    if best is None:
        return {}
    out = {}
    for cf in (best.alternatives or {best.method: best}).values():
        width = max(2, max(m.weight().shape[1] for m in cf.maps.values()))
        model = _pair_model(cfg, specs, tr, a, b, width, cf.kernel_shapes(), extra, cache)
        apply_closed_form(model, cf)
        route: dict[str, Any] = {"method": cf.method, "width": width, "params": cf.params}
        if cf.kernel_shapes():
            route["kernel"] = cf.kernel_shapes()
        mods = {k: model.linear[k] for k in (a, b)}
        val = {k: F.normalize(mods[k](torch.from_numpy(np.asarray(va.features[k]))), dim=-1).numpy() for k in (a, b)}
        out[cf.method] = (route, mods, val)
    return out


def _asif(tr: FeatureTable, va: FeatureTable, a: str, b: str,
          cache: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    from crossalign.semi.asif import asif_grid

    cache = {} if cache is None else cache  # per view: anchors and validation cosines

    _, params, (ra, rb) = asif_grid((np.asarray(tr.features[a]), np.asarray(tr.features[b])),
                                    (np.asarray(va.features[a]), np.asarray(va.features[b])),
                                    PairScorer(va.groups(), len(va)), (cache, a, b))
    route = {"method": "asif", "k": int(params["k"]), "p": float(params["p"]), "anchors": len(tr)}
    return route, {a: ra, b: rb}, {a: ra.relative(cache[a][1]), b: rb.relative(cache[b][1])}


def _weights(n: int) -> list[tuple[int, ...]]:
    """Integer weights (in 1/MIX_STEPS) for n candidates summing to MIX_STEPS, at least two non-zero."""
    grid = [w for w in np.ndindex(*(MIX_STEPS + 1,) * n) if sum(w) == MIX_STEPS]
    return [tuple(int(x) for x in w) for w in grid if sum(x > 0 for x in w) >= 2]


def _mixtures(cands: dict[str, dict[str, float]], vals: dict[str, dict[str, np.ndarray]], groups: np.ndarray | None,
              a: str, b: str, hub: HubScorer | None = None, fitted: dict[str, Any] | None = None
              ) -> dict[str, tuple[list[tuple[str, float]], dict[str, float]]]:
    """Score-level mixtures of the best MIX_TOP single candidates on validation: {name: (parts, scores)}
    (`hub`: each scored with its best CSLS correction, as `cands` then are)."""
    top = sorted(vals, key=lambda m: (cands[m]["R@1"], cands[m]["MRR"]), reverse=True)[:MIX_TOP]
    out = {}
    for w in _weights(len(top)) if len(top) > 1 else []:
        parts = [(m, x / MIX_STEPS) for m, x in zip(top, w) if x]
        if hub is not None:
            scores = hub.score(a, b, parts, vals, fitted or {})
        else:
            z = {c: np.concatenate([vals[m][c] * np.sqrt(x) for m, x in parts], 1) for c in (a, b)}  # unit rows
            scores = _pair_score(z[a], z[b], groups, a, b)
        out["+".join(f"{m}*{x:.2f}" for m, x in parts)] = (parts, scores)
    return out


def choose_routes(model: AlignmentModel, cfg: RunConfig, tr: FeatureTable, va: FeatureTable,
                  seed: int = 0, closed_forms: bool = True, mix: bool = True,
                  single: RouteChoice | None = None, extra: Extra = None, hubness: bool = False,
                  progress: bool = False) -> RouteChoice:
    """Per pair of `model`'s views, the best on validation of the joint space, the pair's closed forms,
    ASIF and (`mix`) their mixtures (see the module docstring). `model` is the joint winner, in eval
    mode. `closed_forms`: False when the joint start already was that pair's closed form (two views).
    `single`: also filled with the choice among single candidates, from the same fits (benchmarks).
    `extra`: unpaired items per view (semi-supervised runs): the pairs' closed forms standardise their
    inputs as the run does and may use their PCA axes (`semi_cca`); ASIF's anchors stay the pairs.
    `hubness`: score every candidate and mixture with its best CSLS correction, as `train.hubness: auto` will
    serve it (train/route_csls.py); the plain scores are kept in the report (`val_plain`). `progress`: a bar
    over the pairs (routing is tens of seconds of closed-form fits on 2 cores, silent otherwise)."""
    out = RouteChoice()
    hub = HubScorer(model, tr, va, extra, seed) if hubness else None
    cols, groups = model.columns, va.groups()
    joint = embed_table(model, va)
    inputs = {c: linear_input_shape(model.specs[c], c in model.towers) for c in cols}
    asif_cache: dict[str, Any] = {}  # per view: its anchors and validation cosines, shared by its pairs
    view_cache: dict[str, Any] = {}  # per view: its PCA basis and Nyström features (one standardisation)
    bar = progress_bar(total=len(cols) * (len(cols) - 1) // 2, desc="routing", unit="pair") if progress else None
    for i, a in enumerate(cols):
        for b in cols[i + 1:]:
            key = route_key(a, b)
            if bar is not None:
                bar.set_postfix_str(f"{a}<->{b}", refresh=False)
            vals = {"joint": {c: joint[c] for c in (a, b)}}
            fitted: dict[str, Any] = {"joint": ({"method": "joint"}, {})}
            if inputs[a] is not None and inputs[b] is not None:
                for m, (route, mods, val) in (_closed_forms(cfg, model.specs, tr, va, a, b, seed, view_cache, extra)
                                              if closed_forms else {}).items():
                    vals[m], fitted[m] = val, (route, mods)
                route, banks, val = _asif(tr, va, a, b, asif_cache)
                vals["asif"], fitted["asif"] = val, (route, banks)
            cands = plain = {m: _pair_score(v[a], v[b], groups, a, b) for m, v in vals.items()}
            if hub is not None:
                cands = {m: hub.score(a, b, [(m, 1.0)], vals, fitted) for m in vals}
            t0 = time.perf_counter()
            mixes = _mixtures(cands, vals, groups, a, b, hub, fitted) if mix else {}
            out.mix_s += time.perf_counter() - t0
            _select(out, key, cands, mixes, fitted)
            if single is not None:
                _select(single, key, cands, {}, fitted)
            if hub is not None:
                for choice in (out, single):
                    if choice is not None:
                        choice.report[key]["val_plain"] = plain
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    for choice in (out, single):
        if choice is not None and all(r["method"] == "joint" for r in choice.routes.values()):
            choice.routes = {}
    return out


def _select(out: RouteChoice, key: str, cands: dict[str, dict[str, float]],
            mixes: dict[str, tuple[list[tuple[str, float]], dict[str, float]]], fitted: dict[str, Any]) -> None:
    """The pair's winner into `out`: best R@1, ties to fewer parts, then MRR, then the standardised margin
    (`score_margin`: where a small validation split saturates R@1 and MRR), then the earlier candidate."""
    order = list(cands) + list(mixes)  # singles first (joint first), then mixtures
    scores = cands | {n: s for n, (_, s) in mixes.items()}
    win = max(order, key=lambda m: (scores[m]["R@1"], -m.count("+"), scores[m]["MRR"], scores[m].get("margin", 0.0),
                                    -order.index(m)))
    runner = max((scores[m]["R@1"] for m in cands if m != win), default=None)
    route, mods = candidate_route(win, mixes, fitted)
    # margin: over the best other *single* candidate (a mixture's gain over every one of its parts)
    out.report[key] = {"chosen": win, "margin": scores[win]["R@1"] - runner if runner is not None else None,
                       "val": scores, "route": route}
    out.routes[key] = route
    if win != "joint":
        out.state.update(_route_state(key, route, mods))
    log.info("route %s: %s (val R@1 %.3f, joint %.3f)", key, win, scores[win]["R@1"], cands["joint"]["R@1"])


def candidate_route(name: str, mixes: dict[str, tuple[list[tuple[str, float]], dict[str, float]]],
                    fitted: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(route, {method: fitted modules}) of one scored candidate: a single method, or a mixture's parts."""
    if name in mixes:
        parts = mixes[name][0]
        return ({"method": MIX, "parts": [{"weight": x, **fitted[m][0]} for m, x in parts]},
                {m: fitted[m][1] for m, _ in parts})
    return fitted[name][0], {name: fitted[name][1]}


def _route_state(key: str, route: dict[str, Any], mods: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The router's weights for one pair's route (`mods`: each part's fitted modules, by method)."""
    a, _, b = key.partition("|")
    state: dict[str, torch.Tensor] = {}
    for _, r, mkey in route_parts(key, route):
        if r["method"] == "asif":
            for c in (a, b):
                rr = mods[r["method"]][c]
                state.update({f"router.anchors.{c}.mu": torch.from_numpy(rr.mu).float(),
                              f"router.anchors.{c}.sd": torch.from_numpy(rr.sd).float(),
                              f"router.anchors.{c}.anchors": torch.from_numpy(rr.anchors).float()})
        elif r["method"] != "joint":
            for c in (a, b):
                state.update({f"router.paths.{mkey}.{c}.{n}": t for n, t in mods[r["method"]][c].state_dict().items()})
    return state


def joint_model(model: AlignmentModel, cfg: RunConfig) -> tuple[AlignmentModel, RunConfig]:
    """A routed run's joint model alone (routes and the hubness correction fitted on them dropped): what a
    resumed, already routed run is routed from."""
    if model.router is None and model.hub is None and not len(model.members):
        return model, cfg
    c = copy.deepcopy(cfg)
    c.model.routes, c.model.hubness, c.model.members = {}, {}, {}
    joint = AlignmentModel(c.model, model.specs, build_towers(c, model.specs))
    joint.load_state_dict({k: v for k, v in model.state_dict().items()
                           if not k.startswith(("router.", "hub.", "members."))}, strict=True)
    return joint.eval(), c


def routed_model(model: AlignmentModel, cfg: RunConfig, choice: RouteChoice) -> tuple[AlignmentModel, RunConfig]:
    """The joint `model` with `choice`'s routes as fixed blocks (weights copied, strictly)."""
    c = copy.deepcopy(cfg)
    c.model.routes = choice.routes
    routed = AlignmentModel(c.model, model.specs, build_towers(c, model.specs))
    routed.load_state_dict(model.state_dict() | choice.state, strict=True)
    routed.eval()
    return routed, c
