"""The alignment task: cached features in, objective terms out (the trainer's `Task`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from crossalign.align.distributed import SINGLE, DistContext
from crossalign.align.io import save_model
from crossalign.align.model import AlignmentModel
from crossalign.align.objectives import build_objective
from crossalign.config import RunConfig
from crossalign.data.features import FeatureTable
from crossalign.evaluate.evaluators import RetrievalEvaluator
from crossalign.modalities import get_reader

__all__ = ["AlignmentTask", "embed_table"]


def _raw_column(table: FeatureTable, col: str, modality: str) -> list[Any]:
    reader = get_reader(modality)
    return [reader.read(table.manifest.rows[int(i)][col], table.manifest.base_dir) for i in table.rows]


@torch.inference_mode()
def embed_table(model: AlignmentModel, table: FeatureTable, batch_size: int = 1024,
                raw: dict[str, list[Any]] | None = None) -> dict[str, np.ndarray]:
    """Every view of a feature table -> {col: (N, dim)} (eval mode)."""
    was = model.training
    model.eval()
    out = {}
    for col in model.columns:
        parts = []
        src = raw[col] if raw and col in raw else table.features[col]
        bs = 64 if raw and col in raw else batch_size
        for s in range(0, len(table), bs):
            x = src[s:s + bs]
            x = x if isinstance(x, list) else torch.from_numpy(np.asarray(x))
            parts.append(model.embed(col, x).float().numpy())
        out[col] = np.concatenate(parts) if parts else np.zeros((0, model.cfg.dim), np.float32)
    model.train(was)
    return out


class AlignmentTask:
    greater_is_better = True

    def __init__(self, model: AlignmentModel, cfg: RunConfig, train: FeatureTable, val: FeatureTable,
                 dist: DistContext = SINGLE):
        self.model, self.cfg, self.train, self.val, self.dist = model, cfg, train, val, dist
        self.primary = cfg.train.primary
        self.objective = build_objective(cfg.model.objective)
        self.pairs = cfg.model.pairs()
        self.feats = {c: torch.from_numpy(np.ascontiguousarray(train.features[c])) for c in model.columns}
        g = train.groups()
        self.groups = torch.from_numpy(g) if g is not None else None
        # Pretrained towers fine-tuned end to end need raw inputs, not cached features.
        self.tuned = [c for c in cfg.model.train_towers if c in model.towers and not model.specs[c].from_scratch]
        self.raw_train = {c: _raw_column(train, c, model.specs[c].modality) for c in self.tuned}
        self.raw_val = {c: _raw_column(val, c, model.specs[c].modality) for c in self.tuned}
        self.evaluator = RetrievalEvaluator(val.groups())

    def num_train(self) -> int:
        return len(self.train)

    def param_groups(self) -> list[dict[str, Any]]:
        tower_params = [p for c in self.tuned for p in self.model.towers[c].parameters() if p.requires_grad]
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
            return losses, {"temperature": float(1.0 / self.model.scale().detach())}
        emb = self.model(self.batch(idx))
        losses = self.objective(emb, pairs=self.pairs, groups=groups, logit_scale=self.model.scale(),
                                logit_bias=self.model.logit_bias, dist=self.dist)
        return losses, {"temperature": float(1.0 / self.model.scale().detach())}

    def validate(self) -> dict[str, float]:
        return self.evaluator(embed_table(self.model, self.val, raw=self.raw_val))

    def save(self, folder: Path, name: str) -> None:
        save_model(self.model, self.cfg, folder, name)

    def load(self, folder: Path, name: str) -> None:
        self.model.load_state_dict(load_file(str(folder / f"{name}.safetensors")))
