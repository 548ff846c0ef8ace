"""`train(config)`: manifest -> cached features -> trained run folder. The CLI calls this."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Callable

import torch

from crossalign.align.distributed import DistContext
from crossalign.align.io import build_towers
from crossalign.align.model import AlignmentModel
from crossalign.config import RunConfig
from crossalign.data.features import FeatureTable, build_view_encoder, encode_views
from crossalign.data.manifest import Manifest, load_manifest
from crossalign.data.scenes import split_of
from crossalign.encoders import Encoder
from crossalign.train.align_task import AlignmentTask
from crossalign.train.distributed import encode_rank_share, init_from_env
from crossalign.train.trainer import Task, Trainer, TrainResult, set_seed

__all__ = ["prepare_features", "train", "ensure_splits"]

log = logging.getLogger(__name__)


def ensure_splits(m: Manifest, seed: int = 0) -> Manifest:
    """Rows without a `split` get a deterministic 80/10/10 one by id hash (groups kept together)."""
    if all(r.get("split") for r in m.rows):
        return m
    for i, r in enumerate(m.rows):
        if not r.get("split"):
            r["split"] = split_of(str(r.get("group") or r.get("id") or i), seed)
    return m


def prepare_features(cfg: RunConfig, progress: bool = True) -> tuple[FeatureTable, dict[str, Encoder]]:
    m = ensure_splits(load_manifest(cfg.train.data), cfg.train.seed)
    missing = [v.column for v in cfg.model.views if v.column not in m.columns]
    if missing:
        raise ValueError(f"{m.path}: no column(s) {missing}; columns are {m.columns}")
    encoders = {v.column: build_view_encoder(v, m) for v in cfg.model.views}
    table = encode_views(m, cfg.model.views, encoders=encoders, batch_size=cfg.train.encode_batch_size,
                         progress=progress)
    return table, encoders


def train(cfg: RunConfig, *, resume: bool = True, progress: bool | None = None,
          table: FeatureTable | None = None, stop_after: int | None = None,
          dist: DistContext | None = None, task_factory: Callable[..., Task] | None = None) -> tuple[Path, TrainResult]:
    """task_factory(model, cfg, train_table, val_table, dist) -> Task replaces AlignmentTask (semi/)."""
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
    if table.problems:
        (out / "skipped_rows.txt").write_text("\n".join(str(p) for p in table.problems) + "\n")
        log.warning("%d bad rows skipped (see %s)", len(table.problems), out / "skipped_rows.txt")
    tr, va = table.split(cfg.train.train_split), table.split(cfg.train.val_split)
    if len(tr) < 2 or len(va) < 2:
        raise ValueError(f"need train and val rows: got {len(tr)} train, {len(va)} val")
    set_seed(cfg.train.seed)
    specs = {}
    for v in cfg.model.views:
        enc = encoders.get(v.column)
        specs[v.column] = enc.spec if enc is not None else _spec_for(v, table)
    towers = build_towers(cfg, specs)
    model = AlignmentModel(cfg.model, specs, towers)
    model.fit_normalizers({c: torch.from_numpy(tr.features[c]) for c in cfg.model.columns if c not in towers})
    task = (task_factory or AlignmentTask)(model, cfg, tr, va, ctx)
    t = cfg.train
    trainer = Trainer(task, out, epochs=t.epochs, batch_size=min(t.batch_size, task.num_train()), lr=t.lr,
                      weight_decay=t.weight_decay, warmup=t.warmup, grad_clip=t.grad_clip, seed=t.seed,
                      patience=t.patience, progress=progress, stop_after=stop_after, precision=t.precision,
                      rank=task.dist.rank, world_size=task.dist.world_size)
    result = trainer.fit(resume=resume)
    if task.dist.rank == 0 and (out / "best.safetensors").exists():
        shutil.copyfile(out / "best.safetensors", out / "model.safetensors")
        (out / "train_result.json").write_text(json.dumps(
            {"best_epoch": result.best_epoch, "best_" + t.primary: result.best_metric,
             "epochs_run": result.epochs_run, "stopped_early": result.stopped_early,
             "train_rows": len(tr), "val_rows": len(va)}, indent=2))
    return out, result


def _spec_for(view, table: FeatureTable):  # type: ignore[no-untyped-def]
    """Encoder spec of a view when features were prepared elsewhere (cache spec == output spec
    except for from-scratch towers, which must be rebuilt to know their output)."""
    spec = table.specs[view.column]
    if spec.name == "sensor:inputs":
        return build_view_encoder(view, table.manifest).spec
    return spec


