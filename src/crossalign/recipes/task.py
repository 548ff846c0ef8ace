"""Multi-task training of a fused model through the shared `Trainer`: `FusionTask` is the task
object (task loss + weighted alignment loss), `train_task(cfg)` the Python entry the CLI calls."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from crossalign.align.distributed import SINGLE
from crossalign.align.io import build_towers, load_run
from crossalign.align.model import AlignmentModel
from crossalign.align.objectives import build_objective, objective_entry, objective_pairs
from crossalign.config import HeadConfig, ModelConfig, RunConfig
from crossalign.config import ViewSpec
from crossalign.fuse.config import TaskConfig
from crossalign.fuse.data import IGNORE, PreparedTask, TaskData, prepare_task
from crossalign.fuse.evaluate import evaluate_task, predict_batches
from crossalign.fuse.metrics import TaskEvaluator
from crossalign.fuse.model import FusionModel
from crossalign.fuse.run import TASK_FORMAT, TASK_KIND
from crossalign.saved import WEIGHTS_ORDER, atomic_write_json, save_weights, write_contract
from crossalign.train.loggers import build_logger
from crossalign.train.trainer import Trainer, TrainResult, set_seed

__all__ = ["TASK_FORMAT", "FusionTask", "build_align_model", "train_task"]

log = logging.getLogger(__name__)


class FusionTask:
    """Trainer task: per batch, the task loss (cross-entropy per item or per real word) plus
    `align_weight` x the alignment objective on the same items' pooled features. Modalities are
    dropped at random per item (`modality_dropout`) so the model learns to answer without them."""

    greater_is_better = True
    primary = "macro_f1"

    def __init__(self, model: FusionModel, cfg: TaskConfig, prep: PreparedTask, train: TaskData, val: TaskData,
                 pairs: list[tuple[str, str, float]], objective: str):
        self.model, self.cfg, self.prep, self.train, self.val = model, cfg, prep, train, val
        self.pairs = pairs if cfg.align_weight > 0 else []
        self.objective = build_objective(objective)
        n = len(prep.classes)
        y = train.targets[train.targets != IGNORE]
        freq = torch.bincount(y, minlength=n).float().clamp(min=1)
        # Inverse-sqrt class weights: rare tags (contradicted words are ~5 %) still move macro-F1.
        w = freq.pow(-0.5)
        self.class_weight = w * n / w.sum()
        self.gen = torch.Generator().manual_seed(cfg.train.seed + 17)

    def num_train(self) -> int:
        return len(self.train)

    def param_groups(self) -> list[dict[str, Any]]:
        align = [p for p in self.model.align.parameters() if p.requires_grad]
        ids = {id(p) for p in align}
        rest = [p for p in self.model.parameters() if p.requires_grad and id(p) not in ids]
        return [{"params": rest}, {"params": align, "lr": self.cfg.align_lr}]

    def _present(self, b: int) -> dict[str, torch.Tensor]:
        mods = self.model.modalities
        p = self.cfg.modality_dropout
        if p <= 0 or len(mods) < 2:
            return {}
        keep = torch.rand(b, len(mods), generator=self.gen) >= p  # (B, M)
        none = ~keep.any(1)
        keep[none, torch.randint(len(mods), (int(none.sum()),), generator=self.gen)] = True
        return {c: keep[:, k] for k, c in enumerate(mods)}

    def training_forward(self, idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        d = self.train
        feats = {k: v[idx] for k, v in d.feats.items()}
        res = self.model(feats, d.word_mask[idx], self._present(len(idx)))
        y = d.targets[idx]
        logits = res.logits.flatten(0, 1) if res.logits.dim() == 3 else res.logits  # (B*W, C) or (B, C)
        task = F.cross_entropy(logits, y.flatten(), weight=self.class_weight, ignore_index=IGNORE)
        losses = {"loss/task": task}
        total = self.cfg.task_weight * task
        if self.pairs:
            align = self.model.align
            emb = {c: align.embed(c, feats.get(f"align:{c}", feats[c])) for c in self.model.modalities}
            groups = d.groups[idx] if d.groups is not None else None
            al = self.objective(emb, pairs=self.pairs, groups=groups, logit_scale=align.scale(),
                                logit_bias=align.logit_bias, dist=SINGLE)
            losses["loss/align"] = al["loss"]
            total = total + self.cfg.align_weight * al["loss"]
        losses["loss"] = total
        return losses, {}

    def validate(self) -> dict[str, float]:
        preds = predict_batches(self.model, self.val)
        m = TaskEvaluator(self.prep.kind, self.prep.classes)(preds, self.val.targets.numpy(), self.val.word_mask.numpy())
        return {k: v for k, v in m.items() if "/" not in k or k.startswith("entity/micro")}

    def save(self, folder: Path, name: str) -> None:
        save_weights(folder / f"{name}.safetensors", self.model.state_dict(), metadata={"format": str(TASK_FORMAT)})

    def load(self, folder: Path, name: str) -> None:
        self.model.load_state_dict(load_file(str(folder / f"{name}.safetensors")))


def build_align_model(cfg: TaskConfig) -> tuple[AlignmentModel | None, dict[str, ViewSpec], RunConfig | None]:
    """With `cfg.init`: the saved alignment run (its views decide the pooled features). Without:
    nothing yet (built after the features, as its specs come from the encoders)."""
    if not cfg.init:
        return None, {}, None
    model, rcfg = load_run(cfg.init)
    return model, {v.column: v for v in rcfg.model.views}, rcfg


def _restrict(model: AlignmentModel | None, rcfg: RunConfig | None, prep: PreparedTask,
              cfg: TaskConfig) -> tuple[AlignmentModel, ModelConfig]:
    """An alignment model over exactly the task's modalities; weights of a pre-trained run are
    copied for the views it has (a modality the run lacks starts fresh)."""
    mods = prep.modalities
    base = rcfg.model if rcfg is not None else None
    kw: dict[str, Any] = {"views": [prep.align_views[c] for c in mods]}
    if base is not None:
        kw.update(dim=base.dim, head=base.head, temperature=base.temperature, max_logit_scale=base.max_logit_scale,
                  # an objective fixed to a number of views cannot take the task's modalities
                  objective=base.objective if objective_entry(base.objective).views is None else "infonce",
                  siglip_bias=base.siglip_bias)
    else:
        kw.update(dim=cfg.align_dim, head=HeadConfig(hidden=256), objective=cfg.objective)
    mcfg = ModelConfig(**kw)
    specs = {c: prep.specs[c] for c in mods}
    rc = RunConfig(model=mcfg)
    new = AlignmentModel(mcfg, specs, build_towers(rc, specs))
    train = prep.splits["train"]
    new.fit_normalizers({c: train.feats[c] for c in mods if c not in new.towers})
    if model is not None:
        own = new.state_dict()
        copied = {k: v for k, v in model.state_dict().items() if k in own and own[k].shape == v.shape}
        new.load_state_dict(copied, strict=False)
        log.info("initialised %d alignment tensors from %s", len(copied), cfg.init)
    return new, mcfg


def _write_meta(out: Path, cfg: TaskConfig, prep: PreparedTask, mcfg: ModelConfig) -> None:
    meta = {"format": TASK_FORMAT, "config": cfg.to_dict(), "kind": prep.kind, "classes": prep.classes,
            "modalities": prep.modalities,
            "align_views": {c: v.to_dict() for c, v in prep.align_views.items()},
            "token_views": {c: v.to_dict() for c, v in prep.token_views.items()},
            "specs": {k: s.to_dict() for k, s in prep.specs.items()},
            "align_model": mcfg.to_dict()}
    atomic_write_json(out / "task.json", meta)
    write_contract(out, TASK_KIND, TASK_FORMAT, ["task.json"], weights=list(WEIGHTS_ORDER))


def train_task(cfg: TaskConfig, *, progress: bool | None = None, resume: bool = False,
               prep: PreparedTask | None = None, log: Sequence[str] | None = None
               ) -> tuple[Path, TrainResult, dict[str, Any]]:
    """Train (multi-task), keep the best epoch by validation macro-F1, evaluate it on the test split
    (with each modality removed too). Returns (run folder, trainer result, evaluation)."""
    progress = cfg.train.progress if progress is None else progress
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    set_seed(cfg.train.seed)
    pre, a_views, rcfg = build_align_model(cfg)
    prep = prep or prepare_task(cfg, align_views=a_views or None, progress=progress)
    set_seed(cfg.train.seed)
    align, mcfg = _restrict(pre, rcfg, prep, cfg)
    model = FusionModel(align, prep.modalities, {c[: -len(":tokens")]: s for c, s in prep.specs.items()
                                                 if c.endswith(":tokens")},
                        prep.kind, len(prep.classes), cfg.fusion, cfg.d, cfg.heads, cfg.layers, cfg.dropout,
                        query=cfg.text_column, word_evidence=cfg.word_evidence)
    tr = prep.splits["train"]
    model.fit_normalizers(tr.feats, tr.word_mask)
    _write_meta(out, cfg, prep, mcfg)
    pairs = objective_pairs(mcfg)
    task = FusionTask(model, cfg, prep, tr, prep.splits["val"], pairs, mcfg.objective)
    logger = build_logger(log, out, params=cfg.to_dict(), fresh=not (resume and (out / "last_state.pt").exists()))
    trainer = Trainer(task, out, **cfg.train.trainer_kwargs(len(tr), progress=progress), logger=logger)
    try:
        result = trainer.fit(resume=resume)
    except BaseException:
        if trainer.logger is not None:
            trainer.logger.close()
        raise
    task.load(out, "best")
    shutil.copyfile(out / "best.safetensors", out / "model.safetensors")
    split = "test" if len(prep.splits["test"]) else "val"
    ev = evaluate_task(model, prep.splits[split], prep.kind, prep.classes)
    ev.update(split=split, best_epoch=result.best_epoch, epochs_run=result.epochs_run,
              train_rows=len(tr), val_rows=len(prep.splits["val"]))
    (out / "eval.json").write_text(json.dumps({k: v for k, v in ev.items() if k != "report"}, indent=2))
    (out / "report.txt").write_text(ev["report"])
    if trainer.logger is not None:
        trainer.logger.log_metrics({f"test/{k}": v for k, v in ev.items() if isinstance(v, (int, float))},
                                   result.epochs_run * trainer._steps_per_epoch())
        trainer.logger.close(out)
    return out, result, ev

