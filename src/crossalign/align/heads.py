"""Projection heads: cached features (D,) or tokens (T, D) -> the shared space (dim,)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from crossalign.config import HeadConfig

__all__ = ["Standardize", "ProjectionHead", "LinearPath", "NystromFeatures"]


class Standardize(nn.Module):
    """Per-feature z-scoring with statistics fitted on the training split (buffers, saved with the run).

    Pretrained features come in very different scales (EfficientNet activations vs colour
    fractions vs unit-norm MiniLM); without this the head's first layer sees mostly the largest."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0).clamp(min=1e-4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ProjectionHead(nn.Module):
    def __init__(self, in_shape: tuple[int, ...], dim: int, cfg: HeadConfig, standardize: bool = True):
        super().__init__()
        self.in_shape, self.cfg = tuple(in_shape), cfg
        self.norm = Standardize(self.in_shape) if standardize else nn.Identity()
        tokens = len(self.in_shape) == 2
        # A shared per-token projection before flattening keeps position information at a fraction
        # of the cost of one huge (T*D -> hidden) matrix: (10 x 1297) grids -> 10 x 128.
        self.token_proj: nn.Module = nn.Identity()
        if tokens and cfg.tokens == "flatten":
            if cfg.token_dim > 0:
                self.token_proj = nn.Linear(self.in_shape[-1], cfg.token_dim)
                n_in = self.in_shape[0] * cfg.token_dim
            else:
                n_in = math.prod(self.in_shape)
        else:
            n_in = self.in_shape[-1]
        self.drop_in = nn.Dropout(cfg.dropout / 2) if tokens else nn.Identity()
        if cfg.kind == "linear":
            self.net: nn.Module = nn.Linear(n_in, dim)
        else:
            layers: list[nn.Module] = []
            width = n_in
            for _ in range(cfg.depth):
                layers += [nn.Linear(width, cfg.hidden), nn.LayerNorm(cfg.hidden), nn.GELU(), nn.Dropout(cfg.dropout)]
                width = cfg.hidden
            layers.append(nn.Linear(width, dim))
            self.net = nn.Sequential(*layers)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """(B, *in_shape) -> (B, dim), before L2 normalisation."""
        x = self.norm(x.float())
        if x.dim() == 3:  # (B, T, D) tokens
            x = self.token_proj(self.drop_in(x))  # (B, T, token_dim)
            x = x.flatten(1) if self.cfg.tokens == "flatten" else x.mean(1)  # (B, T*D) or (B, D)
        return self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.project(x), dim=-1)


class NystromFeatures(nn.Module):
    """Fixed RBF kernel features of a standardised input: its first p principal axes, then
    exp(-gamma |s - l|^2) against m landmarks (the Nyström map of kernel CCA; the K(L, L)^-1/2 factor
    is folded into the linear layer that follows). Buffers only: saved with the run, never trained."""

    def __init__(self, d_in: int, p: int, m: int):
        super().__init__()
        self.register_buffer("center", torch.zeros(d_in))
        self.register_buffer("axes", torch.zeros(d_in, p))  # (D, p) principal axes / their scale
        self.register_buffer("landmarks", torch.zeros(m, p))
        self.register_buffer("gamma", torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x - self.center) @ self.axes  # (B, p)
        lm = self.landmarks
        d2 = (s * s).sum(1, keepdim=True) + (lm * lm).sum(1)[None, :] - 2.0 * s @ lm.T  # (B, m)
        return torch.exp(-self.gamma * d2.clamp(min=0.0))


class LinearPath(nn.Module):
    """Standardise -> flatten -> linear into the shared space, plus the gate on the head's path:
    embed = normalize(gate * head(x) + linear(x)). Started from a closed form (CCA, ridge) with
    gate 0, training begins exactly at the closed-form solution and the head grows from there.

    With `kernel=(p, m)` a fixed Nyström RBF map (p principal axes, m landmarks) sits between the
    standardisation and the linear layer, so the path holds a kernel CCA solution; the linear layer
    on the m kernel features is what fine-tuning moves."""

    def __init__(self, in_shape: tuple[int, ...], dim: int, kernel: tuple[int, int] | None = None):
        super().__init__()
        self.norm = Standardize(tuple(in_shape))
        d = math.prod(in_shape)
        self.kernel = NystromFeatures(d, kernel[0], kernel[1]) if kernel else None
        self.linear = nn.Linear(kernel[1] if kernel else d, dim)
        self.gate = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.norm(x.float()).flatten(1)  # (B, D)
        return self.linear(self.kernel(z) if self.kernel is not None else z)  # (B, dim)
