"""`start: auto` per pair: each pair of views served by the better of the two federations.

The two starts learn different compromises. On `scenes` (seeds 0 and 2) the federation from scratch
trains the radar tower together with heads that adapt to it (radar directions 0.70-0.72 against the
hybrid's 0.61-0.70) while the hybrid keeps the closed form's image/text/audio space (0.97 against
0.90-0.92). One joint space
cannot hold both, so after both federations the sites score every pair of views they hold under each
global model on their validation rows (ranked against their training rows as distractors, as per-pair
routing does; scalars only), and each pair whose validation prefers the other federation is routed to
it: the run keeps the winner as its joint model and the other federation as a *member*
(`ModelConfig.members`, route `{"method": "member"}`, align/routes.py). Ties keep the winner.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import Message, MessageType
from flwr.serverapp import Grid

from crossalign.align.embed import embed_table
from crossalign.align.io import build_towers, load_run
from crossalign.align.model import AlignmentModel
from crossalign.align.routes import MEMBER, route_key
from crossalign.config import RunConfig
from crossalign.data.features import FeatureTable
from crossalign.federate.asking import ask_sites
from crossalign.federate.config import FederationConfig
from crossalign.federate.params import to_record_np
from crossalign.federate.record import FederationRecord
from crossalign.federate.routing import GalleryScorer, val_then_train

__all__ = ["choose_members", "combine", "per_pair_federations", "site_pair_scores", "with_joint"]

log = logging.getLogger(__name__)


@torch.no_grad()
def site_pair_scores(model: AlignmentModel, val: FeatureTable, train: FeatureTable) -> dict[str, float]:
    """Per pair of the site's views: `KEY/joint` (R@1 both ways + 1e-3 MRR of the validation rows against
    the validation and training rows of the other view) and `KEY/rows`."""
    if len(val) < 2:
        return {}
    cols = model.columns
    both = val_then_train(val, train)  # val rows first: the queries
    emb = {c: e.astype(np.float64) for c, e in embed_table(model, both).items()}
    score = GalleryScorer(val.groups(), len(val), len(both))
    out: dict[str, float] = {}
    for i, a in enumerate(cols):
        for b in cols[i + 1:]:
            out[f"{route_key(a, b)}/joint"] = score(emb[a], emb[b])
            out[f"{route_key(a, b)}/rows"] = float(len(val))
    return out


def choose_members(scores: dict[str, list[dict[str, float]]], winner: str, other: str
                   ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """{name: the sites' replies} -> (routes of the pairs the other federation serves, report). A pair's
    score is the validation-row-weighted mean over the sites holding both views."""
    def means(name: str) -> dict[str, float]:
        tot: dict[str, float] = {}
        rows: dict[str, float] = {}
        for sc in scores[name]:
            for k, v in sc.items():
                if k.endswith("/joint"):
                    key, n = k[:-len("/joint")], sc.get(k[:-len("/joint")] + "/rows", 0.0)
                    tot[key], rows[key] = tot.get(key, 0.0) + n * v, rows.get(key, 0.0) + n
        return {k: tot[k] / rows[k] for k in tot if rows[k] > 0}

    mw, mo = means(winner), means(other)
    routes: dict[str, dict[str, Any]] = {}
    report: dict[str, Any] = {}
    for key in sorted(set(mw) & set(mo)):
        better = round(mo[key], 12) > round(mw[key], 12)  # ties keep the winner
        report[key] = {"chosen": other if better else winner, "val": {winner: mw[key], other: mo[key]}}
        if better:
            routes[key] = {"method": MEMBER, "member": other}
    return routes, report


def per_pair_federations(grid: Grid, fed: FederationConfig, out: Path, recs: dict[str, FederationRecord],
                         winner: str, on_receive: Callable[[int, str, Message], None] | None,
                         info: dict[str, Any]) -> tuple[AlignmentModel, RunConfig] | None:
    """Both federations' best models scored per pair at the sites; -> the winner with the pairs the other
    serves better routed to it (None: every pair keeps the winner). Fills `info` (federation.json)."""
    other = next(n for n in recs if n != winner)
    models = {n: load_run(out / "candidates" / n, "best") for n in recs}
    (mw, cw), (mo, co) = models[winner], models[other]
    if any(m.router is not None or m.hub is not None for m, _ in models.values()):
        info["note"] = "a federation is routed (--route): the two are not combined per pair"
        return None
    same = {**cw.model.to_dict(), "head": None} == {**co.model.to_dict(), "head": None}
    if not same:
        info["note"] = "the two federations' models differ beyond their heads: not combined"
        return None
    scores = {}
    for n, (m, _) in models.items():
        arrays = to_record_np({k: v.detach().cpu().numpy() for k, v in m.state_dict().items()})
        fed_json = json.dumps(recs[n].config, sort_keys=True)  # the sites build that federation's model
        replies = ask_sites(grid, fed, fed_json, "pairs", arrays, MessageType.QUERY, on_receive, info,
                            phase=f"per-pair:{n}")
        scores[n] = [{k: float(v) for k, v in next(iter(r.content.metric_records.values())).items()}  # type: ignore[arg-type]
                     for r in replies]
    routes, report = choose_members(scores, winner, other)
    info.update(routes=report, members=sorted({r["member"] for r in routes.values()}))
    for key, r in report.items():
        log.info("pair %s: %s federation (sites' val %s)", key, r["chosen"],
                 ", ".join(f"{k} {v:.4f}" for k, v in r["val"].items()))
    return combine(mw, cw, mo, co, other, routes) if routes else None


def combine(main: AlignmentModel, cfg: RunConfig, other: AlignmentModel, cfg_o: RunConfig, name: str,
            routes: dict[str, dict[str, Any]]) -> tuple[AlignmentModel, RunConfig]:
    """`main` with `other` (same views, its own heads) as member `name` and `routes` sending pairs to it
    (weights copied, strictly)."""
    c = copy.deepcopy(cfg)
    c.model.members = {name: {"head": cfg_o.model.head.to_dict()}}
    c.model.routes = routes
    combined = AlignmentModel(c.model, main.specs, build_towers(c, main.specs))
    combined.load_state_dict(main.state_dict() | {f"members.{name}.{k}": v for k, v in other.state_dict().items()},
                             strict=True)
    return combined.eval(), c


def with_joint(combined: tuple[AlignmentModel, RunConfig], joint: AlignmentModel) -> tuple[AlignmentModel, RunConfig]:
    """The combined model (members and routes) with `joint`'s weights as its own joint part: one
    config.json serves every weights file of the run folder (`last` is the winner's final round)."""
    model, cfg = copy.deepcopy(combined[0]), copy.deepcopy(combined[1])
    own = {k for k in model.state_dict() if not k.startswith("members.")}
    sd = joint.state_dict()
    if set(sd) != own:
        raise ValueError(f"the joint weights do not fit the combined model: {sorted(set(sd) ^ own)[:5]}")
    model.load_state_dict(sd, strict=False)  # the member part stays as combined
    return model.eval(), cfg
