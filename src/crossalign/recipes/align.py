"""`train(config)`: manifest -> cached features -> trained run folder. The CLI calls this."""

from __future__ import annotations

import copy
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from crossalign.align.distributed import DistContext
from crossalign.align.io import build_towers, save_model
from crossalign.align.model import AlignmentModel
from crossalign.align.objectives import check_objective
from crossalign.config import RunConfig
from crossalign.data.features import FeatureTable, build_view_encoder, encode_views, view_encoder, with_unpaired
from crossalign.data.manifest import load_manifest
from crossalign.data.splits import ensure_splits
from crossalign.encoders import Encoder
from crossalign.encoders.top import is_lower_spec
from crossalign.train.align_task import AlignmentTask
from crossalign.train.distributed import encode_rank_share, init_from_env
from crossalign.train.loggers import build_logger
from crossalign.train.start import apply_closed_form, fit_closed_form, freeze_closed_form, small_data_defaults
from crossalign.train.trainer import Task, Trainer, TrainResult, set_seed

__all__ = ["prepare_features", "train", "ensure_splits"]

log = logging.getLogger(__name__)


def prepare_features(cfg: RunConfig, progress: bool = True) -> tuple[FeatureTable, dict[str, Encoder]]:
    m = ensure_splits(load_manifest(cfg.train.data), cfg.train.seed)
    if not len(m):
        raise ValueError(f"{m.path}: the manifest has no rows: nothing to train on")
    missing = [v.column for v in cfg.model.views if v.column not in m.columns]
    if missing:
        raise ValueError(f"{m.path}: no column(s) {missing}; columns are {m.columns}")
    encoders = {v.column: build_view_encoder(v, m) for v in cfg.model.views}
    table = encode_views(m, cfg.model.views, encoders=encoders, batch_size=cfg.train.encode_batch_size,
                         progress=progress)
    return table, encoders


def train(cfg: RunConfig, *, resume: bool = True, progress: bool | None = None,
          table: FeatureTable | None = None, stop_after: int | None = None,
          dist: DistContext | None = None, log: Sequence[str] | None = None,
          task_factory: Callable[..., Task] | None = None,
          norm_extra: Mapping[str, np.ndarray] | None = None) -> tuple[Path, TrainResult]:
    """Train the candidates `cfg.train.start` names and keep the best on validation in `out`:
    the closed form as-is, heads fine-tuned from it (in `out/candidates/fine_tuned`), heads trained
    from scratch (in `out` itself, so its checkpoints and resume work as they always did).

    `log`: experiment logger specs (train/loggers.py), e.g. ["jsonl", "tensorboard"]; they follow the
    first candidate that trains (scratch, or fine-tuned when scratch is off). metrics.jsonl is
    written either way. `task_factory(model, cfg, train_table, val_table, dist) -> Task` replaces
    `AlignmentTask` in the candidates that train (semi-supervised training uses it). `norm_extra`:
    more items per view (unpaired ones) that the input standardisation is fitted on beside the
    train rows, before the closed form is fitted in it."""
    check_objective(cfg.model)  # before any encoding: an unknown objective fails in a second
    ctx = dist or init_from_env()  # joins torchrun's process group when launched by it
    run_dir = Path(cfg.train.out)
    logger = None
    try:
        if log and ctx.rank == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
            logger = build_logger(log, run_dir, params=cfg.to_dict(),
                                  fresh=not (resume and (run_dir / "last_state.pt").exists()))
        out, result = _train(cfg, resume=resume, progress=progress, table=table, stop_after=stop_after, dist=ctx,
                             logger=logger, make_task=task_factory or AlignmentTask, norm_extra=norm_extra)
    except BaseException:
        if logger is not None:
            logger.close()
        raise
    if logger is not None:
        logger.close(out)
    return out, result


