"""`train.route: auto`: after the joint model is chosen, route every pair of views to the candidate that
serves that pair best on the validation split.

Candidates per pair (a, b): the joint model's own space (`joint`); the pair's own closed form tuned on
train against validation exactly as the two-view `train.start` candidate and the `crossalign benchmark`
baselines are (the best of CCA, kernel CCA, ridge, Procrustes and, where both columns share an encoder,
its own space); and ASIF relative representations (k, p chosen on validation like the `asif`
baseline). Each is scored on validation by R@1 averaged over a->b and b->a (MRR breaking ties, the
joint space winning full ties). The test split is never read. When every pair keeps `joint` the model is
unchanged; otherwise the winners become `model.routes` and fixed blocks of the model (align/routes.py).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from crossalign.align.embed import embed_table
from crossalign.align.io import build_towers
from crossalign.align.model import AlignmentModel, linear_input_shape
from crossalign.align.routes import route_key
from crossalign.config import RunConfig
from crossalign.data.features import FeatureTable
from crossalign.encoders import EncoderSpec
from crossalign.evaluate.closed_form import PairScorer
from crossalign.evaluate.retrieval import retrieval_metrics
from crossalign.train.start import apply_closed_form, fit_closed_form

__all__ = ["choose_routes", "RouteChoice", "joint_model", "routed_model"]

log = logging.getLogger(__name__)
MAX_WIDTH = 512  # components a pair's closed form may keep (the baselines' PCA cap)


class RouteChoice:
    """What `choose_routes` found: `routes` (for `model.routes`, empty when every pair keeps the joint
    space), `state` (the router's weights, `router.`-prefixed) and `report` (train_result.json)."""

    def __init__(self) -> None:
        self.routes: dict[str, dict[str, Any]] = {}
        self.state: dict[str, torch.Tensor] = {}
        self.report: dict[str, Any] = {}


def _pair_score(za: np.ndarray, zb: np.ndarray, groups: np.ndarray | None, a: str, b: str) -> dict[str, float]:
    ab, ba = retrieval_metrics(za, zb, groups), retrieval_metrics(zb, za, groups)
    return {f"{a}->{b}": ab["R@1"], f"{b}->{a}": ba["R@1"], "R@1": (ab["R@1"] + ba["R@1"]) / 2,
            "MRR": (ab["MRR"] + ba["MRR"]) / 2}


def _pair_model(cfg: RunConfig, specs: dict[str, EncoderSpec], tr: FeatureTable, a: str, b: str, dim: int,
                kernel: dict[str, list[int]] | None = None) -> AlignmentModel:
    """A throw-away two-view model whose linear paths hold the pair's closed form (`dim` wide)."""
    c = copy.deepcopy(cfg.model)
    c.dim = dim
    c.views = [v for v in c.views if v.column in (a, b)]
    c.objective, c.pairing, c.anchor, c.pair_weights, c.routes = "infonce", "all", None, {}, {}
    c.train_towers, c.tower_tuning = [], {}
    c.head.linear_path, c.head.kernel = True, dict(kernel or {})
    sub = {k: specs[k] for k in (a, b)}
    model = AlignmentModel(c, sub, build_towers(RunConfig(model=c, train=cfg.train), sub))
    model.fit_normalizers({k: torch.from_numpy(np.asarray(tr.features[k])) for k in (a, b)})
    return model


@torch.no_grad()
def _closed_form(cfg: RunConfig, specs: dict[str, EncoderSpec], tr: FeatureTable, va: FeatureTable, a: str, b: str,
                 seed: int, cache: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.nn.Module], dict[str, np.ndarray]] | None:
    # As wide as the pair's closed form wants (the benchmark's baselines are not cut to the joint `dim`:
    # a kernel CCA cut from 8 to 6 components lost 3 points of R@1 on a synthetic pair).
    model = _pair_model(cfg, specs, tr, a, b, MAX_WIDTH)
    cf = fit_closed_form(model, tr, va, seed=seed, cache=cache)
    if cf is None:
        return None
    width = max(2, max(m.weight().shape[1] for m in cf.maps.values()))
    model = _pair_model(cfg, specs, tr, a, b, width, cf.kernel_shapes())
    apply_closed_form(model, cf)
    route: dict[str, Any] = {"method": cf.method, "width": width, "params": cf.params}
    if cf.kernel_shapes():
        route["kernel"] = cf.kernel_shapes()
    mods = {k: model.linear[k] for k in (a, b)}
    val = {k: F.normalize(mods[k](torch.from_numpy(np.asarray(va.features[k]))), dim=-1).numpy() for k in (a, b)}
    return route, mods, val


