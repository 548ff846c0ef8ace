"""Aligned embedding -> k prefix vectors in the language model's input-embedding space (LLaVA-style)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PrefixProjector"]


class PrefixProjector(nn.Module):
    """`linear`: one matrix; `mlp`: Linear-GELU-Linear as in LLaVA-1.5.

    The output is rescaled to the typical norm of the LM's token embeddings (`target_norm`), so the
    prefix starts in the range the frozen LM was trained on instead of far outside it.
    """

    def __init__(self, dim: int, lm_hidden: int, k: int, kind: str = "mlp", hidden: int = 1024,
                 target_norm: float = 1.0):
        super().__init__()
        self.dim, self.lm_hidden, self.k, self.kind = dim, lm_hidden, k, kind
        if kind == "linear":
            self.net: nn.Module = nn.Linear(dim, k * lm_hidden)
        elif kind == "mlp":
            self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, k * lm_hidden))
        else:
            raise ValueError(f"projector kind must be linear or mlp, not {kind!r}")
        self.register_buffer("target_norm", torch.tensor(float(target_norm)))
        self.norm = nn.LayerNorm(lm_hidden, elementwise_affine=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, dim) -> (B, k, lm_hidden)."""
        h = self.net(z).view(z.shape[0], self.k, self.lm_hidden)  # (B, k, H)
        # LayerNorm gives unit RMS per vector; scale to the LM's token-embedding RMS.
        return self.norm(h) * (self.target_norm / self.lm_hidden ** 0.5)
