"""The Flower `ServerApp`: statistics round, `strategy.start`, and an ordinary run folder at the end.

The server never sees rows or features: it builds the global model from the config (the same
packaged towers every site has), asks each site once for per-feature mean/std/count so all standardise
alike, then runs the Flower strategy. The best round's global model (val mean R@1 over sites)
becomes `best`/`model.safetensors`, the final one `last.safetensors`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from crossalign.align.io import build_towers, load_run, save_model
from crossalign.align.model import AlignmentModel
from crossalign.config import RunConfig
from crossalign.data.features import build_view_encoder
from crossalign.federate.asking import ask_sites, sites_val
from crossalign.federate.averaging import average_rounds
from crossalign.federate.closed_form import pick, pooled_bases, solve_candidates, stage_arrays
from crossalign.federate.config import FederationConfig
from crossalign.federate.members import per_pair_federations, with_joint
from crossalign.federate.params import (
    exchanged_keys,
    from_record,
    load_exchanged,
    norm_keys,
    pooled_norms,
    record_bytes,
    to_record,
    to_record_np,
)
from crossalign.federate.record import FederationRecord, RoundFailed
from crossalign.federate.routing import Pooled, route_best_round
from crossalign.federate.strategy import SiteAwareStrategy, build_strategy
from crossalign.train.start import apply_closed_form, hybrid_split
from crossalign.train.trainer import set_seed

__all__ = ["global_model", "make_server_app", "run_server", "server_app"]

log = logging.getLogger(__name__)


def global_model(fed: FederationConfig) -> AlignmentModel:
    """The initial global model, built exactly as `train()` builds a centralised one."""
    from crossalign.data.manifest import load_manifest

    manifest = load_manifest(fed.run.train.data) if fed.run.train.data and Path(fed.run.train.data).exists() else None
    specs = {v.column: build_view_encoder(v, manifest).spec for v in fed.run.model.views}
    set_seed(fed.run.train.seed)
    return AlignmentModel(fed.run.model, specs, build_towers(fed.run, specs))


def _wait_for_sites(grid: Grid, n: int, timeout: float) -> list[int]:
    t0 = time.time()
    while len(nodes := list(grid.get_node_ids())) < n:
        if time.time() - t0 > timeout:
            raise RoundFailed(f"only {len(nodes)} of {n} sites connected within {timeout:.0f} s")
        time.sleep(0.5)
    return sorted(nodes)


def _statistics_round(grid: Grid, fed: FederationConfig, fed_json: str, model: AlignmentModel,
                      record: FederationRecord, strategy: SiteAwareStrategy,
                      on_receive: Callable[[int, str, Message], None] | None = None) -> None:
    """Pooled per-feature mean/std of every frozen view -> the heads' standardisation buffers.
    Sites send per-feature (count, mean, std) of their training features, never rows."""
    nodes = _wait_for_sites(grid, fed.sites, fed.timeout)
    msgs = [Message(RecordDict({"config": ConfigRecord({"federation": fed_json})}), dst_node_id=n,
                    message_type=MessageType.QUERY) for n in nodes]
    replies = list(grid.send_and_receive(msgs, timeout=fed.timeout))
    for r in replies if on_receive is not None else ():
        on_receive(0, "statistics", r)
    ok = [r for r in replies if not r.has_error()]
    for r in ok:  # lets the strategy name a site whose later reply is an error
        strategy.node_site[r.metadata.src_node_id] = str(int(next(iter(r.content.metric_records.values()))["site"]))
    fails = [{"node": r.metadata.src_node_id, "reason": str(r.error.reason)[-500:]} for r in replies if r.has_error()]
    record.statistics = {"sites": len(ok), "failures": len(fails), "failed": fails,
                         "bytes_received": sum(record_bytes(r.content["arrays"]) for r in ok)}
    if len(ok) < fed.required_per_round():
        raise RoundFailed(f"statistics round: {len(ok)} site(s) answered, the minimum is {fed.required_per_round()}")
    norm = pooled_norms(model, [from_record(r.content["arrays"]) for r in ok])
    load_exchanged(model, norm)


def _closed_form_start(grid: Grid, fed: FederationConfig, fed_json: str, model: AlignmentModel,
                       record: FederationRecord, on_receive: Callable[[int, str, Message], None] | None
                       ) -> tuple[dict[str, np.ndarray], list[str], Pooled]:
    """Pooled multi-view CCA from the sites' statistics, tuned on their validation rows, written into
    the linear paths (gates 0): the start `train.start: auto` gives a centralised run. Hybrid (as
    centrally): from-scratch towers are left out of the closed form and keep their heads (gate 1);
    -> (global arrays, the fitted views the rounds then hold still ([] when not hybrid), the pooled
    statistics that per-pair routing reuses)."""
    t0 = time.time()
    missing = [c for c in model.columns if c not in model.linear]
    if missing:
        raise RoundFailed(f"start closed_form needs a linear path for every view; {missing} read raw inputs "
                          "(fine-tuned pretrained towers): use start scratch")
    fixed, scratch = hybrid_split(model.columns, [c for c in model.columns if fed.hybrid and model.specs[c].from_scratch])
    info: dict[str, Any] = {"fitted_views": fixed, "hybrid_scratch_views": scratch}
    record.closed_form = info
    norms = {k: v for k, v in from_record(to_record(model, norm_keys(model))).items() if k.startswith("linear.")}
    q = MessageType.QUERY
    views = fixed if scratch else None
    factors = [from_record(r.content["arrays"])
               for r in ask_sites(grid, fed, fed_json, "factor", to_record_np(norms), q, on_receive, info, views)]
    bases = pooled_bases(factors, fixed, 512 if len(fixed) == 2 else 256)
    moments = [from_record(r.content["arrays"]) for r in ask_sites(
        grid, fed, fed_json, "moments", to_record_np({**norms, **stage_arrays(bases)}), q, on_receive, info, views)]
    cands = solve_candidates(bases, moments, model.cfg.dim)
    scored = [{k: float(v) for k, v in next(iter(r.content.metric_records.values())).items()}  # type: ignore[arg-type]
              for r in ask_sites(grid, fed, fed_json, "score", to_record_np({**norms, **stage_arrays(bases, cands)}), q,
                            on_receive, info, views)]
    cf = pick(bases, cands, scored)
    cf.scratch = scratch
    apply_closed_form(model, cf)
    arrays = from_record(to_record(model, exchanged_keys(model) + norm_keys(model)))
    evals = ask_sites(grid, fed, fed_json, "", to_record_np(arrays), MessageType.EVALUATE, on_receive, info)
    info.update({"method": cf.method, "params": cf.params, "tuning_score": cf.val_score,
                 "basis_dims": {c: len(v) for c, (_, v) in bases.items()}, "val_R@1": sites_val(evals),
                 "seconds": round(time.time() - t0, 3)})
    log.info("closed-form start: %s %s on %s%s, val mean R@1 %.4f", cf.method, cf.params, fixed,
             f" (from-scratch towers {scratch} train into it)" if scratch else "", info["val_R@1"])
    return arrays, fixed if scratch else [], Pooled(bases, moments, fixed)


def _route(grid: Grid, fed: FederationConfig, fed_json: str, model: AlignmentModel, pooled: Pooled,
           record: FederationRecord, on_receive: Callable[[int, str, Message], None] | None
           ) -> tuple[AlignmentModel, RunConfig] | None:
    """Per-pair routing of the best global model: one `route` query stage, scalars back (federate/routing.py)."""
    record.routing = info = {}

    def ask(arrays: dict[str, np.ndarray]) -> list[dict[str, float]]:
        return [{k: float(v) for k, v in next(iter(r.content.metric_records.values())).items()}  # type: ignore[arg-type]
                for r in ask_sites(grid, fed, fed_json, "route", to_record_np(arrays), MessageType.QUERY, on_receive, info)]

    return route_best_round(model, fed.run, pooled, ask, info)


def run_server(grid: Grid, fed: FederationConfig, out: str | Path,
               on_receive: Callable[[int, str, Message], None] | None = None) -> FederationRecord:
    """One federation into the run folder `out`; `start: auto` runs both starts and keeps the better."""
    if fed.start == "auto":
        return _run_auto(grid, fed, Path(out), on_receive)
    return _run_one(grid, fed, out, on_receive)


def _run_auto(grid: Grid, fed: FederationConfig, out: Path,
              on_receive: Callable[[int, str, Message], None] | None) -> FederationRecord:
    """As `train.start: auto` centrally: a federation from scratch and one from the closed form (hybrid
    with from-scratch towers), each a run folder under `out/candidates/`; the better best-round val R@1
    (the sites' pooled val rows, weighted by their count) is saved again as `out` itself. Ties keep
    scratch, the earlier, as centrally. A candidate that fails fails the federation."""
    t0 = time.time()
    recs: dict[str, FederationRecord] = {}
    for name in ("scratch", "closed_form"):
        recs[name] = rec = _run_one(grid, fed.candidate(name), out / "candidates" / name, on_receive)
        if rec.status != "completed":
            rec.error = f"start candidate {name}: {rec.error}"
            rec.seconds = time.time() - t0
            rec.save(out)
            return rec
    val = {k: (r.best_val if r.best_val is not None else float("-inf")) for k, r in recs.items()}
    winner = max(val, key=lambda k: val[k])  # max keeps the first of equals: scratch
    rec = recs[winner]
    rec.candidates = {k: {"best_val_R@1": r.best_val, "best_round": r.best_round, "seconds": round(r.seconds, 3),
                          "failures": r.failures, "folder": f"candidates/{k}",
                          "bytes": sum(x["bytes_sent"] + x["bytes_received"] for x in r.rounds)
                          + sum((r.closed_form or {}).get(b, 0) for b in ("bytes_sent", "bytes_received"))}
                      for k, r in recs.items()}
    combined = None
    if fed.per_pair:  # each pair served by the federation the sites' val prefers (federate/members.py)
        rec.per_pair = {}
        try:
            combined = per_pair_federations(grid, fed, out, recs, winner, on_receive, rec.per_pair)
        except RoundFailed as e:  # a refinement of finished federations: keep the winner, say why
            rec.per_pair["error"] = str(e)
            log.warning("per-pair choice skipped, the winner serves every pair: %s", e)
    rec.winner, rec.config, rec.seconds = winner, fed.to_dict(), time.time() - t0
    for name in ("best", "model", "last"):  # the winner's run folder (its routes too), saved as `out`
        if (out / "candidates" / winner / f"{name}.safetensors").exists():
            wmodel, wcfg = load_run(out / "candidates" / winner, name)
            if combined is not None:  # per pair: the members and routes, this file's weights as the joint part
                wmodel, wcfg = with_joint(combined, wmodel)
            wcfg.train.out = str(out)  # its config names `out`
            save_model(wmodel, wcfg, out, name)
    res = json.loads((out / "candidates" / winner / "train_result.json").read_text())
    (out / "train_result.json").write_text(json.dumps({**res, "start": "auto", "winner": winner, "candidates": rec.candidates,
                                                       **({"per_pair": rec.per_pair} if rec.per_pair else {})}, indent=2))
    log.info("start auto: %s wins on the sites' val R@1 (%s)", winner,
             ", ".join(f"{k} {v:.4f}" for k, v in val.items()))
    rec.save(out)
    return rec


def _run_one(grid: Grid, fed: FederationConfig, out: str | Path,
             on_receive: Callable[[int, str, Message], None] | None = None) -> FederationRecord:
    out = Path(out)
    t0 = time.time()
    fed.run.train.out = str(out)
    model = global_model(fed)  # fills in sensor input shapes, which the sites then read from the config
    fed_json = fed.to_json()
    record = FederationRecord(config=fed.to_dict())
    strategy = build_strategy(fed, record, on_receive)
    cfg_rec = ConfigRecord({"federation": fed_json})
    routed: tuple[AlignmentModel, RunConfig] | None = None
    try:
        _statistics_round(grid, fed, fed_json, model, record, strategy, on_receive)
        pooled = None
        if fed.start == "closed_form":
            arrays, frozen, pooled = _closed_form_start(grid, fed, fed_json, model, record, on_receive)
            strategy.best = (float(record.closed_form["val_R@1"]), 0, arrays)  # type: ignore[index]
            record.best_round = 0
            strategy.frozen = frozen  # hybrid: the sites hold these views at the closed form, send only the rest
        init = to_record(model, exchanged_keys(model) + norm_keys(model))
        log.info("global arrays: %d (%.2f MB)", len(init), record_bytes(init) / 2**20)
        result = strategy.start(grid, init, num_rounds=fed.rounds, timeout=fed.timeout,
                                train_config=cfg_rec, evaluate_config=ConfigRecord({"federation": fed_json}))
        last = from_record(result.arrays) if len(result.arrays) else None
        if len(strategy.history) > 1:
            average_rounds(grid, fed, fed_json, strategy, record, on_receive)
        if pooled is not None and fed.route and strategy.best is not None:
            load_exchanged(model, strategy.best[2])
            try:
                routed = _route(grid, fed, fed_json, model, pooled, record, on_receive)
            except RoundFailed as e:  # a refinement of finished rounds: keep the joint model, say why
                record.routing = {**(record.routing or {}), "error": str(e), "routes": {}}
                log.warning("per-pair routing skipped, the joint model is kept: %s", e)
        record.status = "completed"
    except RoundFailed as e:
        record.status, record.error, last = "failed", str(e), None
        log.error("federation failed: %s", e)
    except Exception as e:  # anything else the server hit still ends in a record, not a silent exit
        log.exception("federation failed")
        record.status, record.error, last = "failed", f"{type(e).__name__}: {e}", None
    record.seconds = time.time() - t0
    if strategy.best is not None:
        record.best_val = strategy.best[0]
        load_exchanged(model, strategy.best[2])
        # routed: the best round with each pair served as routing chose; `last` keeps the same routes
        # (one config.json per folder), its joint part from the final round
        final, cfg = routed if routed is not None else (model, fed.run)
        save_model(final, cfg, out, "best")
        save_model(final, cfg, out, "model")
        if last is not None:
            load_exchanged(final, last)
            save_model(final, cfg, out, "last")
        (out / "train_result.json").write_text(json.dumps(
            {"best_round": strategy.best[1], "best_val_mean/R@1": strategy.best[0], "rounds": fed.rounds,
             **({"averaged_rounds": record.averaged["rounds"]} if (record.averaged or {}).get("kept") else {}),
             "federated": True, "sites": fed.sites, **({"routes": record.routing["routes"]} if record.routing else {})},
            indent=2))
    record.save(out)
    return record


def make_server_app(fed: FederationConfig, out: str | Path,
                    on_receive: Callable[[int, str, Message], None] | None = None,
                    results: list[FederationRecord] | None = None) -> ServerApp:
    """A ServerApp bound to one federation (the simulation engine runs it in this process)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        rec = run_server(grid, fed, out, on_receive)
        if results is not None:
            results.append(rec)

    return app


# Deployment (`flwr run` against a SuperLink): the run config names the federation file and folder.
server_app = ServerApp()


@server_app.main()
def _deployed_main(grid: Grid, context: Context) -> None:
    from crossalign.federate.config import load_federation_config

    run_server(grid, load_federation_config(str(context.run_config["config"])), str(context.run_config["out"]))