def _asif(tr: FeatureTable, va: FeatureTable, a: str, b: str,
          cache: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    from crossalign.semi.asif import asif_grid

    _, params, (ra, rb) = asif_grid((np.asarray(tr.features[a]), np.asarray(tr.features[b])),
                                    (np.asarray(va.features[a]), np.asarray(va.features[b])),
                                    PairScorer(va.groups(), len(va)), (cache, a, b))
    route = {"method": "asif", "k": int(params["k"]), "p": float(params["p"]), "anchors": len(tr)}
    return route, {a: ra, b: rb}, {a: ra.relative(cache[a][1]), b: rb.relative(cache[b][1])}


def choose_routes(model: AlignmentModel, cfg: RunConfig, tr: FeatureTable, va: FeatureTable,
                  seed: int = 0, closed_forms: bool = True) -> RouteChoice:
    """Per pair of `model`'s views, the best of the joint space, the pair's closed form and ASIF on
    validation (see the module docstring). `model` is the joint winner, in eval mode. `closed_forms`:
    False when the joint start already was that pair's closed form (two views), so only ASIF is new."""
    out = RouteChoice()
    cols, groups = model.columns, va.groups()
    joint = embed_table(model, va)
    inputs = {c: linear_input_shape(model.specs[c], c in model.towers) for c in cols}
    states: dict[str, dict[str, Any]] = {}
    asif_cache: dict[str, Any] = {}  # per view: its anchors and validation cosines, shared by its pairs
    view_cache: dict[str, Any] = {}  # per view: its PCA basis and Nyström features (one standardisation)
    for i, a in enumerate(cols):
        for b in cols[i + 1:]:
            key = route_key(a, b)
            cands: dict[str, dict[str, float]] = {"joint": _pair_score(joint[a], joint[b], groups, a, b)}
            fitted: dict[str, Any] = {}
            if inputs[a] is not None and inputs[b] is not None:
                cf = _closed_form(cfg, model.specs, tr, va, a, b, seed, view_cache) if closed_forms else None
                if cf is not None:
                    route, mods, val = cf
                    cands[route["method"]] = _pair_score(val[a], val[b], groups, a, b)
                    fitted[route["method"]] = (route, mods)
                route, banks, val = _asif(tr, va, a, b, asif_cache)
                cands["asif"] = _pair_score(val[a], val[b], groups, a, b)
                fitted["asif"] = (route, banks)
            win = max(cands, key=lambda m: (cands[m]["R@1"], cands[m]["MRR"]))  # ties keep joint (first)
            runner = max((m for m in cands if m != win), key=lambda m: cands[m]["R@1"], default=None)
            out.report[key] = {"chosen": win, "margin": cands[win]["R@1"] - cands[runner]["R@1"] if runner else None,
                               "val": cands}
            out.routes[key] = {"method": "joint"} if win == "joint" else {
                k: v for k, v in fitted[win][0].items()}
            if win != "joint":
                states[key] = {"route": fitted[win][0], "modules": fitted[win][1]}
            log.info("route %s: %s (val R@1 %.3f, joint %.3f)", key, win, cands[win]["R@1"], cands["joint"]["R@1"])
    if not states:
        out.routes = {}
        return out
    for key, st in states.items():
        a, _, b = key.partition("|")
        if st["route"]["method"] == "asif":
            for c in (a, b):
                rr = st["modules"][c]
                out.state.update({f"router.anchors.{c}.mu": torch.from_numpy(rr.mu).float(),
                                  f"router.anchors.{c}.sd": torch.from_numpy(rr.sd).float(),
                                  f"router.anchors.{c}.anchors": torch.from_numpy(rr.anchors).float()})
        else:
            for c in (a, b):
                out.state.update({f"router.paths.{key}.{c}.{n}": t for n, t in st["modules"][c].state_dict().items()})
    return out


def joint_model(model: AlignmentModel, cfg: RunConfig) -> tuple[AlignmentModel, RunConfig]:
    """A routed run's joint model alone (routes dropped): what a resumed, already routed run is routed from."""
    if model.router is None:
        return model, cfg
    c = copy.deepcopy(cfg)
    c.model.routes = {}
    joint = AlignmentModel(c.model, model.specs, build_towers(c, model.specs))
    joint.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("router.")}, strict=True)
    return joint.eval(), c


def routed_model(model: AlignmentModel, cfg: RunConfig, choice: RouteChoice) -> tuple[AlignmentModel, RunConfig]:
    """The joint `model` with `choice`'s routes as fixed blocks (weights copied, strictly)."""
    c = copy.deepcopy(cfg)
    c.model.routes = choice.routes
    routed = AlignmentModel(c.model, model.specs, build_towers(c, model.specs))
    routed.load_state_dict(model.state_dict() | choice.state, strict=True)
    routed.eval()
    return routed, c