def _train(cfg: RunConfig, *, resume: bool, progress: bool | None, table: FeatureTable | None,
           stop_after: int | None, dist: DistContext | None, logger: Any,
           make_task: Callable[..., Any] = AlignmentTask,
           norm_extra: Mapping[str, np.ndarray] | None = None) -> tuple[Path, TrainResult]:
    progress = cfg.train.progress if progress is None else progress
    out = Path(cfg.train.out)
    out.mkdir(parents=True, exist_ok=True)
    encoders: dict[str, Encoder] = {}
    ctx = dist or init_from_env()  # joins torchrun's process group when launched by it
    progress = progress and ctx.rank == 0
    if table is None:
        if ctx.world_size > 1:  # each rank encodes its share into the shared cache; then all read it
            encode_rank_share(cfg, ctx, progress)
        table, encoders = prepare_features(cfg, progress)
    _record_choices(cfg, out)
    if table.problems:
        (out / "skipped_rows.txt").write_text("\n".join(str(p) for p in table.problems) + "\n")
        log.warning("%d bad rows skipped (see %s)", len(table.problems), out / "skipped_rows.txt")
    tr, va = table.split(cfg.train.train_split), table.split(cfg.train.val_split)
    if len(tr) < 2 or len(va) < 2:
        raise ValueError(f"need train and val rows: got {len(tr)} train, {len(va)} val")
    small = small_data_defaults(cfg, len(tr), len(va))
    # Specs before seeding: rebuilding a from-scratch tower to learn its spec draws random numbers,
    # and `benchmark` (features prepared elsewhere) must train the very model `train` does.
    specs = {v.column: encoders[v.column].spec if v.column in encoders else _spec_for(v, table)
             for v in cfg.model.views}
    start = cfg.train.start
    cands: dict[str, float] = {}
    ties: dict[str, float] = {}  # validation mean MRR: small validation splits tie on R@1
    result = TrainResult(-1, float("nan"), 0)
    if start in ("auto", "scratch"):
        model = _build(cfg, specs, tr, norm_extra)
        result = _fit(make_task(model, cfg, tr, va, ctx), cfg, out, len(tr), resume, progress, stop_after,
                      logger)
        if stop_after is not None and result.epochs_run < cfg.train.epochs and not result.stopped_early:
            return out, result  # a simulated interruption: no selection yet
        cands["scratch"] = result.best_metric
        ties["scratch"] = _mrr_at_best(result)
    cf_info: dict[str, Any] = {}
    best_cf: tuple[str, RunConfig, AlignmentModel] | None = None
    if start != "scratch":
        cfg_cf = copy.deepcopy(cfg)
        cfg_cf.model.head.linear_path = True
        model_cf = _build(cfg_cf, specs, tr, norm_extra)
        cf = fit_closed_form(model_cf, tr, va, seed=cfg.train.seed, extra=norm_extra)
        if cf is not None and cf.kernel_shapes():  # a kernel solution: linear paths with a Nyström front
            cfg_cf.model.head.kernel = cf.kernel_shapes()
            model_cf = _build(cfg_cf, specs, tr, norm_extra)
        if cf is None:
            log.warning("no closed-form start (a view reads raw inputs): trained from scratch only")
            if not cands:
                model = _build(cfg, specs, tr, norm_extra)
                result = _fit(make_task(model, cfg, tr, va, ctx), cfg, out, len(tr), resume, progress, stop_after)
                cands["scratch"] = result.best_metric
                ties["scratch"] = _mrr_at_best(result)
        else:
            apply_closed_form(model_cf, cf)
            cf_info = {"method": cf.method, "params": cf.params, "hybrid_scratch_views": cf.scratch,
                       "kernel": cf.kernel_shapes()}
            task = make_task(model_cf, cfg_cf, tr, va, ctx)
            v = task.validate()
            cands["closed_form"], ties["closed_form"] = v[cfg.train.primary], v.get("mean/MRR", 0.0)
            best_cf = ("closed_form", cfg_cf, copy.deepcopy(model_cf))
            ft = out / "candidates" / "fine_tuned"
            # It starts from a solution: half the epochs reach its best (and keep `auto` ~1.5x a plain run).
            # Hybrid: the fitted views are held still and only the from-scratch towers learn; half the
            # epochs too (on scenes the full 20 reached val 0.87 vs scratch 0.89: more buys the demo nothing).
            cfg_cf.train.epochs = cfg.train.finetune_epochs or max(1, cfg.train.epochs // 2)
            if cf.scratch:
                freeze_closed_form(model_cf, cf)
            cfg_cf.train.patience = min(cfg_cf.train.patience, cfg_cf.train.epochs) if cfg_cf.train.patience else 0
            res_ft = _fit(task, cfg_cf, ft, len(tr), resume, progress, stop_after,
                          logger if start != "auto" else None)
            cands["fine_tuned"], ties["fine_tuned"] = res_ft.best_metric, _mrr_at_best(res_ft)
            if (cands["fine_tuned"], ties["fine_tuned"]) > (cands["closed_form"], ties["closed_form"]):
                task.load(ft, "best")
                best_cf = ("fine_tuned", cfg_cf, model_cf)
            if not result.history:
                result = res_ft
    if ctx.rank != 0:
        return out, result
    winner = max(cands, key=lambda k: (cands[k], ties[k]))  # full ties keep the earlier: scratch, then closed form
    if best_cf is not None and winner == best_cf[0]:
        best_cf[1].train.out, best_cf[1].train.epochs, best_cf[1].train.patience = str(out), cfg.train.epochs, cfg.train.patience
        save_model(best_cf[2], best_cf[1], out, "best")
    result.best_metric = cands[winner]
    routing = _route(cfg, out, tr, va, norm_extra, progress) if cfg.train.route != "off" and (out / "best.safetensors").exists() else {}
    if (out / "best.safetensors").exists():
        routing |= _hubness(cfg, out, tr, va, norm_extra)
        shutil.copyfile(out / "best.safetensors", out / "model.safetensors")
    others = [v for k, v in cands.items() if k != winner]
    t = cfg.train
    (out / "train_result.json").write_text(json.dumps(
        {"winner": winner, **routing, "margin": cands[winner] - max(others) if others else None,
         "candidates": {k: {"val_" + t.primary: v, "val_mean/MRR": ties[k]} for k, v in cands.items()},
         "closed_form": cf_info,
         "small_data": small, "best_epoch": result.best_epoch if winner != "closed_form" else -1, "best_" + t.primary: cands[winner],
         "epochs_run": result.epochs_run, "stopped_early": result.stopped_early,
         "train_rows": len(tr), "val_rows": len(va)}, indent=2))
    return out, result


def _route(cfg: RunConfig, out: Path, tr: FeatureTable, va: FeatureTable,
           extra: Mapping[str, np.ndarray] | None = None, progress: bool = False) -> dict[str, Any]:
    """`train.route: auto|single`: each pair of views keeps the best on validation of the joint winner, its
    own closed forms, ASIF and (auto) their mixtures (train/routing.py); a routed winner replaces `best`.
    `extra`: the unpaired items the run standardised with (the pairs' closed forms use them too).
    Returns what to record."""
    from crossalign.align.embed import embed_table
    from crossalign.align.io import load_run
    from crossalign.evaluate.evaluators import RetrievalEvaluator
    from crossalign.train.routing import choose_routes, joint_model, pair_closed_forms, routed_model

    t0 = time.perf_counter()
    tuned_tops = [v.column for v in cfg.model.views if (v.options or {}).get("tune_last")]
    if tuned_tops:  # the pairs' closed forms are fitted on frozen features, not on a tuned top's inputs
        log.info("routing skipped: views %s tune their top blocks (tune_last)", tuned_tops)
        return {"routed": False, "routes": {}, "route_skipped": f"tune_last on {tuned_tops}"}
    loaded = load_run(out)
    model, cfg_w = joint_model(*loaded)  # a resumed run routed (and corrected) before is routed afresh
    choice = choose_routes(model, cfg_w, tr, va, seed=cfg.train.seed, closed_forms=pair_closed_forms(cfg),
                           mix=cfg.train.route == "auto", extra=extra, hubness=cfg.train.hubness != "off",
                           progress=progress)
    if not choice.routes:
        if loaded[0] is not model:  # it was routed before; now every pair keeps the joint space
            save_model(model, cfg_w, out, "best")
        return {"routed": False, "routes": choice.report, "route_s": round(time.perf_counter() - t0, 1)}
    routed, cfg_r = routed_model(model, cfg_w, choice)
    val = RetrievalEvaluator(va.groups())(embed_table(routed, va))[cfg.train.primary]
    save_model(routed, cfg_r, out, "best")
    log.info("routed: val %s %.4f (joint model alone: see candidates)", cfg.train.primary, val)
    return {"routed": True, "routes": choice.report, "val_routed_" + cfg.train.primary: val,
            "route_s": round(time.perf_counter() - t0, 1), "route_mix_s": round(choice.mix_s, 1)}


def _hubness(cfg: RunConfig, out: Path, tr: FeatureTable, va: FeatureTable,
             extra: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """`train.hubness: auto`: CSLS on the pairs where validation gains (train/hubness.py); the corrected
    model replaces `best`. `extra`: the run's unpaired items, which join the banks. Returns what to record."""
    from crossalign.align.io import load_run
    from crossalign.train.hubness import choose_hubness, hub_model, unhubbed

    loaded = load_run(out)
    model, cfg_w = unhubbed(*loaded)  # a resumed run corrected before chooses afresh
    if cfg.train.hubness == "off":
        if loaded[0] is not model:
            save_model(model, cfg_w, out, "best")
        return {}
    t0 = time.perf_counter()
    choice = choose_hubness(model, tr, va, extra, seed=cfg.train.seed)
    if choice.hubness:
        save_model(*hub_model(model, cfg_w, choice), out, "best")
    elif loaded[0] is not model:
        save_model(model, cfg_w, out, "best")
    return {"hubness": choice.report, "hubness_s": round(time.perf_counter() - t0, 1)}


def _mrr_at_best(res: TrainResult) -> float:
    return float(next((r.get("val/mean/MRR", 0.0) for r in res.history if r.get("epoch") == res.best_epoch), 0.0))


def _build(cfg: RunConfig, specs: dict[str, Any], tr: FeatureTable,
           extra: Mapping[str, np.ndarray] | None = None) -> AlignmentModel:
    """A fresh model, seeded: every candidate starts from the random numbers a plain run would."""
    set_seed(cfg.train.seed)
    towers = build_towers(cfg, specs)
    model = AlignmentModel(cfg.model, specs, towers)
    model.fit_normalizers({c: torch.from_numpy(with_unpaired(tr, c, extra))
                           for c in cfg.model.columns if c not in towers or c in model.linear or specs[c].tune_last})
    return model


def _fit(task: AlignmentTask, cfg: RunConfig, out: Path, n_train: int, resume: bool, progress: bool,
         stop_after: int | None, logger: Any = None) -> TrainResult:
    t = cfg.train
    # The task knows how many training items it has (a semi-supervised task adds unpaired ones).
    trainer = Trainer(task, out, **t.trainer_kwargs(task.num_train(), progress=progress), stop_after=stop_after,
                      rank=task.dist.rank, world_size=task.dist.world_size)
    trainer.logger = logger
    return trainer.fit(resume=resume)


def _spec_for(view, table: FeatureTable):  # type: ignore[no-untyped-def]
    """Encoder spec of a view when features were prepared elsewhere (cache spec == output spec
    except for from-scratch and tune_last towers, which must be rebuilt to know their output)."""
    spec = table.specs[view.column]
    if spec.name == "sensor:inputs" or is_lower_spec(spec):
        return build_view_encoder(view, table.manifest).spec
    return spec


def _record_choices(cfg: RunConfig, out: Path) -> None:
    """`encoder_choice.json`: which encoder each column got and why (also in config.json)."""
    choice = {v.column: {"encoder": view_encoder(v), "options": v.options, "why": v.why} for v in cfg.model.views}
    for col, c in choice.items():
        log.info("%s: %s (%s)", col, c["encoder"], c["why"])
    (out / "encoder_choice.json").write_text(json.dumps(choice, indent=2, default=str))

