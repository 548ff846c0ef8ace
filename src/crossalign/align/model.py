"""The alignment model: per view, an optional trainable tower and a projection head into one space."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from crossalign.align.heads import ProjectionHead
from crossalign.config import ModelConfig
from crossalign.encoders import Encoder, EncoderSpec

__all__ = ["AlignmentModel"]


class AlignmentModel(nn.Module):
    """Holds, per view (manifest column):
    - `towers[col]`: encoders whose weights train (sensor towers from scratch, or a pretrained tower
      listed in `train_towers`); frozen pretrained towers stay outside and feed cached features;
    - `heads[col]`: projection head (standardise -> linear/MLP -> L2 normalise);
    plus a learnable logit scale (clamped) and a bias for sigmoid objectives.

    `forward({col: input})` -> `{col: (B, dim)}` where input is the cached tensor for frozen views
    and the tower's input (preprocessed tensor, or raw list for fine-tuned pretrained towers).
    """

    def __init__(self, cfg: ModelConfig, specs: dict[str, EncoderSpec], towers: dict[str, Encoder] | None = None):
        super().__init__()
        self.cfg = cfg
        self.specs = dict(specs)  # encoder spec per column (outputs the heads take)
        self.towers = nn.ModuleDict(towers or {})
        self.heads = nn.ModuleDict()
        for col in cfg.columns:
            spec = specs[col]
            # Standardisation is fitted on cached features; a trained tower's outputs move, so none there.
            self.heads[col] = ProjectionHead(tuple(spec.output_shape), cfg.dim, cfg.head,
                                             standardize=col not in self.towers)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.temperature)),
                                        requires_grad=cfg.learn_temperature)
        self.logit_bias = nn.Parameter(torch.tensor(float(cfg.siglip_bias)))

    @property
    def columns(self) -> list[str]:
        return self.cfg.columns

    def scale(self) -> torch.Tensor:
        """exp(logit_scale), clamped so training cannot blow the temperature up (CLIP uses 100)."""
        return self.logit_scale.clamp(max=math.log(self.cfg.max_logit_scale)).exp()

    def embed(self, col: str, x: Any) -> torch.Tensor:
        if col in self.towers:
            x = self.towers[col](x)
        return self.heads[col](x)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {col: self.embed(col, x) for col, x in batch.items() if col in self.heads}

    def fit_normalizers(self, feats: dict[str, torch.Tensor]) -> None:
        """Fit each frozen view's input standardisation on training features."""
        for col, x in feats.items():
            head = self.heads[col]
            if col not in self.towers and hasattr(head.norm, "fit"):
                head.norm.fit(x.float())
