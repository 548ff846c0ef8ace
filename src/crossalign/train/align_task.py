"""The alignment task: cached features in, objective terms out (the trainer's `Task`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from crossalign.align.distributed import SINGLE, DistContext
from crossalign.align.embed import embed_table, raw_column
from crossalign.align.io import save_model
from crossalign.align.model import AlignmentModel
from crossalign.align.objectives import build_objective, objective_pairs
from crossalign.config import RunConfig
from crossalign.data.features import FeatureTable
from crossalign.evaluate.evaluators import RetrievalEvaluator

__all__ = ["AlignmentTask", "embed_table"]


class AlignmentTask:
    greater_is_better = True

    def __init__(self, model: AlignmentModel, cfg: RunConfig, train: FeatureTable, val: FeatureTable,
                 dist: DistContext = SINGLE):
        self.model, self.cfg, self.train, self.val, self.dist = model, cfg, train, val, dist
        self.primary = cfg.train.primary
        self.objective = build_objective(cfg.model.objective)
        self.pairs = objective_pairs(cfg.model)
        self.feats = {c: torch.from_numpy(np.ascontiguousarray(train.features[c])) for c in model.columns}
        g = train.groups()
        self.groups = torch.from_numpy(g) if g is not None else None
        # Pretrained towers fine-tuned end to end need raw inputs, not cached features.
        self.tuned = [c for c in cfg.model.train_towers if c in model.towers and not model.specs[c].caches_inputs]
        self.raw_train = {c: raw_column(train, c, model.specs[c].modality) for c in self.tuned}
        self.raw_val = {c: raw_column(val, c, model.specs[c].modality) for c in self.tuned}
        self.evaluator = RetrievalEvaluator(val.groups())

    def num_train(self) -> int:
        return len(self.train)

    def param_groups(self) -> list[dict[str, Any]]:
        # fine-tuned pretrained towers, and tuned tops on cached activations (tune_last), at tower_lr
        pretrained = self.tuned + [c for c in self.model.towers if self.model.specs[c].tune_last]
        tower_params = [p for c in pretrained for p in self.model.towers[c].parameters() if p.requires_grad]
        # The linear paths hold a closed-form solution: at the heads' rate InfoNCE walks them away from
        # it (cedict val R@1 0.650 -> 0.60 in 4 epochs); at a tenth they hold and improve (0.653).
        lin = [m.linear.weight for m in self.model.linear.values()] + [m.linear.bias for m in self.model.linear.values()]
        ids = {id(p) for p in tower_params + lin}
        rest = [p for p in self.model.parameters() if id(p) not in ids and p.requires_grad]
        groups: list[dict[str, Any]] = [{"params": rest}]
        if tower_params:
            groups.append({"params": tower_params, "lr": self.cfg.train.tower_lr})
        if lin:
            groups.append({"params": lin, "lr": self.cfg.train.lr * self.cfg.train.linear_path_lr})
        return groups

    def batch(self, idx: torch.Tensor) -> dict[str, Any]:
        b: dict[str, Any] = {}
        for c in self.model.columns:
            b[c] = [self.raw_train[c][int(i)] for i in idx] if c in self.raw_train else self.feats[c][idx]
        return b

    def training_forward(self, idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        groups = self.groups[idx] if self.groups is not None else None
        if self.cfg.train.grad_cache_chunk > 0:  # GradCache: runs its own chunked backward
            from crossalign.align.gradcache import grad_cache_step

            losses = grad_cache_step(self.model.embed, self.batch(idx), lambda e: self.objective(
                e, pairs=self.pairs, groups=groups, logit_scale=self.model.scale(),
                logit_bias=self.model.logit_bias, dist=self.dist), self.cfg.train.grad_cache_chunk, self.model)
            return losses, self._report()
        emb = self.model(self.batch(idx))
        losses = self.objective(emb, pairs=self.pairs, groups=groups, logit_scale=self.model.scale(),
                                logit_bias=self.model.logit_bias, dist=self.dist)
        return losses, self._report()

    def _report(self) -> dict[str, float]:
        scale = float(self.model.scale().detach())
        return {"temperature": 1.0 / scale, "logit_scale": scale}

    def validate(self) -> dict[str, float]:
        return self.evaluator(embed_table(self.model, self.val, raw=self.raw_val))

    def save(self, folder: Path, name: str) -> None:
        save_model(self.model, self.cfg, folder, name)

    def load(self, folder: Path, name: str) -> None:
        self.model.load_weights(load_file(str(folder / f"{name}.safetensors")), str(folder / f"{name}.safetensors"))
